"""Train an experiment on a Cloud TPU VM slice (the work of scripts/launch_tpu_vm.py): create (or
reuse) it, sync the code, install, run.

Steps, each a gcloud command (`--dry_run` prints them, one per line, shell-quoted):
1. `tpu-vm describe` the slice; `tpu-vm create` it when it does not exist;
2. pack this checkout (files git tracks or would track; else the tree minus
   .venv, runs, caches) and `tpu-vm scp --worker=all` it to ~/gptjax;
3. on every worker: unpack, make a Python 3.11 venv with uv, and install
   requirements.txt plus jax[tpu] at the version requirements.txt pins;
4. on every worker: `scripts/train.py EXPERIMENT --workdir ... --coordinator auto`
   (JAX finds the other workers from the TPU metadata; process 0 logs).

A gs:// workdir is mounted with gcsfuse at the same path on every worker, so that
all of them see one folder: Orbax writes every worker's checkpoint shards there.
A local workdir is fine on a one-host slice; on a multi-host slice it must be a
filesystem all workers share. Re-running the command resumes from the newest
checkpoint; `--spot` slices that were preempted are re-created by re-running it.
"""
from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile

from gptjax.config import resolve_experiment
from gptjax.errors import ConfigError, RunError

REMOTE_DIR = "~/gptjax"
REMOTE_VENV = "~/gptjax-venv"
PYTHON_VERSION = "3.11"
GCS_MOUNT_ROOT = "/tmp/gcs"
REMOTE_TRAIN = "scripts/train.py"  # the training entry point, inside the copy the workers get
EXCLUDE = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", "node_modules", ".mypy_cache"}

# TPU VM software versions (gcloud --version), per generation
RUNTIME = {"v2": "tpu-ubuntu2204-base", "v3": "tpu-ubuntu2204-base", "v4": "tpu-ubuntu2204-base",
           "v5litepod": "v2-alpha-tpuv5-lite", "v5p": "v2-alpha-tpuv5",
           "v6e": "v2-alpha-tpuv6e"}


def _cubes(most: int) -> frozenset:
    """v4/v5p: slices within one 4x4x4 cube (8-64 TensorCores), then whole cubes (128 TensorCores each)."""
    return frozenset({8, 16, 32, 64, *range(128, most + 1, 128)})


# The slice sizes Cloud TPU offers per generation, and how to say them
SLICE_SIZES = {
    "v2": (frozenset({8, 32, 128, 256, 512}), "8, 32, 128, 256 or 512 TensorCores"),
    "v3": (frozenset({8, 32, 64, 128, 256, 512, 1024, 2048}), "8, 32, 64, 128, 256, 512, 1024 or 2048 TensorCores"),
    "v4": (_cubes(8192), "8, 16, 32, 64 or a multiple of 128 up to 8192 TensorCores"),
    "v5p": (_cubes(12288), "8, 16, 32, 64 or a multiple of 128 up to 12288 TensorCores"),
    "v5litepod": (frozenset({1, 4, 8, 16, 32, 64, 128, 256}), "1, 4, 8, 16, 32, 64, 128 or 256 chips"),
    "v6e": (frozenset({1, 4, 8, 16, 32, 64, 128, 256}), "1, 4, 8, 16, 32, 64, 128 or 256 chips"),
}
GCP_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")


