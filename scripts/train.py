"""Train an experiment: python scripts/train.py EXPERIMENT.py --workdir DIR [--set key=value ...]

Re-running the same command on the same workdir resumes from the latest checkpoint;
on a finished run it says so and exits 0.
"""
import argparse

import _bootstrap  # noqa: F401

from gptjax.cli import main_guard
from gptjax.config import resolve_experiment, valid_keys
from gptjax.errors import ConfigError


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
                   "(JAX detects TPU VM / SLURM / MPI), 'none'; default: detect (see gptjax/parallel/distributed.py)")
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
    from gptjax.train.entry import train_main

    train_main(exp, args)


if __name__ == "__main__":
    main()
