"""The work of scripts/sweep.py: run a sweep's unfinished runs on a backend, or report on a sweep folder.

`run` validates every run before starting any (a bad key is a ConfigError), skips
finished runs and runs still going from an earlier invocation, and resumes
interrupted ones from their checkpoints. `report` writes the table, CSV and plots
(gptjax/science/sweep_report.py) and, with --scaling, the power-law fits.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import shlex
import shutil
import subprocess

from gptjax import atomic
from gptjax.config.sweep import load_sweep, plan
from gptjax.errors import ConfigError
from gptjax.science.sweep_backends import (Job, compile_cache_env, is_finished, log_tail, run_pool,
                                           running_elsewhere, slurm_script, tpu_vm_command, tpu_vm_name,
                                           train_command)
from gptjax.science.sweep_report import MANIFEST, scaling_fits, write_report

BACKENDS = ("local", "slurm", "tpu-vm")


@dataclasses.dataclass(frozen=True)
class EntryPoints:
    """The programs a sweep hands its runs to, and the checkout they start in (a TPU VM gets a copy)."""

    checkout: pathlib.Path
    train: pathlib.Path
    tpu_launcher: pathlib.Path

    @classmethod
    def of(cls, checkout) -> EntryPoints:
        """The entry points of a gptjax checkout: its scripts/ folder."""
        checkout = pathlib.Path(checkout).resolve()
        return cls(checkout, checkout / "scripts" / "train.py", checkout / "scripts" / "launch_tpu_vm.py")


def run(args, checkout) -> int:
    """scripts/sweep.py's `run` or `report` command, for a sweep started from `checkout`."""
    return cmd_run(args, EntryPoints.of(checkout)) if args.command == "run" else cmd_report(args)


