"""Where sweep runs execute: local subprocesses, a Slurm job array, or TPU VMs.

Every run has its own folder ``ROOT/<name>/`` (train.py's workdir). The local
backend runs the train command K at a time, appends its output to
``train.log``, records each attempt (pid, start, end, exit status) in
``sweep_run.json`` and writes ``DONE`` after a clean exit that reached the final
step. Slurm and TPU-VM backends hand the same runs to the existing schedulers
and never manage machines themselves. Which programs run, and in which folder,
is the caller's to say (gptjax/science/sweep_runner.py names them once).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

from gptjax import atomic
from gptjax.train.metrics import read_metrics

RECORD = "sweep_run.json"  # attempts of the local backend
DONE = "DONE"  # written after a successful run
FAILED = "FAILED"  # slurm: exit status of the last failed attempt
LOG = "train.log"


@dataclasses.dataclass(frozen=True)
class Job:
    """One run handed to a backend: its folder, the command and when it is finished."""

    name: str
    workdir: pathlib.Path
    command: list
    target_steps: int
    swept: dict = dataclasses.field(default_factory=dict)


def compile_cache_env(root: pathlib.Path) -> dict:
    """Share JAX's persistent compilation cache between a sweep's runs (unless the user set one):
    runs that differ only in seed, and resumed runs, then skip XLA compilation."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return {}
    return {"JAX_COMPILATION_CACHE_DIR": str(root / ".jax_cache")}


