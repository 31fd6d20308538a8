"""What `scripts/train.py` does once its arguments are read: start the processes, then plan or train.

Split from the script so that the order that matters (CPU devices and the
multi-process runtime set before JAX starts) lives with the code it protects.
"""
from __future__ import annotations

import logging

from gptjax.cli import setup_logging
from gptjax.parallel.distributed import initialize, split_cpu

# exit status of a run that stopped for preemption after saving: rerun the same command
EXIT_PREEMPTED = 75


def train_main(exp, args) -> None:
    """Dry run or train `exp` as `args` (scripts/train.py's) say; prints the results on process 0."""
    if args.dry_run:  # before JAX starts: enough virtual CPU devices to plan the mesh on a CPU
        from gptjax.train.dry_run import plan_devices

        plan_devices(exp)
    else:
        split_cpu(exp, args.num_processes)
    setup_logging()
    initialize(args.coordinator, args.num_processes, args.process_id)  # logs each process's place
    import jax

    primary = jax.process_index() == 0  # only process 0 logs and prints
    if not primary:
        logging.getLogger().setLevel(logging.WARNING)
    if primary:
        print(exp.to_json())
    if args.dry_run:
        from gptjax.train.dry_run import report

        report(exp)
        return
    from gptjax.model.decode import sample_text
    from gptjax.train.ema import eval_params
    from gptjax.train.loop import run

    result = run(exp, args.workdir, force=args.force, progress=not args.no_progress)
    if result.preempted:
        raise SystemExit(EXIT_PREEMPTED)
    if not primary:
        return
    t = exp.train
    if result.start_step >= t.steps:
        print(f"already at step {result.start_step} of {t.steps}: nothing to train (raise train.steps to go on; "
              f"scripts/sample.py --workdir {args.workdir} samples from it)")
        return
    print(f"done: {t.steps} steps, final eval loss {result.eval_loss:.4f}, {result.wall_time:.1f}s of training")
    if t.sample_tokens and jax.process_count() > 1:
        print(f"(samples: parameters span {jax.process_count()} processes; "
              f"run scripts/sample.py --workdir {args.workdir})")
    elif t.sample_tokens:
        params = eval_params(result.state.params, result.state.opt_state)
        texts = sample_text(params, result.spec, result.data.tokenizer, "\n", t.sample_tokens, 2)
        for i, text in enumerate(texts):
            print(f"---------- sample {i}\n{text}")
