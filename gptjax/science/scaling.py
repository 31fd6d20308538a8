"""Scaling-law fitting: power laws, Chinchilla's parametric law, IsoFLOP profiles.

* :func:`fit_power` -- ``L(x) = E + A / x**alpha`` with x = N (params) or C (FLOPs).
* :func:`fit_chinchilla` -- ``L(N, D) = E + A / N**alpha + B / D**beta``, fitted as
  in Hoffmann et al. (2022) approach 3: with ``a = log A, b = log B, e = log E``,
  minimise ``sum Huber_delta(LSE(a - alpha log N, b - beta log D, e) - log L)``
  (delta = 1e-3) by L-BFGS from a grid of initial points, keeping the best.
* :func:`isoflop_fit` -- approach 2: per compute budget a parabola of loss in
  log N gives ``N_opt(C)``; then power laws ``N_opt ~ C**a``, ``D_opt ~ C**b``.
* :func:`compute_optimal` -- closed-form ``N_opt, D_opt`` of a fitted law under
  ``C = 6 N D``.

Confidence intervals come from a bootstrap: resample the points with replacement,
refit, take percentiles. All randomness comes from ``numpy.random.default_rng(seed)``
so results are deterministic given the seed. Every fit reports ``r2_log``, the R^2
of its predictions on log-loss.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from scipy.optimize import minimize

try:  # scipy's L-BFGS-B calls BLAS on tiny arrays; threaded BLAS makes it ~20x slower
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
    _threadpool_limits = None


def _single_threaded_blas():
    if _threadpool_limits is None:
        return contextlib.nullcontext()
    return _threadpool_limits(limits=1, user_api="blas")


HUBER_DELTA = 1e-3

# Hoffmann et al.'s grid of initialisations for approach 3 (section 3.3, appendix D).
CHINCHILLA_GRID = {
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.01, 5.0),
    "b": np.arange(0.0, 25.01, 5.0),
}
_LBFGS_OPTIONS = {"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9, "maxcor": 20}


# --------------------------------------------------------------------------- #
# Results
# --------------------------------------------------------------------------- #
@dataclasses.dataclass
class _Fit:
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


@dataclasses.dataclass
class PowerLawFit(_Fit):
    """``L(x) = E + A / x**alpha``; ``variable`` names x ("N", "C", ...)."""

    variable: str = "x"

    @property
    def form(self) -> str:
        return f"power_{self.variable.lower()}"

    def predict(self, x) -> np.ndarray:
        """Predicted loss at x."""
        p = self.params
        return p["E"] + p["A"] / np.asarray(x, dtype=float) ** p["alpha"]


@dataclasses.dataclass
class ChinchillaFit(_Fit):
    """``L(N, D) = E + A / N**alpha + B / D**beta``."""

    form = "chinchilla"

    def predict(self, N, D) -> np.ndarray:
        """Predicted loss for N parameters trained on D tokens."""
        p = self.params
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]

    def compute_optimal(self, C):
        """``(N_opt, D_opt)`` for budget(s) C under ``C = 6 N D``."""
        return compute_optimal(self.params, C)

    def exponents(self) -> dict:
        """``N_opt ~ C**a`` and ``D_opt ~ C**b`` with a = beta/(alpha+beta), b = 1-a."""
        return _optimal_exponents(self.params)

    def to_dict(self) -> dict:
        out = super().to_dict()
        derived = self.exponents()
        derived_ci = None
        if self.ci is not None:
            derived_ci = {k: self.ci[k] for k in derived if k in self.ci}
        out["derived"] = self._param_dict(derived, derived_ci)
        return out


@dataclasses.dataclass
class IsoFlopFit:
    """Approach 2 result: per-budget optima and the power laws through them.

    ``N_opt = kN * C**a`` and ``D_opt = kD * C**b``; ``budgets``, ``n_opt``,
    ``d_opt``, ``loss_opt`` hold the per-budget minima (one entry per budget used)
    and ``parabolas`` the coefficients (highest power first) of loss vs ln N.
    """

    params: dict
    ci: Optional[dict]
    budgets: np.ndarray
    n_opt: np.ndarray
    d_opt: np.ndarray
    loss_opt: np.ndarray
    parabolas: list
    extrapolated: list
    skipped: dict
    r2_log: float
    r2_log_nopt: float
    r2_log_dopt: float
    n_points: int
    n_bootstrap: int
    ci_level: float
    seed: int
    form = "isoflop"

    def n_opt_at(self, C):
        """Fitted ``N_opt(C)``."""
        return self.params["kN"] * np.asarray(C, dtype=float) ** self.params["a"]

    def d_opt_at(self, C):
        """Fitted ``D_opt(C)``."""
        return self.params["kD"] * np.asarray(C, dtype=float) ** self.params["b"]

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        params = {k: {"value": float(v),
                      "ci": None if self.ci is None else [float(c) for c in self.ci[k]]}
                  for k, v in self.params.items()}
        return {
            "form": self.form,
            "n_points": self.n_points,
            "n_budgets": int(len(self.budgets)),
            "params": params,
            "r2_log": float(self.r2_log),
            "r2_log_nopt": float(self.r2_log_nopt),
            "r2_log_dopt": float(self.r2_log_dopt),
            "budgets": [
                {"C": float(c), "N_opt": float(n), "D_opt": float(d), "loss_opt": float(l),
                 "extrapolated": bool(x)}
                for c, n, d, l, x in zip(self.budgets, self.n_opt, self.d_opt,
                                         self.loss_opt, self.extrapolated)
            ],
            "skipped_budgets": {str(k): v for k, v in self.skipped.items()},
            "n_bootstrap": self.n_bootstrap,
            "ci_level": self.ci_level,
            "seed": self.seed,
        }


# --------------------------------------------------------------------------- #
# The log-sum-exp Huber objective shared by both parametric fits
# --------------------------------------------------------------------------- #
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
        raise RuntimeError("L-BFGS diverged from every starting point")
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


def _r2(y: np.ndarray, yhat: np.ndarray) -> float:
    ss_res = float(np.sum((y - yhat) ** 2))
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def _percentile_ci(samples: Mapping[str, np.ndarray], level: float) -> dict:
    lo, hi = 50.0 * (1.0 - level), 50.0 * (1.0 + level)
    return {k: (float(np.percentile(v, lo)), float(np.percentile(v, hi)))
            for k, v in samples.items()}


def _check_inputs(arrays: Sequence[np.ndarray], names: Sequence[str], min_points: int):
    n = len(arrays[0])
    for a, name in zip(arrays, names):
        if a.ndim != 1 or len(a) != n:
            raise ValueError(f"{name} must be a 1-D array of the same length as the others")
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError(f"{name} must be finite and positive")
    if n < min_points:
        raise ValueError(f"need at least {min_points} points, got {n}")


def _fit_lse(Zraw: np.ndarray, loss: np.ndarray, grid_uncentred: np.ndarray, *,
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


# --------------------------------------------------------------------------- #
# Public fits
# --------------------------------------------------------------------------- #
def _power_grid(x: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Data-adapted starts: each (alpha, E) passes through the median point."""
    alphas = np.array([0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0])
    l_min, l_med = float(np.min(loss)), float(np.median(loss))
    lx_med = float(np.median(np.log(x)))
    rows = []
    for frac in (0.05, 0.25, 0.5, 0.75, 0.9, 0.97):
        E = frac * l_min
        for alpha in alphas:
            a = np.log(max(l_med - E, 1e-3 * l_med)) + alpha * lx_med
            rows.append((a, alpha, np.log(E)))
    return np.array(rows)


