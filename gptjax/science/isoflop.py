"""IsoFLOP profiles (Hoffmann et al. 2022, approach 2): per compute budget, a parabola of loss in
log N gives ``N_opt(C)``; power laws ``N_opt ~ C**a`` and ``D_opt ~ C**b`` run through the optima."""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from gptjax.errors import DataError
from gptjax.science.fitting import check_inputs, percentile_ci, r2

MIN_POINTS = 6


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
        raise DataError("need at least 2 compute budgets with a convex IsoFLOP parabola "
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
    check_inputs([N, D, Cb, loss], ["N", "D", "C_bucket", "loss"], MIN_POINTS)
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
        r2_log=r2(np.log(loss[m]), np.log(pred[m])),
        r2_log_nopt=r2(np.log(core["n_opt"]), np.log(core["kN"]) + core["a"] * core["logC"]),
        r2_log_dopt=r2(np.log(core["d_opt"]), np.log(core["kD"]) + core["b"] * core["logC"]),
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
            except DataError:
                continue  # degenerate resample (non-convex parabolas)
            for k in draws:
                draws[k].append(c[k])
        if draws["a"]:
            fit.ci = percentile_ci({k: np.asarray(v) for k, v in draws.items()}, ci)
    return fit
