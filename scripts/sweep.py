"""Run an ablation sweep, or report on one.

    python scripts/sweep.py run SWEEP.py --root DIR [--parallel K] [--backend local|slurm|tpu-vm]
                                [--set key=value ...] [--dry_run]
    python scripts/sweep.py SWEEP.py --root DIR ...          (`run` implied)
    python scripts/sweep.py report DIR [--scaling] [--flops_convention 6N+attn]

`run` validates every run before starting any (a bad key exits 2), skips
finished runs and resumes interrupted ones from their checkpoints. Each run
trains in DIR/<name>/ (name from its swept values, e.g.
d_model=64,peak_lr=3.2e-4,seed=0) and logs to DIR/<name>/train.log. Exit
status 1 when any run failed. Local runs share JAX's persistent compilation
cache in DIR/.jax_cache (unless JAX_COMPILATION_CACHE_DIR is set), so runs that
differ only in seed, and resumed runs, skip compilation. `report` writes DIR/report.md, DIR/report.csv
and PNG plots; with --scaling also power-law fits in N and C (printed as JSON).
The work is done by gptjax/science/sweep_runner.py.
"""
import argparse
import sys

import _bootstrap

from gptjax.cli import main_guard
from gptjax.science import sweep_runner


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or submit) the sweep's unfinished runs")
    r.add_argument("sweep", help="a sweep file defining SWEEP = Sweep(...), e.g. experiments/sweeps/lr_width.py")
    r.add_argument("--root", required=True, help="sweep folder: one workdir per run, manifest, report")
    r.add_argument("--parallel", type=int, default=1, help="runs at a time (slurm: the %%K array limit)")
    r.add_argument("--backend", choices=sweep_runner.BACKENDS, default="local")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra fixed override for every run (not part of run names)")
    r.add_argument("--dry_run", action="store_true", help="print the commands (or sbatch script); run nothing")
    r.add_argument("--zone", default=None, help="tpu-vm: GCP zone (default: SWEEP.tpu['zone'])")
    r.add_argument("--accelerator_type", default=None, help="tpu-vm: e.g. v4-8 (default: SWEEP.tpu[...])")
    r.add_argument("--workdir_root", default=None,
                   help="tpu-vm: where the VMs write run folders (e.g. gs://bucket/sweeps/x); default --root")
    rep = sub.add_parser("report", help="table, CSV and plots of a sweep folder")
    rep.add_argument("root", help="the sweep folder given as --root to `run`")
    rep.add_argument("--flops_convention", default="6N+attn",
                     help="6N, 6N+attn or chinchilla (gptjax/model/flops.py)")
    rep.add_argument("--scaling", action="store_true",
                     help="fit L = E + A/x^alpha in N and C; write scaling_N.png, scaling_C.png, scaling.json")
    rep.add_argument("--params_col", default="params_non_embedding",
                     help="N for --scaling: params_non_embedding (Kaplan) or params (total)")
    rep.add_argument("--bootstrap", type=int, default=200, help="--scaling: bootstrap resamples for the CIs")
    if argv and argv[0] not in ("run", "report", "-h", "--help"):
        argv = ["run", *argv]  # `sweep.py SWEEP.py --root DIR` means run
    return p.parse_args(argv)


@main_guard
def main(argv=None) -> int:
    return sweep_runner.run(parse_args(sys.argv[1:] if argv is None else argv), checkout=_bootstrap.ROOT)


if __name__ == "__main__":
    sys.exit(main())
