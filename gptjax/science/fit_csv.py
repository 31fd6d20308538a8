"""Scaling-law fits of a CSV of training runs (the work of scripts/scaling.py): read the columns, fit,
plot, print the result as JSON.

Any CSV works (extra columns are ignored); rows whose needed values are empty, NaN,
non-numeric or not positive are skipped. Bad input raises ConfigError or DataError
before anything is written.
"""
from __future__ import annotations

import csv
import json
import math
import pathlib
import sys

import numpy as np

from gptjax import plots
from gptjax.cli import require
from gptjax.errors import ConfigError, DataError
from gptjax.science import chinchilla, isoflop, power_law

FORMS = ("chinchilla", "power_n", "power_c")
MIN_POINTS = {"chinchilla": chinchilla.MIN_POINTS, "power_n": power_law.MIN_POINTS,
              "power_c": power_law.MIN_POINTS, "isoflop": isoflop.MIN_POINTS}


def _to_positive_float(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def read_columns(path, columns) -> tuple[dict, int]:
    """The named columns as float arrays, skipping rows with any bad value: (name -> array, rows skipped)."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise DataError(f"--csv={path}: CSV file not found")
    try:
        with p.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataError(f"column(s) {', '.join(repr(c) for c in missing)} not in {p.name}; "
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
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"--csv={path}: cannot read it as CSV ({exc})") from None
    return {c: np.asarray(v, dtype=float) for c, v in values.items()}, skipped


def check_plot_path(plot) -> pathlib.Path | None:
    """Refuse a --plot that cannot become one PNG file, before any fitting."""
    if plot is None:
        return None
    out = pathlib.Path(plot)
    if out.is_dir():
        raise ConfigError(f"--plot={plot}: is a folder; expected the PNG file to write, e.g. {out / 'fit.png'}")
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--plot={plot}: expected a file name ending in .png")
    if not out.parent.is_dir():
        raise ConfigError(f"--plot={plot}: its folder {out.parent} does not exist")
    return out


def _usable(args, cols, form) -> tuple[dict, int]:
    data, skipped = read_columns(args.csv, cols)
    n = len(data[args.loss_col])
    if n < MIN_POINTS[form]:
        raise DataError(f"need at least {MIN_POINTS[form]} usable rows for {form}, got {n} ({skipped} skipped)")
    return data, skipped


def cmd_fit(args) -> dict:
    """`fit`: the chinchilla law, or a power law in N or C."""
    plot = check_plot_path(args.plot)
    x_cols = {"chinchilla": [args.params_col, args.tokens_col], "power_n": [args.params_col],
              "power_c": [args.flops_col]}[args.form]
    cols = [*x_cols, args.loss_col]
    data, skipped = _usable(args, cols, args.form)
    loss = data[args.loss_col]
    common = dict(bootstrap=args.bootstrap, seed=args.seed, ci=args.ci)
    if args.form == "chinchilla":
        N, D = data[args.params_col], data[args.tokens_col]
        fit = chinchilla.fit_chinchilla(N, D, loss, n_starts=args.n_starts, **common)
    else:
        variable, x = ("N", data[args.params_col]) if args.form == "power_n" else ("C", data[args.flops_col])
        fit = power_law.fit_power(x, loss, variable=variable, **common)
    result = {**fit.to_dict(), "n_skipped": skipped, "columns": cols}
    if plot is not None:
        if args.form == "chinchilla":
            plots.chinchilla(plot, fit, N, D, loss)
        else:
            plots.power_law(plot, fit, x, loss, "parameters N" if variable == "N" else "compute C (FLOPs)")
        result["plot"] = str(plot)
    return result


def cmd_isoflop(args) -> dict:
    """`isoflop`: Chinchilla approach 2 on runs grouped by compute budget."""
    plot = check_plot_path(args.plot)
    bucket_col = args.bucket_col or args.flops_col
    cols = list(dict.fromkeys([args.params_col, args.tokens_col, bucket_col, args.loss_col]))
    data, skipped = _usable(args, cols, "isoflop")
    N, D, loss = data[args.params_col], data[args.tokens_col], data[args.loss_col]
    Cb = data[bucket_col]
    if args.bucket_col is None:  # runs whose FLOPs agree within --bucket-rtol
        Cb = isoflop.bucket_by_compute(Cb, rtol=args.bucket_rtol)
    fit = isoflop.isoflop_fit(N, D, Cb, loss, bootstrap=args.bootstrap, seed=args.seed, ci=args.ci)
    result = {**fit.to_dict(), "n_skipped": skipped, "columns": cols}
    if plot is not None:
        plots.isoflop(plot, fit, N, Cb, loss)
        result["plot"] = str(plot)
    return result


def json_safe(obj):
    """Replace NaN/inf (not valid JSON) by null, recursively."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def run(args) -> int:
    """Check the flags, run the command, print its result as JSON on stdout."""
    require(bootstrap=(args.bootstrap, args.bootstrap >= 0, "a number of resamples >= 0"),
            ci=(args.ci, 0 < args.ci < 1, "a confidence level in (0, 1), e.g. 0.95"))
    if args.command == "fit":
        require(**{"n-starts": (args.n_starts, args.n_starts >= 0, "a number of starts >= 0 (0 = whole grid)")})
        args.n_starts = args.n_starts or None
        result = cmd_fit(args)
    else:
        require(**{"bucket-rtol": (args.bucket_rtol, args.bucket_rtol >= 0, "a fraction >= 0, e.g. 0.1")})
        result = cmd_isoflop(args)
    json.dump(json_safe(result), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