def fit_power(x, loss, *, variable: str = "x", bootstrap: int = 0, seed: int = 0,
              ci: float = 0.95, delta: float = HUBER_DELTA, n_starts: Optional[int] = 12,
              bootstrap_starts: int = 3) -> PowerLawFit:
    """Fit ``L(x) = E + A / x**alpha`` (Huber on log-loss, L-BFGS, grid of starts).

    ``variable`` only labels the result ("N" -> form "power_n", "C" -> "power_c").
    ``n_starts`` grid points (best by initial objective; None = all 60) are
    refined; each bootstrap resample refines the full-data optimum plus
    ``bootstrap_starts`` grid points.
    """
    x, loss = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    _check_inputs([x, loss], [variable, "loss"], 4)
    theta, fval, samples = _fit_lse(
        np.log(x)[None, :], loss, _power_grid(x, loss), delta=delta, n_starts=n_starts,
        bootstrap=bootstrap, bootstrap_starts=bootstrap_starts, seed=seed)

    def unpack(t):
        return {"E": np.exp(t[..., 2]), "A": np.exp(t[..., 0]), "alpha": t[..., 1]}

    params = {k: float(v) for k, v in unpack(theta).items()}
    fit = PowerLawFit(params=params, ci=None, r2_log=float("nan"), n_points=len(x),
                      objective=fval, n_bootstrap=int(bootstrap), ci_level=ci, seed=seed,
                      variable=variable)
    fit.r2_log = _r2(np.log(loss), np.log(fit.predict(x)))
    if samples is not None:
        fit.ci = _percentile_ci(unpack(samples), ci)
    return fit


