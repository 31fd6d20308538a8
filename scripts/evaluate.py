"""Score a trained multimodal run: python scripts/evaluate.py --workdir DIR --task caption|vqa|transcribe|generate

Prints a JSON object (accuracy; wer and cer for transcribe; the classifier's own
accuracy for generate), then writes DIR/eval_<task>.json, .md and .png.
--zero_media replaces every image / audio clip by zeros (expect chance accuracy).
"""
import argparse
import json
import logging

import _bootstrap  # noqa: F401

from gptjax.cli import doing, main_guard, require


@main_guard
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="a run folder written by scripts/train.py")
    p.add_argument("--task", required=True, help="caption | vqa | transcribe | generate")
    p.add_argument("--zero_media", action="store_true", help="ablation: images and audio replaced by zeros")
    p.add_argument("--batch_size", type=int, default=64, help="prompts decoded together")
    p.add_argument("--limit", type=int, default=0, help="score only the first N test examples (0: all)")
    p.add_argument("--num_samples", type=int, default=10, help="generate: images per digit")
    p.add_argument("--temperature", type=float, default=1.0, help="generate: sampling temperature (0: greedy)")
    p.add_argument("--top_k", type=int, default=0, help="generate: keep the k likeliest grey levels (0: all)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    require(batch_size=(a.batch_size, a.batch_size > 0, "a positive number"),
            limit=(a.limit, a.limit >= 0, "0 (all) or a positive number"),
            num_samples=(a.num_samples, a.num_samples > 0, "a positive number"),
            temperature=(a.temperature, a.temperature >= 0, "0 (greedy) or more"),
            top_k=(a.top_k, a.top_k >= 0, "0 (no cut) or more"))
    logging.basicConfig(level=logging.WARNING)
    from gptjax.tasks.media_eval import run

    with doing(f"evaluating {a.task} on {a.workdir}"):
        result, write = run(a.workdir, a.task, zero_media=a.zero_media, batch_size=a.batch_size,
                            limit=a.limit or None, num_samples=a.num_samples, temperature=a.temperature,
                            top_k=a.top_k, seed=a.seed)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1), flush=True)
    with doing(f"writing the results into {a.workdir}"):
        write()


if __name__ == "__main__":
    main()
