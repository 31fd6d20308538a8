"""Chinchilla's parametric law ``L(N, D) = E + A / N**alpha + B / D**beta`` (Hoffmann et al. 2022,
approach 3) and the compute-optimal ``N_opt, D_opt`` it implies under ``C = 6 N D``."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from gptjax.science.fitting import (HUBER_DELTA, ParametricFit, check_identifiable, check_inputs, fit_lse,
                                    percentile_ci, r2)

MIN_POINTS = 6
# Hoffmann et al.'s grid of initialisations for approach 3 (section 3.3, appendix D).
CHINCHILLA_GRID = {
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.01, 5.0),
    "b": np.arange(0.0, 25.01, 5.0),
}


@dataclasses.dataclass
class ChinchillaFit(ParametricFit):
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
    check_inputs([N, D, loss], ["N", "D", "loss"], MIN_POINTS)
    check_identifiable("L(N, D) = E + A / N^alpha + B / D^beta", {"N": N, "D": D}, loss)
    rows = _grid_rows(CHINCHILLA_GRID if grid is None else grid)
    theta, fval, samples = fit_lse(
        np.stack([np.log(N), np.log(D)]), loss, rows, delta=delta, n_starts=n_starts,
        bootstrap=bootstrap, bootstrap_starts=bootstrap_starts, seed=seed)

    def unpack(t):
        p = {"E": np.exp(t[..., 4]), "A": np.exp(t[..., 0]), "B": np.exp(t[..., 2]),
             "alpha": t[..., 1], "beta": t[..., 3]}
        return p

    params = {k: float(v) for k, v in unpack(theta).items()}
    fit = ChinchillaFit(params=params, ci=None, r2_log=float("nan"), n_points=len(N),
                        objective=fval, n_bootstrap=int(bootstrap), ci_level=ci, seed=seed)
    fit.r2_log = r2(np.log(loss), np.log(fit.predict(N, D)))
    if samples is not None:
        s = unpack(samples)
        with np.errstate(divide="ignore", invalid="ignore"):
            s.update(_optimal_exponents(s))
        fit.ci = percentile_ci(s, ci)
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