def _grid_rows(grid: Mapping[str, Sequence[float]]) -> np.ndarray:
    a, alpha, b, beta, e = np.meshgrid(grid["a"], grid["alpha"], grid["b"], grid["beta"],
                                       grid["e"], indexing="ij")
    return np.stack([a.ravel(), alpha.ravel(), b.ravel(), beta.ravel(), e.ravel()], axis=1)


def fit_chinchilla(N, D, loss, *, bootstrap: int = 0, seed: int = 0, ci: float = 0.95,
                   delta: float = HUBER_DELTA, grid: Optional[Mapping] = None,
                   n_starts: Optional[int] = 64, bootstrap_starts: int = 3
                   ) -> ChinchillaFit:
    """Fit ``L(N, D) = E + A/N**alpha + B/D**beta`` (Chinchilla approach 3).

    Minimises the sum of Huber(delta) residuals of the log-sum-exp model against
    log-loss with L-BFGS-B. ``grid`` (keys a, alpha, b, beta, e; default the
    paper's 4,500-point grid) is ranked by its initial objective and the best
    ``n_starts`` points are refined (None = every grid point, as in the paper);
    the best optimum is kept. With ``bootstrap > 0`` the points are resampled
    with replacement that many times and refitted (from the full-data optimum
    plus the ``bootstrap_starts`` best grid points of the resample) for
    percentile confidence intervals at level ``ci``.
    """
    N, D, loss = (np.asarray(v, dtype=float) for v in (N, D, loss))
    _check_inputs([N, D, loss], ["N", "D", "loss"], 6)
    rows = _grid_rows(CHINCHILLA_GRID if grid is None else grid)
    theta, fval, samples = _fit_lse(
        np.stack([np.log(N), np.log(D)]), loss, rows, delta=delta, n_starts=n_starts,
        bootstrap=bootstrap, bootstrap_starts=bootstrap_starts, seed=seed)

    def unpack(t):
        p = {"E": np.exp(t[..., 4]), "A": np.exp(t[..., 0]), "B": np.exp(t[..., 2]),
             "alpha": t[..., 1], "beta": t[..., 3]}
        return p

    params = {k: float(v) for k, v in unpack(theta).items()}
    fit = ChinchillaFit(params=params, ci=None, r2_log=float("nan"), n_points=len(N),
                        objective=fval, n_bootstrap=int(bootstrap), ci_level=ci, seed=seed)
    fit.r2_log = _r2(np.log(loss), np.log(fit.predict(N, D)))
    if samples is not None:
        s = unpack(samples)
        with np.errstate(divide="ignore", invalid="ignore"):
            s.update(_optimal_exponents(s))
        fit.ci = _percentile_ci(s, ci)
    return fit


