"""One power law: ``L(x) = E + A / x**alpha`` with x = N (parameters) or C (training FLOPs)."""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from gptjax.science.fitting import (HUBER_DELTA, ParametricFit, check_identifiable, check_inputs, fit_lse,
                                    percentile_ci, r2)

MIN_POINTS = 4


@dataclasses.dataclass
class PowerLawFit(ParametricFit):
    """``L(x) = E + A / x**alpha``; ``variable`` names x ("N", "C", ...)."""

    variable: str = "x"

    @property
    def form(self) -> str:
        return f"power_{self.variable.lower()}"

    def predict(self, x) -> np.ndarray:
        """Predicted loss at x."""
        p = self.params
        return p["E"] + p["A"] / np.asarray(x, dtype=float) ** p["alpha"]


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
    check_inputs([x, loss], [variable, "loss"], MIN_POINTS)
    check_identifiable(f"L({variable}) = E + A / {variable}^alpha", {variable: x}, loss)
    theta, fval, samples = fit_lse(
        np.log(x)[None, :], loss, _power_grid(x, loss), delta=delta, n_starts=n_starts,
        bootstrap=bootstrap, bootstrap_starts=bootstrap_starts, seed=seed)

    def unpack(t):
        return {"E": np.exp(t[..., 2]), "A": np.exp(t[..., 0]), "alpha": t[..., 1]}

    params = {k: float(v) for k, v in unpack(theta).items()}
    fit = PowerLawFit(params=params, ci=None, r2_log=float("nan"), n_points=len(x),
                      objective=fval, n_bootstrap=int(bootstrap), ci_level=ci, seed=seed,
                      variable=variable)
    fit.r2_log = r2(np.log(loss), np.log(fit.predict(x)))
    if samples is not None:
        fit.ci = percentile_ci(unpack(samples), ci)
    return fit
