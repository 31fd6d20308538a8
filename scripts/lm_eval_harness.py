"""Score a trained run with lm-evaluation-harness (pip install -r requirements-lm-eval.txt):

  python scripts/lm_eval_harness.py --workdir DIR --tasks NAME[,NAME...] [--include_path TASK_DIR]
      [--limit N] [--batch_size N] [--num_fewshot N] [--output results.json [--log_samples]]

Tasks are lm-eval's own (hellaswag, lambada_openai, ...: their data comes from the Hugging Face
Hub) or those of YAML files in --include_path (tests/lm_eval_task/ reads local JSONL files). Prints
lm-eval's results table; --output writes its whole results as JSON. The model is registered with
lm-eval as "gptjax" (gptjax/tasks/lm_eval_adapter.py). Named lm_eval_harness.py, not lm_eval.py,
so that it does not shadow the lm_eval package it imports.
"""
import argparse
import logging

import _bootstrap  # noqa: F401

from gptjax.cli import doing, main_guard, require


@main_guard
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="a run folder written by scripts/train.py")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval task names (or YAML paths)")
    p.add_argument("--include_path", default=None, help="a folder of extra task YAML files")
    p.add_argument("--limit", type=int, default=0, help="score only the first N documents of each task (0: all)")
    p.add_argument("--batch_size", type=int, default=32, help="requests scored or decoded together")
    p.add_argument("--max_gen_toks", type=int, default=256, help="generate_until: new tokens, unless the task says")
    p.add_argument("--num_fewshot", type=int, default=None, help="examples in the prompt (default: the task's)")
    p.add_argument("--bootstrap_iters", type=int, default=100000, help="stderr bootstrap (0: no stderr)")
    p.add_argument("--output", default="", help="write lm-eval's results as JSON here")
    p.add_argument("--log_samples", action="store_true", help="with --output: every request and response too")
    a = p.parse_args(argv)
    tasks = [t for t in a.tasks.split(",") if t.strip()]
    require(tasks=(a.tasks, bool(tasks), "one or more task names"),
            limit=(a.limit, a.limit >= 0, "0 (all) or a positive number"),
            batch_size=(a.batch_size, a.batch_size > 0, "a positive number"),
            max_gen_toks=(a.max_gen_toks, a.max_gen_toks > 0, "a positive number"),
            num_fewshot=(a.num_fewshot, a.num_fewshot is None or a.num_fewshot >= 0, "0 or more"),
            bootstrap_iters=(a.bootstrap_iters, a.bootstrap_iters >= 0, "0 or more"),
            log_samples=(a.log_samples, a.output or not a.log_samples, "--output to write the samples into"))
    logging.basicConfig(level=logging.WARNING)
    from gptjax.tasks import lm_eval_adapter

    with doing(f"scoring {a.workdir} on {a.tasks} with lm-eval"):
        results = lm_eval_adapter.run(a.workdir, [t.strip() for t in tasks], include_path=a.include_path,
                                      limit=a.limit or None, batch_size=a.batch_size, max_gen_toks=a.max_gen_toks,
                                      num_fewshot=a.num_fewshot, bootstrap_iters=a.bootstrap_iters,
                                      log_samples=a.log_samples)
    with doing(f"writing the results to {a.output or 'stdout'}"):
        print(lm_eval_adapter.report(results, a.output or None), flush=True)


if __name__ == "__main__":
    main()
