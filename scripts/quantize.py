"""Quantize a trained run's weights to int8 (or int4): a new workdir that sample.py, evaluate.py and
convert.py logits load as usual, and a JSON report comparing it with the original.

    python scripts/quantize.py --workdir runs/sc --out runs/sc_int8 [--bits 8|4] [--eval_batches N]

Post-training, weight-only, one scale per output channel (docs/efficiency.md). The report holds
eval_loss_fp32 and eval_loss_int8 (the run's own eval split), the weights' bytes in memory and on
disk, and KV-cache sampling speed of both. Nothing is written when the input is refused.
"""
import argparse
import json

import _bootstrap  # noqa: F401

from gptjax.cli import doing, main_guard, require


@main_guard
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="a run folder written by scripts/train.py")
    p.add_argument("--out", required=True, help="the new quantized workdir (must not exist, or be empty)")
    p.add_argument("--bits", type=int, default=8, help="8 or 4")
    p.add_argument("--eval_batches", type=int, default=0, help="eval batches to compare on (0: the run's own "
                   "train.eval_batches)")
    p.add_argument("--sample_tokens", type=int, default=256, help="tokens sampled to time decoding (0: skip)")
    a = p.parse_args(argv)
    require(bits=(a.bits, a.bits in (4, 8), "8 or 4"),
            eval_batches=(a.eval_batches, a.eval_batches >= 0, "0 (the run's own) or a positive number"),
            sample_tokens=(a.sample_tokens, a.sample_tokens >= 0, "0 (skip) or a positive number"))
    from gptjax.convert.quantize import quantize_workdir

    with doing(f"quantizing {a.workdir}"):
        report = quantize_workdir(a.workdir, a.out, a.bits, a.eval_batches, a.sample_tokens)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
