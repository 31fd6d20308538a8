"""The machinery shared by the scaling-law fits: input checks, the log-sum-exp Huber
objective minimised by L-BFGS from a grid of starts, bootstrap CIs, R^2 on log-loss.

A sum of power laws ``L = E + sum_j A_j / x_j**alpha_j`` is, in log space,
``log L = LSE(a_j - alpha_j log x_j, e)`` with ``a_j = log A_j, e = log E``. As in
Hoffmann et al. (2022) approach 3 it is fitted by minimising
``sum Huber_delta(LSE(...) - log L)`` (delta = 1e-3). Confidence intervals come from
a bootstrap: resample the points with replacement, refit, take percentiles; all
randomness comes from ``numpy.random.default_rng(seed)``, so results are
deterministic given the seed.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy.optimize import minimize

from gptjax.errors import DataError

try:  # scipy's L-BFGS-B calls BLAS on tiny arrays; threaded BLAS makes it ~20x slower
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
    _threadpool_limits = None


def _single_threaded_blas():
    if _threadpool_limits is None:
        return contextlib.nullcontext()
    return _threadpool_limits(limits=1, user_api="blas")


HUBER_DELTA = 1e-3
_LBFGS_OPTIONS = {"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9, "maxcor": 20}
MIN_DISTINCT = 3  # E, A and alpha of one power-law term are pinned by 3 distinct x values, not fewer


@dataclasses.dataclass
class ParametricFit:
    """Common fields: fitted ``params``, bootstrap ``ci`` (or None), ``r2_log``."""

    params: dict
    ci: Optional[dict]
    r2_log: float
    n_points: int
    objective: float
    n_bootstrap: int
    ci_level: float
    seed: int

    def __getattr__(self, name):  # fit.E, fit.alpha, ...
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(name)

    def _param_dict(self, params: Mapping[str, float], ci: Optional[dict]) -> dict:
        return {k: {"value": float(v),
                    "ci": None if ci is None or k not in ci else [float(c) for c in ci[k]]}
                for k, v in params.items()}

    def to_dict(self) -> dict:
        """JSON-ready summary: ``{"form", "n_points", "params": {k: {value, ci}}, ...}``."""
        return {
            "form": self.form,
            "n_points": self.n_points,
            "params": self._param_dict(self.params, self.ci),
            "r2_log": float(self.r2_log),
            "objective": float(self.objective),
            "n_bootstrap": self.n_bootstrap,
            "ci_level": self.ci_level,
            "seed": self.seed,
        }


# theta = [c_1, s_1, ..., c_k, s_k, e]; model log L = LSE(c_j - s_j z_j, e) where
# z_j are the centred log variables. Objective = sum Huber(r) / delta, which has
# the same minimiser as the paper's sum and is O(n) in size (good for L-BFGS).
def _lse_terms(theta: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Stacked exponents, shape (..., k+1, n) for theta of shape (..., 2k+1)."""
    k = Z.shape[0]
    c = theta[..., 0:2 * k:2, None]
    s = theta[..., 1:2 * k:2, None]
    powers = c - s * Z
    e = np.broadcast_to(theta[..., -1:, None], powers.shape[:-2] + (1, Z.shape[1]))
    return np.concatenate([powers, e], axis=-2)


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _objective_batch(thetas: np.ndarray, Z: np.ndarray, logL: np.ndarray,
                     delta: float) -> np.ndarray:
    """Objective at many parameter vectors at once (for ranking grid points)."""
    T = _lse_terms(thetas, Z)
    m = T.max(axis=-2)
    lse = m + np.log(np.exp(T - m[..., None, :]).sum(axis=-2))
    return _huber(lse - logL, delta).sum(axis=-1) / delta


def _objective_and_grad(theta: np.ndarray, Z: np.ndarray, logL: np.ndarray,
                        delta: float):
    """Objective and its gradient at one theta (the L-BFGS inner loop)."""
    k, n = Z.shape
    T = np.empty((k + 1, n))
    T[:k] = theta[0:2 * k:2, None] - theta[1:2 * k:2, None] * Z
    T[k] = theta[-1]
    m = T.max(axis=0)
    T -= m
    np.exp(T, out=T)
    S = T.sum(axis=0)
    r = m + np.log(S) - logL
    c = np.clip(r, -delta, delta)  # Huber(r) = c (r - c/2), Huber'(r) = c
    T *= c / (delta * S)  # softmax weights x dHuber/dr
    grad = np.empty_like(theta)
    grad[0:2 * k:2] = T[:k].sum(axis=1)
    grad[1:2 * k:2] = -np.einsum("kn,kn->k", T[:k], Z)
    grad[-1] = T[k].sum()
    return float(np.dot(c, r - 0.5 * c)) / delta, grad