def cmd_run(args, entry: EntryPoints) -> int:
    if args.parallel < 1:
        raise ConfigError(f"--parallel={args.parallel}: must be at least 1")
    sweep, base = load_sweep(args.sweep)
    planned = plan(sweep, base, args.overrides)  # every run validated before anything starts
    root = pathlib.Path(args.root).absolute()
    blocker = next((p for p in (root, *root.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"--root {args.root}: {blocker} is a file; pass a folder for the sweep's runs")
    jobs = [Job(p.name, root / p.name, train_command(entry.train, base, root / p.name, p.overrides),
                p.experiment.train.steps, p.swept) for p in planned]
    finished = [j for j in jobs if is_finished(j.workdir, j.target_steps)]
    busy = {j.name: pid for j in jobs if j not in finished and (pid := running_elsewhere(j.workdir))}
    todo = [j for j in jobs if j not in finished and j.name not in busy]
    print(f"sweep {sweep.name}: {len(jobs)} runs, {len(finished)} finished (skipped), {len(todo)} to run "
          f"[{args.backend}, {args.parallel} at a time] in {root}")
    for j in finished:
        print(f"skip     {j.name} (finished)")
    for name, pid in busy.items():
        print(f"skip     {name} (still running as pid {pid}, started by an earlier invocation)")
    if args.backend == "tpu-vm":
        return run_tpu_vm(args, entry, sweep, base, planned, todo, root)
    if args.backend == "slurm":
        return run_slurm(args, entry, sweep, base, planned, todo, root)
    if args.dry_run:
        for j in todo:
            print(f"{j.name}:\n  {shlex.join(j.command)}")
        return 0
    write_manifest(root, sweep, base, planned, args.backend)
    try:
        outcomes = run_pool(todo, args.parallel, env=compile_cache_env(root), cwd=entry.checkout)
    except KeyboardInterrupt:
        return 130
    failed = [o for o in outcomes if not o.ok]
    print(f"\nsweep {sweep.name}: {len(outcomes) - len(failed)} runs done now, {len(finished)} skipped, "
          f"{len(failed)} failed")
    for o in failed:
        print(f"\nFAILED {o.name}: {o.detail}; last lines of {root / o.name / 'train.log'}:")
        print("\n".join("    | " + line for line in log_tail(root / o.name)))
    return 1 if failed else 0


def write_manifest(root, sweep, base, planned, backend) -> None:
    atomic.write_json(root / MANIFEST, {
        "name": sweep.name, "base": str(base), "backend": backend, "swept_keys": sweep.swept_keys,
        "fixed": {k: v for k, v in sweep.fixed.items()},
        "runs": [{"name": p.name, "swept": p.swept, "overrides": p.overrides,
                  "target_steps": p.experiment.train.steps} for p in planned]})


def run_slurm(args, entry, sweep, base, planned, todo, root) -> int:
    script_path = root / "sweep.sbatch"
    submit = ["sbatch", str(script_path)]
    if not todo:
        print("nothing to submit: every run is finished")
        return 0
    script = slurm_script(todo, args.parallel, root, sweep.name, sweep.slurm, cwd=entry.checkout)
    if args.dry_run:
        print(f"--- {script_path}\n{script}--- end of script\n{shlex.join(submit)}")
        return 0
    if shutil.which("sbatch") is None:
        raise ConfigError("sbatch not found on PATH: run this on a Slurm login node, or use --dry_run "
                          "to see the script")
    write_manifest(root, sweep, base, planned, "slurm")
    atomic.write_text(script_path, script)
    print(shlex.join(submit))
    return subprocess.run(submit).returncode


def run_tpu_vm(args, entry, sweep, base, planned, todo, root) -> int:
    zone = args.zone or sweep.tpu.get("zone")
    accel = args.accelerator_type or sweep.tpu.get("accelerator_type")
    if not zone or not accel:
        raise ConfigError("the tpu-vm backend needs --zone and --accelerator_type (or SWEEP.tpu = "
                          "{'zone': ..., 'accelerator_type': ...})")
    try:  # the VM gets a copy of the checkout: name the experiment by its path inside it
        experiment = str(base.relative_to(entry.checkout))
    except ValueError:
        experiment = str(base)
    remote = (args.workdir_root or str(root)).rstrip("/")
    by_name = {p.name: p for p in planned}
    jobs = [Job(j.name, j.workdir, tpu_vm_command(entry.tpu_launcher, tpu_vm_name(sweep.name, j.name), zone, accel,
                                                  experiment, f"{remote}/{j.name}", by_name[j.name].overrides,
                                                  args.dry_run),
                j.target_steps, j.swept) for j in todo]
    launcher = entry.tpu_launcher
    if args.dry_run:
        for j in jobs:
            print(f"{j.name}:\n  {shlex.join(j.command)}")
        if not launcher.exists():
            print(f"({launcher.name} not found: commands printed only)")
            return 0
        return max([subprocess.run(j.command, cwd=entry.checkout).returncode for j in jobs] + [0])
    if not launcher.exists():
        raise ConfigError(f"{launcher} not found: the tpu-vm backend hands runs to it")
    write_manifest(root, sweep, base, planned, "tpu-vm")
    try:
        outcomes = run_pool(jobs, args.parallel, log_name="launch.log", mark_done=False, stagger=False,
                            cwd=entry.checkout)
    except KeyboardInterrupt:
        return 130
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"\nFAILED {o.name}: {o.detail}; last lines of {root / o.name / 'launch.log'}:")
        print("\n".join("    | " + line for line in log_tail(root / o.name, name="launch.log")))
    return 1 if failed else 0


def cmd_report(args) -> int:
    root = pathlib.Path(args.root)
    text, rows, written = write_report(root, args.flops_convention)
    print(text)
    print("wrote " + ", ".join(str(p) for p in written))
    if args.scaling:
        result = scaling_fits(root, rows, args.params_col, bootstrap=args.bootstrap)
        atomic.write_json(root / "scaling.json", result, indent=2)
        print(json.dumps(result, indent=2))
    return 0
