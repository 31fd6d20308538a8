"""Every figure gptjax draws (matplotlib, headless): sweep reports, scaling-law fits, evaluation pictures.

Functions take plain arrays and write a PNG (whole or not at all); they use no other gptjax code
but the atomic writes, so any layer may draw.
"""
from __future__ import annotations

import re

import numpy as np

from gptjax import atomic


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, dpi: int = 120) -> None:
    fig.tight_layout()
    with atomic.replacing(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi)
    pyplot().close(fig)


def _grid(n: int, cols: int, size: float):
    rows = -(-n // cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(cols * size, rows * size * 1.15), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


# ------------------------------------------------------------------ sweeps

def log_axis(key: str, values) -> bool:
    """LR-like keys, or positive values spanning more than 10x, get a log x axis."""
    short = key.rsplit(".", 1)[-1]
    if re.search(r"(^|_)lr($|_)|learning_rate", short):
        return True
    return min(values) > 0 and max(values) / min(values) > 10


def loss_by_axis(path, title: str, columns: dict, losses) -> None:
    """Final loss against each swept value ({key: values per run}), with the mean per value."""
    plt = pyplot()
    fig, axs = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.6), squeeze=False)
    for ax, (key, xs) in zip(axs[0], columns.items()):
        ax.scatter(xs, losses, s=22, zorder=3)
        means = {}
        for x, loss in zip(xs, losses):
            means.setdefault(x, []).append(loss)
        grid = sorted(means)
        ax.plot(grid, [sum(means[x]) / len(means[x]) for x in grid], color="C1", lw=1, label="mean")
        if log_axis(key, xs):
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel="final eval loss")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _save(fig, path, 110)


def curves(path, runs: dict, smooth) -> None:
    """Eval loss vs step and smoothed train loss vs step; `runs` maps name -> (train {step: loss},
    eval {step: loss}); `smooth` turns a list of losses into the plotted line."""
    plt = pyplot()
    fig, (ax_e, ax_t) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (name, (train, evals)) in enumerate(runs.items()):
        color = plt.cm.viridis(i / max(len(runs) - 1, 1))
        if evals:
            ax_e.plot(list(evals), list(evals.values()), marker=".", color=color, label=name)
        if train:
            ax_t.plot(list(train), smooth(train.values()), color=color, lw=1, label=name)
    for ax, title in ((ax_e, "eval loss"), (ax_t, "train loss (EMA 0.1)")):
        ax.set(xlabel="step", ylabel=title)
        ax.grid(alpha=0.3)
    if len(runs) <= 16:
        ax_e.legend(fontsize=6)
    _save(fig, path, 110)


# ------------------------------------------------------------------ scaling laws