def parse_accelerator(accelerator_type: str) -> tuple[str, int, int, int]:
    """(generation, size, JAX devices, hosts) of an accelerator type such as v5p-16.

    The suffix counts TensorCores on v2-v4 and v5p (two per chip on v4/v5p, one
    JAX device per chip there; one device per core on v2/v3) and chips on
    v5e/v6e. A host holds 4 chips (v4, v5p, multi-host v5e/v6e) or 8 cores (v2/v3).
    """
    m = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)", accelerator_type)
    if not m:
        raise ConfigError(f"--accelerator_type={accelerator_type!r}: expected GENERATION-SIZE, e.g. "
                          f"v5p-16, v4-32, v5litepod-8, v6e-16, v3-8 (generations: {', '.join(RUNTIME)})")
    gen, size = m[1], int(m[2])
    sizes, accepted = SLICE_SIZES[gen]
    if size not in sizes:
        raise ConfigError(f"--accelerator_type={accelerator_type!r}: not a {gen} slice; {gen} slices come in "
                          f"{accepted} (e.g. {gen}-{sorted(sizes)[1]})")
    if gen in ("v2", "v3"):
        devices, hosts = size, max(1, size // 8)
    elif gen in ("v4", "v5p"):
        devices, hosts = size // 2, max(1, size // 8)
    else:  # v5e (v5litepod) / v6e count chips; up to 8 on one host, 4 per host beyond
        devices, hosts = size, 1 if size <= 8 else size // 4
    return gen, size, devices, hosts


def check_name(name: str) -> None:
    if not GCP_NAME.fullmatch(name):
        raise ConfigError(f"--name={name!r}: expected a GCP resource name: a lowercase letter first, then "
                          "lowercase letters, digits or hyphens, at most 63 characters, not ending in a hyphen "
                          "(e.g. gpt2-v5p-16)")


def pinned_jax_version(root: pathlib.Path) -> str:
    text = (root / "requirements.txt").read_text()
    m = re.search(r"^jax==([\w.]+)", text, re.M)
    if not m:
        raise ConfigError("requirements.txt does not pin jax (a line jax==X.Y.Z); the TPU install needs it")
    return m[1]


def repo_files(root: pathlib.Path) -> list[pathlib.Path]:
    """Files to ship: what git tracks or would track; without git, the tree minus EXCLUDE."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                             capture_output=True, text=True, check=True).stdout
        files = [root / f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in root.rglob("*") if p.is_file() and not EXCLUDE & set(p.relative_to(root).parts)]
    return [f for f in files if f.is_file() and not EXCLUDE & set(f.relative_to(root).parts)]


def pack(root: pathlib.Path, path: pathlib.Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for f in repo_files(root):
            tar.add(f, arcname=str(f.relative_to(root)))


def quote(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


class Plan:
    """The gcloud commands of one launch."""

    def __init__(self, args, hosts: int):
        self.a, self.hosts = args, hosts

    def _base(self, verb: str) -> list[str]:
        cmd = ["gcloud", "compute", "tpus", "tpu-vm", verb, self.a.name, f"--zone={self.a.zone}"]
        return cmd + ([f"--project={self.a.project}"] if self.a.project else [])

    def describe(self) -> list[str]:
        return self._base("describe") + ["--format=value(state)"]

    def create(self) -> list[str]:
        cmd = self._base("create") + [f"--accelerator-type={self.a.accelerator_type}",
                                      f"--version={self.a.version}"]
        return cmd + (["--spot"] if self.a.spot else []) + (["--preemptible"] if self.a.preemptible else [])

    def ssh(self, command: str) -> list[str]:
        return self._base("ssh") + ["--worker=all", f"--command={command}"]

    def scp(self, local: str, remote: str) -> list[str]:
        cmd = ["gcloud", "compute", "tpus", "tpu-vm", "scp", local, f"{self.a.name}:{remote}",
               f"--zone={self.a.zone}", "--worker=all"]
        return cmd + ([f"--project={self.a.project}"] if self.a.project else [])

    def setup_command(self, jax_version: str) -> str:
        """Unpack, Python venv, requirements + jax[tpu]; and gcsfuse when the workdir is on GCS."""
        # unpack over the old copy (never delete it: a relative workdir lives inside)
        steps = [f"mkdir -p {REMOTE_DIR} && tar -xzf ~/gptjax.tar.gz -C {REMOTE_DIR}",
                 # uv brings its own Python 3.11 where the image has another version
                 "command -v ~/.local/bin/uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh",
                 f"~/.local/bin/uv venv --allow-existing --python {PYTHON_VERSION} {REMOTE_VENV}",
                 f"~/.local/bin/uv pip install --python {REMOTE_VENV}/bin/python "
                 f"-r {REMOTE_DIR}/requirements.txt {shlex.quote(f'jax[tpu]=={jax_version}')}"]
        bucket = gcs_bucket(self.a.workdir)
        if bucket:
            mount = f"{GCS_MOUNT_ROOT}/{bucket}"
            steps += ["command -v gcsfuse >/dev/null || { "
                      "echo \"deb https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main\" "
                      "| sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && "
                      "curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg "
                      "| sudo tee /etc/apt/trusted.gpg.d/gcsfuse.asc >/dev/null && "
                      "sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse; }",
                      f"mkdir -p {mount}",
                      f"mountpoint -q {mount} || gcsfuse --implicit-dirs {shlex.quote(bucket)} {mount}"]
        return "; ".join(["set -eo pipefail"] + steps)

    def train_command(self) -> str:
        cmd = [REMOTE_TRAIN, self.a.experiment, "--workdir", local_workdir(self.a.workdir),
               "--no_progress", "--coordinator", "auto"]
        cmd += [a for o in self.a.overrides for a in ("--set", o)]
        # the venv path stays unquoted so that the worker's shell expands ~
        python = f"PYTHONUNBUFFERED=1 {REMOTE_VENV}/bin/python {quote(cmd)}"
        if self.a.detach:  # survives a dropped ssh connection; follow with tail -f ~/gptjax/train.log
            return f"cd {REMOTE_DIR} && (nohup {python} > train.log 2>&1 &)"
        return f"cd {REMOTE_DIR} && {python}"


def gcs_bucket(workdir: str) -> str:
    """The bucket of a gs:// workdir, "" for a path; any other URL is refused (only GCS gets mounted)."""
    m = re.fullmatch(r"gs://([a-z0-9][\w.-]*)(/.*)?", workdir)
    if workdir.startswith("gs://") and not m:
        raise ConfigError(f"--workdir={workdir!r}: expected gs://BUCKET/path")
    if not m and re.match(r"[A-Za-z][\w+.-]*://", workdir):
        raise ConfigError(f"--workdir={workdir!r}: expected gs://BUCKET/path (mounted on every worker) or a "
                          f"path on the workers; {workdir.split('://')[0]}:// URLs cannot be mounted")
    return m[1] if m else ""


def local_workdir(workdir: str) -> str:
    """The path train.py sees: gs://BUCKET/p becomes the gcsfuse mount /tmp/gcs/BUCKET/p."""
    bucket = gcs_bucket(workdir)
    return f"{GCS_MOUNT_ROOT}/{bucket}{workdir[len('gs://') + len(bucket):]}" if bucket else workdir


def check(args, root: pathlib.Path) -> tuple[int, int]:
    """Validate everything locally, before any VM exists: flags, experiment, overrides, mesh."""
    from types import SimpleNamespace

    from gptjax.parallel.mesh import check_divisible, mesh_shape

    check_name(args.name)
    gen, _, devices, hosts = parse_accelerator(args.accelerator_type)
    gcs_bucket(args.workdir)
    args.version = args.version or RUNTIME[gen]
    exp_path = pathlib.Path(args.experiment).resolve()
    if not exp_path.is_relative_to(root):
        raise ConfigError(f"--experiment {args.experiment}: must be a file inside this checkout ({root.name}/), "
                          "which is what gets copied to the workers")
    args.experiment = str(exp_path.relative_to(root))
    exp = resolve_experiment(exp_path, args.overrides)
    sizes = mesh_shape(exp.mesh, devices)
    check_divisible(exp, SimpleNamespace(shape=dict(zip(("data", "fsdp", "tensor"), sizes))))
    if hosts > 1 and not args.workdir.startswith("gs://"):
        print(f"warning: {args.accelerator_type} has {hosts} hosts; --workdir {args.workdir} must be a "
              "filesystem all of them share (else use gs://)", file=sys.stderr)
    return devices, hosts


def run_cmd(cmd: list[str], check_rc: bool = True) -> int:
    print("+ " + quote(cmd), file=sys.stderr, flush=True)
    rc = subprocess.run(cmd).returncode
    if check_rc and rc:
        raise RunError(f"command failed (exit {rc}): {quote(cmd)}")
    return rc


def launch(args, root) -> int:
    """Check everything, then create or reuse the slice, ship this checkout (`root`) and train; with
    args.dry_run print the gcloud commands instead. Returns the training command's exit status."""
    root = pathlib.Path(root).resolve()
    devices, hosts = check(args, root)
    plan = Plan(args, hosts)
    setup = plan.setup_command(pinned_jax_version(root))
    if args.dry_run:
        tarball = "gptjax.tar.gz"  # a temporary file when run for real
        print(f"# {args.accelerator_type}: {devices} JAX devices on {hosts} host(s); the code is packed "
              f"from {root.name}/ into {tarball} ({len(repo_files(root))} files)", file=sys.stderr)
        for cmd in [plan.describe(), plan.create()] + ([] if args.skip_setup else [
                plan.scp(tarball, "~/gptjax.tar.gz"), plan.ssh(setup)]) + [plan.ssh(plan.train_command())]:
            print(quote(cmd))
        return 0
    if subprocess.run(plan.describe(), capture_output=True).returncode != 0:
        run_cmd(plan.create())
    else:
        print(f"reusing TPU VM {args.name}", file=sys.stderr)
    if not args.skip_setup:
        with tempfile.TemporaryDirectory() as tmp:
            tarball = os.path.join(tmp, "gptjax.tar.gz")
            pack(root, pathlib.Path(tarball))
            run_cmd(plan.scp(tarball, "~/gptjax.tar.gz"))
        run_cmd(plan.ssh(setup))
    return run_cmd(plan.ssh(plan.train_command()), check_rc=False)
