"""Fit scaling laws to a CSV of training runs and plot them.

    python scripts/scaling.py fit --csv runs.csv --form chinchilla|power_n|power_c \
        [--params-col params] [--tokens-col tokens] [--flops-col flops] \
        [--loss-col loss] [--bootstrap 200] [--seed 0] [--plot fit.png]
    python scripts/scaling.py isoflop --csv runs.csv [--bucket-col COL] [--plot iso.png]

Any CSV works (extra columns are ignored); rows whose needed values are empty,
NaN, non-numeric or not positive are skipped. The result is printed to stdout
as JSON: ``{"form", "n_points", "params": {name: {"value", "ci": [lo, hi]}},
"r2_log", ...}``. Bad input (missing file or column, too few points) exits with
status 2 and a one-line message, writing nothing.
"""
import argparse
import csv
import json
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from gptjax import scaling  # noqa: E402

FORMS = ("chinchilla", "power_n", "power_c")
MIN_POINTS = {"chinchilla": 6, "power_n": 4, "power_c": 4, "isoflop": 6}


class InputError(Exception):
    """Bad user input: reported on one line, exit status 2."""


# --------------------------------------------------------------------------- #
# Input
# --------------------------------------------------------------------------- #
def _to_positive_float(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def read_columns(path, columns):
    """Read the named columns as floats; rows with any bad value are skipped.

    Returns ``(dict name -> np.ndarray, n_skipped)``.
    """
    p = pathlib.Path(path)
    if not p.is_file():
        raise InputError(f"CSV file not found: {path}")
    try:
        with p.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise InputError(
                    f"column(s) {', '.join(repr(c) for c in missing)} not in {p.name}; "
                    f"columns are: {', '.join(header) if header else '(none)'}")
            values = {c: [] for c in columns}
            skipped = 0
            for row in reader:
                parsed = [_to_positive_float(row.get(c)) for c in columns]
                if any(v is None for v in parsed):
                    skipped += 1
                    continue
                for c, v in zip(columns, parsed):
                    values[c].append(v)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    return {c: np.asarray(v, dtype=float) for c, v in values.items()}, skipped


def _check_plot_path(plot):
    if plot is None:
        return None
    out = pathlib.Path(plot)
    if not out.parent.is_dir():
        raise InputError(f"folder for --plot does not exist: {out.parent}")
    return out


# --------------------------------------------------------------------------- #
# Plots
# --------------------------------------------------------------------------- #
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_chinchilla(fit, N, D, loss, out):
    """Loss vs N coloured by D, with the fitted curve at several D values."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(7, 5))
    norm = LogNorm(vmin=D.min(), vmax=max(D.max(), D.min() * 1.0001))
    sc = ax.scatter(N, loss, c=D, cmap="viridis", norm=norm, s=18, zorder=3,
                    edgecolors="k", linewidths=0.3)
    levels = np.unique(D)
    if len(levels) > 8:
        levels = np.geomspace(D.min(), D.max(), 6)
    grid = np.geomspace(N.min() / 1.5, N.max() * 1.5, 200)
    for d in levels:
        ax.plot(grid, fit.predict(grid, d), color=plt.cm.viridis(norm(d)), lw=1.2)
    ax.axhline(fit.params["E"], color="grey", ls=":", lw=1, label=f"E = {fit.params['E']:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
    p = fit.params
    ax.set_title(f"L = {p['E']:.3g} + {p['A']:.3g}/N^{p['alpha']:.3f} + "
                 f"{p['B']:.3g}/D^{p['beta']:.3f}   (R² log = {fit.r2_log:.4f})", fontsize=9)
    fig.colorbar(sc, ax=ax, label="tokens D")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_power(fit, x, loss, out, xlabel):
    """Loss vs x with the fitted power law."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(x, loss, s=18, zorder=3, label="runs")
    grid = np.geomspace(x.min() / 1.5, x.max() * 1.5, 200)
    p = fit.params
    ax.plot(grid, fit.predict(grid), color="C1",
            label=f"{p['E']:.3g} + {p['A']:.3g} / {fit.variable}^{p['alpha']:.3f}")
    ax.axhline(p["E"], color="grey", ls=":", lw=1, label=f"E = {p['E']:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(f"{fit.form}   (R² log = {fit.r2_log:.4f})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_isoflop(fit, N, Cb, loss, out):
    """Left: IsoFLOP parabolas and minima. Right: N_opt, D_opt vs C."""
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    for i, (C, coef) in enumerate(zip(fit.budgets, fit.parabolas)):
        m = Cb == C
        color = f"C{i % 10}"
        ax.scatter(N[m], loss[m], s=16, color=color, label=f"C = {C:.2g}")
        g = np.geomspace(N[m].min(), N[m].max(), 100)
        ax.plot(g, np.polyval(coef, np.log(g)), color=color, lw=1)
        ax.plot(fit.n_opt[i], fit.loss_opt[i], marker="*", ms=12, color=color, mec="k")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
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
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- #
# Commands
# --------------------------------------------------------------------------- #
def cmd_fit(args):
    plot = _check_plot_path(args.plot)
    if args.form == "chinchilla":
        cols = [args.params_col, args.tokens_col, args.loss_col]
    elif args.form == "power_n":
        cols = [args.params_col, args.loss_col]
    else:
        cols = [args.flops_col, args.loss_col]
    data, skipped = read_columns(args.csv, cols)
    n = len(data[args.loss_col])
    if n < MIN_POINTS[args.form]:
        raise InputError(f"need at least {MIN_POINTS[args.form]} usable rows for "
                         f"{args.form}, got {n} ({skipped} skipped)")
    loss = data[args.loss_col]
    common = dict(bootstrap=args.bootstrap, seed=args.seed, ci=args.ci)
    try:
        if args.form == "chinchilla":
            N, D = data[args.params_col], data[args.tokens_col]
            fit = scaling.fit_chinchilla(N, D, loss, n_starts=args.n_starts, **common)
        elif args.form == "power_n":
            N = data[args.params_col]
            fit = scaling.fit_power(N, loss, variable="N", **common)
        else:
            C = data[args.flops_col]
            fit = scaling.fit_power(C, loss, variable="C", **common)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    result = fit.to_dict()
    result.update(n_skipped=skipped, columns=cols)
    if plot is not None:
        if args.form == "chinchilla":
            plot_chinchilla(fit, N, D, loss, plot)
        elif args.form == "power_n":
            plot_power(fit, N, loss, plot, "parameters N")
        else:
            plot_power(fit, C, loss, plot, "compute C (FLOPs)")
        result["plot"] = str(plot)
    return result


def cmd_isoflop(args):
    plot = _check_plot_path(args.plot)
    bucket_col = args.bucket_col or args.flops_col
    cols = list(dict.fromkeys([args.params_col, args.tokens_col, bucket_col, args.loss_col]))
    data, skipped = read_columns(args.csv, cols)
    n = len(data[args.loss_col])
    if n < MIN_POINTS["isoflop"]:
        raise InputError(f"need at least {MIN_POINTS['isoflop']} usable rows for isoflop, "
                         f"got {n} ({skipped} skipped)")
    N, D, loss = data[args.params_col], data[args.tokens_col], data[args.loss_col]
    Cb = data[bucket_col]
    if args.bucket_col is None:  # runs whose FLOPs agree within --bucket-rtol
        Cb = scaling.bucket_by_compute(Cb, rtol=args.bucket_rtol)
    try:
        fit = scaling.isoflop_fit(N, D, Cb, loss, bootstrap=args.bootstrap, seed=args.seed,
                                  ci=args.ci)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    result = fit.to_dict()
    result.update(n_skipped=skipped, columns=cols)
    if plot is not None:
        plot_isoflop(fit, N, Cb, loss, plot)
        result["plot"] = str(plot)
    return result


def _json_safe(obj):
    """Replace NaN/inf (not valid JSON) by null, recursively."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def build_parser():
    parser = argparse.ArgumentParser(prog="scaling.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--csv", required=True, help="input CSV with one row per run")
        p.add_argument("--params-col", default="params", help="column of parameter counts N")
        p.add_argument("--tokens-col", default="tokens", help="column of training tokens D")
        p.add_argument("--flops-col", default="flops", help="column of training FLOPs C")
        p.add_argument("--loss-col", default="loss", help="column of final losses")
        p.add_argument("--bootstrap", type=int, default=200,
                       help="bootstrap resamples for confidence intervals (0 = none)")
        p.add_argument("--ci", type=float, default=0.95, help="confidence level")
        p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
        p.add_argument("--plot", default=None, help="write a PNG of the fit here")

    fit = sub.add_parser("fit", help="parametric fit: chinchilla, power_n or power_c")
    common(fit)
    fit.add_argument("--form", required=True, choices=FORMS)
    fit.add_argument("--n-starts", type=int, default=64,
                     help="chinchilla: grid starts refined by L-BFGS (0 = whole grid)")
    fit.set_defaults(func=cmd_fit)

    iso = sub.add_parser("isoflop", help="Chinchilla approach 2 (IsoFLOP parabolas)")
    common(iso)
    iso.add_argument("--bucket-col", default=None,
                     help="numeric column giving each run's compute budget (default: "
                          "group the FLOPs column, see --bucket-rtol)")
    iso.add_argument("--bucket-rtol", type=float, default=0.1,
                     help="runs whose FLOPs differ by less than this fraction from their "
                          "neighbour share a budget")
    iso.set_defaults(func=cmd_isoflop)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.bootstrap < 0 or not 0 < args.ci < 1:
        print("scaling.py: error: --bootstrap must be >= 0 and --ci in (0, 1)", file=sys.stderr)
        return 2
    if getattr(args, "n_starts", 1) == 0:
        args.n_starts = None
    if getattr(args, "bucket_rtol", 1) < 0:
        print("scaling.py: error: --bucket-rtol must be >= 0", file=sys.stderr)
        return 2
    try:
        result = args.func(args)
    except InputError as exc:
        print(f"scaling.py: error: {exc}", file=sys.stderr)
        return 2
    json.dump(_json_safe(result), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
