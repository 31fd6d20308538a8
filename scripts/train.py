"""Train an experiment: python scripts/train.py EXPERIMENT.py --workdir DIR [--set key=value ...]

Re-running the same command on the same workdir resumes from the latest checkpoint.
"""
import argparse
import logging
import sys

import _bootstrap  # noqa: F401

from gptjax.config import ConfigError, main_guard, resolve_experiment, valid_keys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", help="an experiment file, e.g. experiments/shakespeare_char_cpu.py")
    p.add_argument("--workdir", default="", help="run folder: config, metrics, checkpoints, samples "
                   "(required unless --dry_run)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--force", action="store_true", help="discard checkpoints of a different experiment")
    p.add_argument("--no_progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--list_keys", action="store_true", help="print every overridable key and exit")
    p.add_argument("--dry_run", action="store_true",
                   help="print per-device memory and parameter shardings for the mesh, without training")
    p.add_argument("--coordinator", default="",
                   help="multi-process: host:port (explicit, with --num_processes/--process_id), 'auto' "
                   "(JAX detects TPU VM / SLURM / MPI), 'none'; default: detect (see gptjax/distributed.py)")
    p.add_argument("--num_processes", type=int, default=0, help="multi-process: number of processes")
    p.add_argument("--process_id", type=int, default=-1, help="multi-process: this process's index")
    return p.parse_args(argv)


@main_guard
def main(argv=None):
    args = parse_args(argv)
    if args.list_keys:
        print("\n".join(valid_keys()))
        return
    exp = resolve_experiment(args.experiment, args.overrides)
    if not args.workdir and not args.dry_run:
        raise ConfigError("--workdir is required (a run folder, e.g. runs/my_run), unless --dry_run")
    if "://" in args.workdir:
        raise ConfigError(f"--workdir={args.workdir}: train.py writes to a filesystem path, not a URL; mount "
                          "the bucket (gcsfuse) and pass the mounted path, or start the run with "
                          "scripts/launch_tpu_vm.py, which does both")
    from gptjax.distributed import initialize, split_cpu

    if not args.dry_run:
        split_cpu(exp, args.num_processes)
    if args.dry_run:  # before JAX starts: enough virtual CPU devices to plan the mesh on a CPU
        from gptjax.dry_run import plan_devices

        plan_devices(exp)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for name in ("absl", "orbax", "jax._src"):
        logging.getLogger(name).setLevel(logging.WARNING)
    initialize(args.coordinator, args.num_processes, args.process_id)  # logs each process's place
    import jax

    primary = jax.process_index() == 0  # only process 0 logs and prints
    if not primary:
        logging.getLogger().setLevel(logging.WARNING)

    if primary:
        print(exp.to_json())
    if args.dry_run:
        from gptjax.dry_run import report

        report(exp)
        return

    from gptjax.sample_text import print_samples
    from gptjax.train import run

    from gptjax.guards import EXIT_PREEMPTED, CheckpointWriteError, NonFiniteError

    try:
        result = run(exp, args.workdir, force=args.force, progress=not args.no_progress)
    except (NonFiniteError, CheckpointWriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if result.preempted:
        raise SystemExit(EXIT_PREEMPTED)
    if not primary:
        return
    print(f"done: {exp.train.steps} steps, final eval loss {result.eval_loss:.4f}, "
          f"{result.wall_time:.1f}s of training")
    if exp.train.sample_tokens and jax.process_count() > 1:
        print(f"(samples: parameters span {jax.process_count()} processes; "
              f"run scripts/sample.py --workdir {args.workdir})")
    elif exp.train.sample_tokens:
        print_samples(result.state.params, result.spec, result.data.tokenizer, n_tokens=exp.train.sample_tokens)


if __name__ == "__main__":
    main()