def _optimal_exponents(p: Mapping) -> dict:
    total = p["alpha"] + p["beta"]
    return {"a": p["beta"] / total, "b": p["alpha"] / total}


def compute_optimal(law: Any, C):
    """Compute-optimal ``(N_opt, D_opt)`` of a Chinchilla law for budget(s) C.

    ``law`` is a :class:`ChinchillaFit` or a mapping with A, B, alpha, beta.
    With ``C = 6 N D``: ``G = (alpha A / (beta B))**(1/(alpha+beta))``,
    ``N_opt = G (C/6)**(beta/(alpha+beta))``, ``D_opt = (C/6)**(alpha/(alpha+beta)) / G``.
    """
    p = law.params if hasattr(law, "params") else law
    A, B, alpha, beta = (float(p[k]) for k in ("A", "B", "alpha", "beta"))
    if alpha <= 0 or beta <= 0:
        raise ValueError("compute_optimal needs alpha > 0 and beta > 0")
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    c6 = np.asarray(C, dtype=float) / 6.0
    n_opt = G * c6 ** (beta / (alpha + beta))
    d_opt = c6 ** (alpha / (alpha + beta)) / G
    if n_opt.ndim == 0:
        return float(n_opt), float(d_opt)
    return n_opt, d_opt


# --------------------------------------------------------------------------- #
# IsoFLOP profiles (approach 2)
# --------------------------------------------------------------------------- #
def _isoflop_core(logN, logD, loss, bucket_ids, budgets):
    """Per-budget parabola minima and the log-log power laws through them."""
    used, n_opt, d_opt, l_opt, parabolas, extrap, skipped = [], [], [], [], [], [], {}
    pred = np.full(len(loss), np.nan)
    for j, C in enumerate(budgets):
        m = bucket_ids == j
        if len(np.unique(logN[m])) < 3:
            skipped[float(C)] = "fewer than 3 distinct model sizes"
            continue
        coef = np.polyfit(logN[m], loss[m], 2)
        lo, hi = logN[m].min(), logN[m].max()
        span = hi - lo
        if not coef[0] * span ** 2 > 1e-9 * np.abs(loss[m]).max():
            skipped[float(C)] = "parabola is not convex"
            continue
        x_star = -coef[1] / (2.0 * coef[0])
        if not lo - span <= x_star <= hi + span:
            skipped[float(C)] = "minimum lies far outside the sampled model sizes"
            continue
        if len(np.unique(logD[m])) >= 2:
            dcoef = np.polyfit(logN[m], logD[m], 1)
            logd_star = np.polyval(dcoef, x_star)
        else:
            logd_star = np.log(C / 6.0) - x_star
        used.append(C)
        n_opt.append(np.exp(x_star))
        d_opt.append(np.exp(logd_star))
        l_opt.append(np.polyval(coef, x_star))
        parabolas.append(coef)
        extrap.append(not lo <= x_star <= hi)
        pred[m] = np.polyval(coef, logN[m])
    if len(used) < 2:
        raise ValueError("need at least 2 compute budgets with a convex IsoFLOP parabola "
                         f"(got {len(used)}; skipped: {skipped})")
    logC = np.log(np.asarray(used))
    a, log_kN = np.polyfit(logC, np.log(n_opt), 1)
    b, log_kD = np.polyfit(logC, np.log(d_opt), 1)
    return dict(used=np.asarray(used), n_opt=np.asarray(n_opt), d_opt=np.asarray(d_opt),
                l_opt=np.asarray(l_opt), parabolas=parabolas, extrap=extrap,
                skipped=skipped, pred=pred, a=a, kN=np.exp(log_kN), b=b,
                kD=np.exp(log_kD), logC=logC)


