"""Benchmark the training step: python scripts/bench.py --experiment EXP [--set k=v ...] [--compare]

Prints JSON: tokens/s, step time (median, min, max), achieved FLOP/s, MFU where the
device's peak is known, peak memory, compile time. `--compare` also times the plain
reference (naive attention) in the same process and prints the speed-up as a ratio;
`--torch` times the same model and step written in PyTorch (gptjax/bench_torch.py,
needs requirements-interop.txt) and prints jax tokens/s over torch tokens/s.
"""
import argparse
import json

import _bootstrap  # noqa: F401

from gptjax.config import apply_overrides, main_guard, resolve_experiment


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
    a = p.parse_args(argv)

    from gptjax.bench import bench_step
    from gptjax.distributed import split_cpu

    exp = resolve_experiment(a.experiment, a.overrides)
    split_cpu(exp)  # the devices scripts/train.py would give this experiment
    result = bench_step(exp, a.steps, repeats=a.repeats, vocab_size=a.vocab_size)
    if a.compare is not None:
        ref_exp = apply_overrides(exp, a.compare or ["model.attention=naive"]).validate()
        ref = bench_step(ref_exp, a.steps, repeats=a.repeats, vocab_size=a.vocab_size)
        result = {"run": result, "reference": ref, "reference_overrides": a.compare or ["model.attention=naive"],
                  "speedup": round(result["tokens_per_sec"] / ref["tokens_per_sec"], 3)}
    if a.torch:
        from gptjax.bench_torch import bench_torch_step

        ref = bench_torch_step(exp, a.vocab_size, a.steps, a.repeats)
        jax_tok_s = (result["run"] if "run" in result else result)["tokens_per_sec"]
        result = {**result, "torch": ref, "vs_torch": round(jax_tok_s / ref["tokens_per_sec"], 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
