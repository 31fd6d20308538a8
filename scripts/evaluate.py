"""Score a trained run on a task, print the scores as JSON, then write DIR/eval_<task>.json and .md.

  python scripts/evaluate.py --workdir DIR --task translate|sentiment|qa|jsonl --data PATH [--beam N]
  python scripts/evaluate.py --workdir DIR --task caption|vqa|transcribe|generate [--zero_media]

Text tasks read PATH in the task's own format: translate, a prefix P of aligned files
P.<source>[.gz] and P.<target>[.gz] (Multi30k's names: .../multi30k/test_2016_flickr);
sentiment, a GLUE-format TSV; qa, a bAbI file or a folder of qaN_*.txt files; jsonl, a JSONL
file of {"prompt", "target"}. --held_out scores instead the validation examples the run's own
training held out (from its data.folder, else GPTJAX_DATA_DIR) and writes eval_<task>_held_out.*:
choose decoding settings there, not on a test set. Multimodal tasks score the run's own test
split (and a PNG); --zero_media replaces every image / audio clip by zeros (expect chance accuracy).
--step N scores checkpoint N instead of the newest (its results go to eval_<task>[_held_out]_stepN.*).
--ensemble DIR [DIR ...] (text tasks) adds more runs of the same model shape, tokenizer and task format:
their next-token probabilities are averaged with --workdir's at every step, as fairseq's ensembles do
(gptjax/model/ensemble.py); each member's newest checkpoint is read (--step picks --workdir's), and the
scores go to eval_<task>[_held_out]_ensembleM.* in --workdir. To train a member with the first run's
tokenizer, copy its tokenizer/ folder into the new workdir before scripts/train.py.
"""
import argparse
import json
import logging

import _bootstrap  # noqa: F401

from gptjax.cli import doing, main_guard, require

TEXT_TASKS = ("translate", "sentiment", "qa", "jsonl")


@main_guard
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="a run folder written by scripts/train.py")
    p.add_argument("--task", required=True, help="translate | sentiment | qa | jsonl | caption | vqa | transcribe | "
                   "generate")
    p.add_argument("--data", default="", help="text tasks: the examples to score (see above)")
    p.add_argument("--held_out", action="store_true", help="text tasks: score the run's own held-out validation "
                   "examples instead of --data")
    p.add_argument("--beam", type=int, default=1, help="text tasks: beam size (1: greedy)")
    p.add_argument("--length_penalty", type=float, default=0.6, help="beam search: GNMT's alpha (0: none)")
    p.add_argument("--step", type=int, default=None, help="score checkpoint N (its results go to eval_<task>..."
                   "_stepN.*); default: the newest")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="DIR", help="text tasks: more run folders whose "
                   "predictions are averaged with --workdir's")
    p.add_argument("--zero_media", action="store_true", help="ablation: images and audio replaced by zeros")
    p.add_argument("--batch_size", type=int, default=64, help="prompts decoded together")
    p.add_argument("--limit", type=int, default=0, help="score only the first N examples (0: all)")
    p.add_argument("--num_samples", type=int, default=10, help="generate: images per digit")
    p.add_argument("--temperature", type=float, default=1.0, help="generate: sampling temperature (0: greedy)")
    p.add_argument("--top_k", type=int, default=0, help="generate: keep the k likeliest grey levels (0: all)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    require(batch_size=(a.batch_size, a.batch_size > 0, "a positive number"),
            limit=(a.limit, a.limit >= 0, "0 (all) or a positive number"),
            step=(a.step, a.step is None or a.step >= 0, "a saved checkpoint's step, 0 or more"),
            num_samples=(a.num_samples, a.num_samples > 0, "a positive number"),
            temperature=(a.temperature, a.temperature >= 0, "0 (greedy) or more"),
            top_k=(a.top_k, a.top_k >= 0, "0 (no cut) or more"), beam=(a.beam, a.beam > 0, "a positive beam size"),
            length_penalty=(a.length_penalty, a.length_penalty >= 0, "0 or more"),
            data=(a.data, bool(a.data) != a.held_out or a.task not in TEXT_TASKS,
                  f"the examples to score for --task {a.task}, or --held_out instead (not both)"),
            ensemble=(" ".join(a.ensemble), not a.ensemble or a.task in TEXT_TASKS,
                      f"a text task for an ensemble ({', '.join(TEXT_TASKS)}), not --task {a.task}"))
    logging.basicConfig(level=logging.WARNING)
    with doing(f"evaluating {a.task} on {a.workdir}"):
        if a.task in TEXT_TASKS:
            from gptjax.tasks.text_eval import HELD_OUT, run

            result, write = run(a.workdir, a.task, HELD_OUT if a.held_out else a.data, beam=a.beam,
                                alpha=a.length_penalty, limit=a.limit or None, step=a.step, ensemble=a.ensemble)
        else:
            from gptjax.tasks.media_eval import run

            result, write = run(a.workdir, a.task, zero_media=a.zero_media, batch_size=a.batch_size,
                                limit=a.limit or None, num_samples=a.num_samples, temperature=a.temperature,
                                top_k=a.top_k, seed=a.seed, step=a.step)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1, ensure_ascii=False), flush=True)
    with doing(f"writing the results into {a.workdir}"):
        write()


if __name__ == "__main__":
    main()
