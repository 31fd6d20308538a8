"""Train an experiment on a Cloud TPU VM slice: create (or reuse) it, sync the code, install, run.

  python scripts/launch_tpu_vm.py --name my-v5p --zone us-east5-a --accelerator_type v5p-16 \\
      --project my-project --experiment experiments/gpt2_124m.py --workdir gs://my-bucket/runs/gpt2 \\
      --set train.steps=1000 --spot [--dry_run]

Every flag is checked before any VM exists (a bad one exits 2 and creates nothing);
`--dry_run` prints the gcloud commands, one per line. Re-running the command
resumes from the newest checkpoint. The steps, and what a gs:// workdir means,
are described in gptjax/parallel/tpu_vm.py, which does the work.
"""
import argparse
import sys

import _bootstrap

from gptjax.cli import main_guard
from gptjax.parallel import tpu_vm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="TPU VM name (reused when it exists): lowercase letter first, "
                   "then lowercase letters, digits, hyphens; at most 63 characters")
    p.add_argument("--zone", required=True, help="e.g. us-east5-a (where your TPU quota is)")
    p.add_argument("--accelerator_type", required=True, help="e.g. v5p-16, v4-32, v5litepod-8, v6e-16")
    p.add_argument("--version", default="", help="TPU software version (default: per generation, "
                   + ", ".join(f"{k}: {v}" for k, v in tpu_vm.RUNTIME.items()) + ")")
    p.add_argument("--project", default="", help="GCP project (default: gcloud's configured project)")
    p.add_argument("--experiment", required=True, help="an experiment file inside this checkout")
    p.add_argument("--workdir", required=True, help="gs://BUCKET/path (mounted on every worker) or a path "
                   "on the workers (shared filesystem for multi-host slices)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override passed to scripts/train.py (repeatable)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--spot", action="store_true", help="create a Spot slice (cheaper, preemptible)")
    kind.add_argument("--preemptible", action="store_true", help="create a preemptible slice (older form)")
    p.add_argument("--detach", action="store_true", help="run training under nohup (log: ~/gptjax/train.log)")
    p.add_argument("--skip_setup", action="store_true", help="do not re-sync code or reinstall")
    p.add_argument("--dry_run", action="store_true", help="print the gcloud commands instead of running them")
    return p.parse_args(argv)


@main_guard
def main(argv=None) -> int:
    return tpu_vm.launch(parse_args(argv), root=_bootstrap.ROOT)


if __name__ == "__main__":
    sys.exit(main())