def bucket_by_compute(C, rtol: float = 0.1) -> np.ndarray:
    """Group FLOP counts into budgets: sorted values closer than a factor
    ``1 + rtol`` to their neighbour share a bucket, labelled by the bucket's
    geometric mean. Returns one label per input value (for :func:`isoflop_fit`).
    """
    C = np.asarray(C, dtype=float)
    if C.size == 0:
        return C.copy()
    logC = np.log(C)
    order = np.argsort(logC, kind="stable")
    new = np.concatenate([[True], np.diff(logC[order]) > np.log1p(rtol)])
    ids_sorted = np.cumsum(new) - 1
    ids = np.empty_like(ids_sorted)
    ids[order] = ids_sorted
    centres = np.exp(np.bincount(ids, weights=logC) / np.bincount(ids))
    return centres[ids]


def isoflop_fit(N, D, C_bucket, loss, *, bootstrap: int = 0, seed: int = 0,
                ci: float = 0.95) -> IsoFlopFit:
    """Chinchilla approach 2 on runs grouped by compute budget ``C_bucket``.

    Per budget (rows with equal ``C_bucket``; >= 3 distinct N) fit
    ``loss = p2 (ln N)^2 + p1 ln N + p0`` and take its vertex as ``N_opt``;
    ``D_opt`` is read off the budget's own ln D vs ln N line at ``N_opt`` (so it
    follows whatever FLOPs accounting produced the runs). Then least squares in
    log-log gives ``N_opt = kN C**a`` and ``D_opt = kD C**b``. Budgets whose
    parabola is not convex, or whose vertex lies more than the sampled ln N span
    outside it, are skipped and listed (vertices just outside are kept and
    flagged ``extrapolated``). With ``bootstrap > 0`` each
    budget's parabola residuals are resampled (residual bootstrap: the model-size
    grid is kept) and everything refitted, for percentile CIs.
    """
    N, D, Cb, loss = (np.asarray(v, dtype=float) for v in (N, D, C_bucket, loss))
    _check_inputs([N, D, Cb, loss], ["N", "D", "C_bucket", "loss"], 6)
    budgets, bucket_ids = np.unique(Cb, return_inverse=True)
    logN, logD = np.log(N), np.log(D)
    core = _isoflop_core(logN, logD, loss, bucket_ids, budgets)
    pred = core["pred"]
    m = np.isfinite(pred) & (pred > 0)
    params = {"a": float(core["a"]), "kN": float(core["kN"]), "b": float(core["b"]),
              "kD": float(core["kD"])}
    fit = IsoFlopFit(
        params=params, ci=None, budgets=core["used"], n_opt=core["n_opt"],
        d_opt=core["d_opt"], loss_opt=core["l_opt"], parabolas=core["parabolas"],
        extrapolated=core["extrap"], skipped=core["skipped"],
        r2_log=_r2(np.log(loss[m]), np.log(pred[m])),
        r2_log_nopt=_r2(np.log(core["n_opt"]), np.log(core["kN"]) + core["a"] * core["logC"]),
        r2_log_dopt=_r2(np.log(core["d_opt"]), np.log(core["kD"]) + core["b"] * core["logC"]),
        n_points=len(N), n_bootstrap=int(bootstrap), ci_level=ci, seed=seed)
    if bootstrap > 0:
        # Residual bootstrap: the N grid of each budget is a design, so keep it and
        # resample that budget's parabola residuals (inflated by sqrt(n / (n - 3))).
        rng = np.random.default_rng(seed)
        fitted = np.isfinite(pred)
        groups = []
        for j in range(len(budgets)):
            g = np.flatnonzero((bucket_ids == j) & fitted)
            if len(g):
                scale = np.sqrt(len(g) / (len(g) - 3)) if len(g) > 3 else 0.0
                groups.append((g, (loss[g] - pred[g]) * scale))
        draws = {k: [] for k in params}
        for _ in range(bootstrap):
            y = loss.copy()
            for g, resid in groups:
                y[g] = pred[g] + resid[rng.integers(0, len(g), size=len(g))]
            try:
                c = _isoflop_core(logN, logD, y, bucket_ids, budgets)
            except ValueError:
                continue  # degenerate resample (non-convex parabolas)
            for k in draws:
                draws[k].append(c[k])
        if draws["a"]:
            fit.ci = _percentile_ci({k: np.asarray(v) for k, v in draws.items()}, ci)
    return fit
