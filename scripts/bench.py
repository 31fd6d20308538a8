"""Benchmark the training step: python scripts/bench.py --experiment EXP [--set k=v ...] [--compare] [--torch]

Prints JSON: tokens/s, step time (median, min, max), achieved FLOP/s, MFU where the
device's peak is known, peak memory, compile time, and the machine (CPU model and
vector extensions, devices). `--compare` also times the plain reference (naive
attention) in the same process and prints the speed-up as a ratio; `--torch` times
the same model and step written in PyTorch (gptjax/science/bench_torch.py, needs
requirements-interop.txt) and prints jax tokens/s over torch tokens/s; `--profile` traces
two steps and adds the share of op time per kind of op (matmul, copies, reductions, ...);
`--loss_share F` puts only the last F of each row's positions in the loss, as a task's targets.
"""
import argparse
import json

import _bootstrap  # noqa: F401

from gptjax.cli import main_guard, require
from gptjax.config import resolve_experiment


@main_guard
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=50, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks (median reported)")
    p.add_argument("--vocab_size", type=int, default=0, help="vocab when the experiment takes it from data")
    p.add_argument("--compare", nargs="*", metavar="KEY=VALUE", default=None,
                   help="also time the reference (default: model.attention=naive) and report the ratio")
    p.add_argument("--torch", action="store_true", help="also time the same step in PyTorch and report the ratio")
    p.add_argument("--loss_share", type=float, default=1.0,
                   help="share of each row's positions in the loss (the last ones), as a task's targets; 1: all")
    p.add_argument("--profile", action="store_true",
                   help="also trace two steps (jax.profiler) and report the op time by kind of op")
    a = p.parse_args(argv)
    require(steps=(a.steps, a.steps > 0, "a positive number of steps"),
            repeats=(a.repeats, a.repeats > 0, "a positive number of timed blocks"),
            vocab_size=(a.vocab_size, a.vocab_size >= 0, "0 (the experiment's) or a positive size"),
            loss_share=(a.loss_share, 0 < a.loss_share <= 1, "a share in (0, 1]"))
    exp = resolve_experiment(a.experiment, a.overrides)

    from gptjax.parallel.distributed import split_cpu
    from gptjax.science.bench import benchmark

    split_cpu(exp)  # the devices scripts/train.py would give this experiment
    print(json.dumps(benchmark(exp, a.steps, a.repeats, a.vocab_size, a.compare, a.torch, a.profile,
                                a.loss_share), indent=2))


if __name__ == "__main__":
    main()