def train_command(train_script, base, workdir, overrides) -> list[str]:
    cmd = [sys.executable, str(train_script), str(base), "--workdir", str(workdir), "--no_progress"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


# ---------------------------------------------------------------- run folder state

def read_json(path: pathlib.Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def final_eval_seen(workdir, target_steps: int) -> bool:
    return any("eval_loss" in m and m.get("step") == target_steps for m in read_metrics(workdir))


def is_finished(workdir, target_steps: int) -> bool:
    """A run is finished when DONE exists or its metrics hold the final step's eval."""
    workdir = pathlib.Path(workdir)
    return (workdir / DONE).exists() or final_eval_seen(workdir, target_steps)


def attempt_alive(attempt: dict) -> bool:
    """Whether a recorded attempt's process still runs (only knowable on the host that started it)."""
    if attempt.get("end") is not None or attempt.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(attempt["pid"]), 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists
        return True
    return True


def running_elsewhere(workdir) -> int | None:
    """The pid of a run still going from an earlier sweep invocation (never start a second one)."""
    attempts = (read_json(pathlib.Path(workdir) / RECORD) or {}).get("attempts") or []
    return attempts[-1]["pid"] if attempts and attempt_alive(attempts[-1]) else None


def log_tail(workdir, n: int = 15, name: str = LOG) -> list[str]:
    path = pathlib.Path(workdir) / name
    if not path.exists():
        return []
    return path.read_text(errors="replace").splitlines()[-n:]


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


# ---------------------------------------------------------------- local processes

@dataclasses.dataclass
class Outcome:
    name: str
    ok: bool
    detail: str


class _Attempt:
    """A started subprocess with its log file and its record in sweep_run.json."""

    def __init__(self, job: Job, log_name: str, env: dict, launch_only: bool, cwd):
        self.job = job
        job.workdir.mkdir(parents=True, exist_ok=True)
        self.record_path = job.workdir / RECORD
        self.record = read_json(self.record_path) or {"name": job.name, "swept": job.swept, "attempts": []}
        self.record.update(command=job.command, launch_only=launch_only)  # launch_only: exit 0 = handed over
        n = len(self.record["attempts"]) + 1
        self.log = open(job.workdir / log_name, "ab")
        self.log.write(f"\n=== sweep attempt {n} on {socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                       f"=== {shlex.join(job.command)}\n".encode())
        self.log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.start = time.time()
        self.proc = subprocess.Popen(job.command, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd, env=env)
        self.record["attempts"].append({"start": self.start, "end": None, "returncode": None,
                                        "pid": self.proc.pid, "host": socket.gethostname()})
        atomic.write_json(self.record_path, self.record)

    def finish(self, mark_done: bool) -> Outcome:
        rc = self.proc.wait()
        self.log.close()
        end = time.time()
        self.record["attempts"][-1].update(end=end, returncode=rc)
        atomic.write_json(self.record_path, self.record)
        job = self.job
        if rc != 0:
            return Outcome(job.name, False, describe_exit(rc))
        if not mark_done:
            return Outcome(job.name, True, f"exit status 0 after {end - self.start:.0f}s")
        if not final_eval_seen(job.workdir, job.target_steps):
            return Outcome(job.name, False, f"exit status 0 but no eval at the final step {job.target_steps}")
        atomic.write_json(job.workdir / DONE, {"finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                        "wall_s": end - self.start})
        return Outcome(job.name, True, f"done in {end - self.start:.0f}s")


def run_pool(jobs: list[Job], parallel: int, *, log_name: str = LOG, mark_done: bool = True,
             stagger: bool = True, env: dict | None = None, cwd=None, poll_s: float = 0.2,
             say=print) -> list[Outcome]:
    """Run jobs as subprocesses in `cwd`, `parallel` at a time; one failing never stops the others.

    With `stagger`, the first job runs alone until its workdir has config.json
    (its data is prepared), so parallel runs never build the same dataset cache at once.
    `env` is added to the children's environment.
    """
    queue, running, outcomes = list(jobs), [], []
    first = None
    try:
        while queue or running:
            holding = (stagger and first is not None and first.proc.poll() is None
                       and not (first.job.workdir / "config.json").exists())
            while queue and len(running) < parallel and not holding:
                attempt = _Attempt(queue.pop(0), log_name, env or {}, launch_only=not mark_done, cwd=cwd)
                say(f"started  {attempt.job.name} (pid {attempt.proc.pid})")
                running.append(attempt)
                if first is None:
                    first = attempt
                    holding = stagger
            for attempt in [a for a in running if a.proc.poll() is not None]:
                running.remove(attempt)
                outcome = attempt.finish(mark_done)
                outcomes.append(outcome)
                say(f"{'finished' if outcome.ok else 'FAILED  '} {outcome.name}: {outcome.detail}")
            time.sleep(poll_s)
    except KeyboardInterrupt:
        say(f"interrupted: stopping {len(running)} running job(s); rerun the sweep to resume them")
        for attempt in running:
            attempt.proc.terminate()
        for attempt in running:
            try:
                attempt.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                attempt.proc.kill()
            attempt.finish(mark_done)
        raise
    return outcomes


# ---------------------------------------------------------------- slurm

def slurm_script(jobs: list[Job], parallel: int, root: pathlib.Path, sweep_name: str, options: dict,
                 cwd: pathlib.Path) -> str:
    """An sbatch job-array script: array index i runs jobs[i] in `cwd` and marks DONE or FAILED."""
    lines = ["#!/bin/bash",
             f"# gptjax sweep {sweep_name}: {len(jobs)} runs, one per array index (written by scripts/sweep.py)",
             f"#SBATCH --job-name={sweep_name}",
             f"#SBATCH --array=0-{len(jobs) - 1}%{parallel}",
             f"#SBATCH --output={root}/slurm-%A_%a.out"]
    lines += [f"#SBATCH --{k}={v}" for k, v in options.items()]
    lines += ["set -u", f"cd {shlex.quote(str(cwd))}", "export PYTHONUNBUFFERED=1", "",
              "run() {  # run WORKDIR COMMAND...: append output to WORKDIR/train.log, then mark DONE or FAILED",
              '  local dir="$1"; shift',
              '  mkdir -p "$dir" && rm -f "$dir/FAILED"',
              '  echo "=== slurm ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname) at $(date -Is)"'
              f' >> "$dir/{LOG}"',
              f'  "$@" >> "$dir/{LOG}" 2>&1',
              "  local rc=$?",
              '  if [ "$rc" -eq 0 ]; then date -Is > "$dir/DONE"; else echo "$rc" > "$dir/FAILED"; fi',
              '  return "$rc"',
              "}", "",
              'case "$SLURM_ARRAY_TASK_ID" in']
    for i, job in enumerate(jobs):
        lines.append(f"  {i}) run {shlex.quote(str(job.workdir))} {shlex.join(job.command)} ;;  # {job.name}")
    lines += ['  *) echo "no run for array index $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- TPU VMs

def tpu_vm_name(sweep_name: str, run_name: str) -> str:
    """A valid, stable TPU VM name: lowercase letters, digits, hyphens; <= 63 chars."""
    stem = re.sub(r"[^a-z0-9-]+", "-", sweep_name.lower()).strip("-")[:40] or "sweep"
    if not stem[0].isalpha():
        stem = "sweep-" + stem
    return f"{stem}-{hashlib.sha1(run_name.encode()).hexdigest()[:8]}"


def tpu_vm_command(launcher, name: str, zone: str, accelerator_type: str, experiment: str, workdir: str,
                   overrides: list[str], dry_run: bool) -> list[str]:
    cmd = [sys.executable, str(launcher), "--name", name, "--zone", zone,
           "--accelerator_type", accelerator_type, "--experiment", experiment, "--workdir", workdir]
    for item in overrides:
        cmd += ["--set", item]
    return cmd + (["--dry_run"] if dry_run else [])