def power_law(path, fit, x, loss, xlabel: str) -> None:
    """Loss vs x (log-log) with the fitted L = E + A / x^alpha."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(x, loss, s=24, zorder=3, label=f"{len(x)} runs")
    grid = np.geomspace(x.min() / 1.5, x.max() * 1.5, 200)
    p = fit.params
    ax.plot(grid, fit.predict(grid), color="C1",
            label=f"{p['E']:.3g} + {p['A']:.3g} / {fit.variable}^{p['alpha']:.3f}  (E = irreducible loss)")
    ax.set_xscale("log")
    ax.set_yscale("log")  # the data's range only: E is usually far below it
    ax.set_ylim(loss.min() * 0.95, loss.max() * 1.05)
    ax.set(xlabel=xlabel, ylabel="loss")
    ax.set_title(f"L({fit.variable}) = E + A / {fit.variable}^alpha:  alpha = {p['alpha']:.3f}, "
                 f"R² on log-loss = {fit.r2_log:.4f}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def chinchilla(path, fit, N, D, loss) -> None:
    """Loss vs N coloured by D, with the fitted curve at several D values."""
    plt = pyplot()
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(7, 5))
    norm = LogNorm(vmin=D.min(), vmax=max(D.max(), D.min() * 1.0001))
    sc = ax.scatter(N, loss, c=D, cmap="viridis", norm=norm, s=18, zorder=3, edgecolors="k", linewidths=0.3)
    levels = np.unique(D)
    if len(levels) > 8:
        levels = np.geomspace(D.min(), D.max(), 6)
    grid = np.geomspace(N.min() / 1.5, N.max() * 1.5, 200)
    for d in levels:
        ax.plot(grid, fit.predict(grid, d), color=plt.cm.viridis(norm(d)), lw=1.2)
    p = fit.params
    ax.axhline(p["E"], color="grey", ls=":", lw=1, label=f"E = {p['E']:.3f}")
    ax.set_xscale("log")
    ax.set(xlabel="parameters N", ylabel="loss")
    ax.set_title(f"L = {p['E']:.3g} + {p['A']:.3g}/N^{p['alpha']:.3f} + "
                 f"{p['B']:.3g}/D^{p['beta']:.3f}   (R² log = {fit.r2_log:.4f})", fontsize=9)
    fig.colorbar(sc, ax=ax, label="tokens D")
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def isoflop(path, fit, N, Cb, loss) -> None:
    """Left: IsoFLOP parabolas and minima. Right: N_opt, D_opt vs C."""
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    for i, (C, coef) in enumerate(zip(fit.budgets, fit.parabolas)):
        m = Cb == C
        color = f"C{i % 10}"
        ax.scatter(N[m], loss[m], s=16, color=color, label=f"C = {C:.2g}")
        g = np.geomspace(N[m].min(), N[m].max(), 100)
        ax.plot(g, np.polyval(coef, np.log(g)), color=color, lw=1)
        ax.plot(fit.n_opt[i], fit.loss_opt[i], marker="*", ms=12, color=color, mec="k")
    ax.set_xscale("log")
    ax.set(xlabel="parameters N", ylabel="loss")
    ax.set_title("IsoFLOP profiles", fontsize=9)
    ax.legend(fontsize=7)
    cg = np.geomspace(fit.budgets.min() / 2, fit.budgets.max() * 2, 50)
    p = fit.params
    ax2.scatter(fit.budgets, fit.n_opt, color="C0", label="N_opt")
    ax2.plot(cg, fit.n_opt_at(cg), color="C0", label=f"N_opt ∝ C^{p['a']:.3f}")
    ax2.scatter(fit.budgets, fit.d_opt, color="C1", label="D_opt")
    ax2.plot(cg, fit.d_opt_at(cg), color="C1", label=f"D_opt ∝ C^{p['b']:.3f}")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("compute C (FLOPs)")
    ax2.legend(fontsize=8)
    _save(fig, path)


# ------------------------------------------------------------------ evaluation pictures

def answers(path, pictures, predictions, correct, spectrograms: bool = False) -> None:
    """A grid of inputs (grey images [H, W] in [0, 1], or log-mel features [frames, mels]) titled with
    the model's answers, in red where wrong."""
    fig, axes = _grid(len(pictures), 6, 1.9)
    for ax, pic, pred, ok in zip(axes, pictures, predictions, correct):
        if not spectrograms:
            ax.imshow(pic, cmap="gray_r", vmin=0, vmax=1)
        else:
            ax.imshow(pic.T, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(pred[:22], fontsize=7, color="black" if ok else "red")
    _save(fig, path, 110)


def generated_images(path, images, digits, predicted) -> None:
    """Up to ten generated images per requested digit, titled requested->classified."""
    cols = min(int((digits == 0).sum()), 10)
    keep = np.concatenate([np.nonzero(digits == d)[0][:cols] for d in range(10)])
    fig, axes = _grid(len(keep), cols, 1.0)
    for ax, i in zip(axes, keep):
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{digits[i]}->{predicted[i]}", fontsize=6, color="black" if digits[i] == predicted[i] else "red")
    _save(fig, path, 110)
