"""Fit scaling laws to a CSV of training runs and plot them.

    python scripts/scaling.py fit --csv runs.csv --form chinchilla|power_n|power_c \
        [--params-col params] [--tokens-col tokens] [--flops-col flops] \
        [--loss-col loss] [--bootstrap 200] [--seed 0] [--plot fit.png]
    python scripts/scaling.py isoflop --csv runs.csv [--bucket-col COL] [--plot iso.png]

Any CSV works (extra columns are ignored); rows whose needed values are empty,
NaN, non-numeric or not positive are skipped. The result is printed to stdout
as JSON: ``{"form", "n_points", "params": {name: {"value", "ci": [lo, hi]}},
"r2_log", ...}``. Bad input (missing file or column, too few points, data that
cannot identify the law, a --plot that is not a .png file) exits with status 2
and a one-line message, writing nothing. The work is done by gptjax/science/fit_csv.py.
"""
import argparse
import sys

import _bootstrap  # noqa: F401

from gptjax.cli import main_guard
from gptjax.science import fit_csv


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="scaling.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="parametric fit: chinchilla, power_n or power_c")
    iso = sub.add_parser("isoflop", help="Chinchilla approach 2 (IsoFLOP parabolas)")
    for p in (fit, iso):
        p.add_argument("--csv", required=True, help="input CSV with one row per run")
        p.add_argument("--params-col", default="params", help="column of parameter counts N")
        p.add_argument("--tokens-col", default="tokens", help="column of training tokens D")
        p.add_argument("--flops-col", default="flops", help="column of training FLOPs C")
        p.add_argument("--loss-col", default="loss", help="column of final losses")
        p.add_argument("--bootstrap", type=int, default=200,
                       help="bootstrap resamples for confidence intervals (0 = none)")
        p.add_argument("--ci", type=float, default=0.95, help="confidence level")
        p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
        p.add_argument("--plot", default=None, help="write a PNG of the fit to this file (NAME.png)")
    fit.add_argument("--form", required=True, choices=fit_csv.FORMS)
    fit.add_argument("--n-starts", type=int, default=64,
                     help="chinchilla: grid starts refined by L-BFGS (0 = whole grid)")
    iso.add_argument("--bucket-col", default=None,
                     help="numeric column giving each run's compute budget (default: "
                          "group the FLOPs column, see --bucket-rtol)")
    iso.add_argument("--bucket-rtol", type=float, default=0.1,
                     help="runs whose FLOPs differ by less than this fraction from their "
                          "neighbour share a budget")
    return parser.parse_args(argv)


@main_guard
def main(argv=None) -> int:
    return fit_csv.run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