def _lbfgs(theta0, Z, logL, delta):
    res = minimize(_objective_and_grad, np.asarray(theta0, dtype=float),
                   args=(Z, logL, delta), jac=True, method="L-BFGS-B",
                   options=_LBFGS_OPTIONS)
    return res.x, float(res.fun)


def _best_fit(grid: np.ndarray, Z, logL, delta, n_starts, extra_starts=()):
    """L-BFGS from the ``n_starts`` best grid points (all if None) + extras."""
    if n_starts is None or n_starts >= len(grid):
        starts = grid
    else:
        vals = _objective_batch(grid, Z, logL, delta)
        order = np.argsort(vals, kind="stable")[:n_starts]
        starts = grid[order]
    if len(extra_starts):
        starts = np.concatenate([np.asarray(extra_starts, dtype=float), starts], axis=0)
    best_x, best_f = None, np.inf
    for theta0 in starts:
        x, f = _lbfgs(theta0, Z, logL, delta)
        if np.all(np.isfinite(x)) and f < best_f:
            best_x, best_f = x, f
    if best_x is None:
        raise DataError("the fit diverged from every starting point: the losses do not follow this law "
                        "(look for outliers or runs that did not finish)")
    return best_x, best_f


def _to_centred(grid: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Convert uncentred (c_j, s_j, ..., e) rows to the centred parametrisation."""
    g = np.array(grid, dtype=float, copy=True)
    k = len(mu)
    g[:, 0:2 * k:2] -= g[:, 1:2 * k:2] * mu
    return g


def _from_centred(theta: np.ndarray, mu: np.ndarray) -> np.ndarray:
    t = np.array(theta, dtype=float, copy=True)
    k = len(mu)
    t[..., 0:2 * k:2] += t[..., 1:2 * k:2] * mu
    return t


def r2(y: np.ndarray, yhat: np.ndarray) -> float:
    ss_res = float(np.sum((y - yhat) ** 2))
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def percentile_ci(samples: Mapping[str, np.ndarray], level: float) -> dict:
    lo, hi = 50.0 * (1.0 - level), 50.0 * (1.0 + level)
    return {k: (float(np.percentile(v, lo)), float(np.percentile(v, hi)))
            for k, v in samples.items()}


def check_inputs(arrays: Sequence[np.ndarray], names: Sequence[str], min_points: int):
    n = len(arrays[0])
    for a, name in zip(arrays, names):
        if a.ndim != 1 or len(a) != n:
            raise DataError(f"{name} must be a 1-D array of the same length as the others")
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise DataError(f"{name} must be finite and positive")
    if n < min_points:
        raise DataError(f"need at least {min_points} points, got {n}")


def check_identifiable(law: str, xs: Mapping[str, np.ndarray], loss: np.ndarray) -> None:
    """Refuse data that cannot pin the law down: a fit would return exponents with zero-width (or
    meaningless) intervals. Every x needs MIN_DISTINCT distinct values and the loss must vary."""
    needs = (f"it needs runs at {MIN_DISTINCT} or more distinct values of {' and of '.join(xs)}, "
             "with losses that differ")
    for name, x in xs.items():
        distinct = len(np.unique(x))
        if distinct < MIN_DISTINCT:
            raise DataError(f"{law} is not identifiable from these {len(x)} runs: only {distinct} distinct "
                            f"value(s) of {name}; {needs}")
    if np.ptp(loss) <= 1e-9 * np.max(np.abs(loss)):
        raise DataError(f"{law} is not identifiable from these {len(loss)} runs: the loss is the same "
                        f"({float(loss[0]):.6g}) in every one; {needs}")


def fit_lse(Zraw: np.ndarray, loss: np.ndarray, grid_uncentred: np.ndarray, *,
            delta: float, n_starts, bootstrap: int, bootstrap_starts: int, seed: int):
    """Point fit + bootstrap in uncentred (c_j, s_j, ..., e) parameters."""
    with _single_threaded_blas():
        return _fit_lse_inner(Zraw, loss, grid_uncentred, delta=delta, n_starts=n_starts,
                              bootstrap=bootstrap, bootstrap_starts=bootstrap_starts,
                              seed=seed)


def _fit_lse_inner(Zraw, loss, grid_uncentred, *, delta, n_starts, bootstrap,
                   bootstrap_starts, seed):
    logL = np.log(loss)
    mu = Zraw.mean(axis=1)
    Z = Zraw - mu[:, None]
    grid = _to_centred(grid_uncentred, mu)
    theta_c, fval = _best_fit(grid, Z, logL, delta, n_starts)
    samples = None
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        n = len(logL)
        samples = np.empty((bootstrap, len(theta_c)))
        for i in range(bootstrap):
            idx = rng.integers(0, n, size=n)
            th, _ = _best_fit(grid, Z[:, idx], logL[idx], delta, bootstrap_starts,
                              extra_starts=[theta_c])
            samples[i] = th
        samples = _from_centred(samples, mu)
    return _from_centred(theta_c, mu), fval, samples

