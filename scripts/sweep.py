"""Run an ablation sweep, or report on one.

    python scripts/sweep.py run SWEEP.py --root DIR [--parallel K] [--backend local|slurm|tpu-vm]
                                [--set key=value ...] [--dry_run]
    python scripts/sweep.py SWEEP.py --root DIR ...          (`run` implied)
    python scripts/sweep.py report DIR [--scaling] [--flops_convention 6N+attn]

`run` validates every run before starting any (a bad key exits 2), skips
finished runs and resumes interrupted ones from their checkpoints. Each run
trains in DIR/<name>/ (name from its swept values, e.g.
d_model=64,peak_lr=3.2e-4,seed=0) and logs to DIR/<name>/train.log. Exit
status 1 when any run failed. Local runs share JAX's persistent compilation
cache in DIR/.jax_cache (unless JAX_COMPILATION_CACHE_DIR is set), so runs that
differ only in seed, and resumed runs, skip compilation. `report` writes DIR/report.md, DIR/report.csv
and PNG plots; with --scaling also power-law fits in N and C (printed as JSON).
"""
import argparse
import json
import pathlib
import shlex
import shutil
import subprocess
import sys

import _bootstrap  # noqa: F401

from gptjax.cli import main_guard
from gptjax.config.sweep import load_sweep, plan
from gptjax.errors import ConfigError
from gptjax.science.sweep_backends import (TPU_LAUNCHER, Job, compile_cache_env, is_finished, log_tail, run_pool,
                                           running_elsewhere, slurm_script, tpu_vm_command, tpu_vm_name,
                                           train_command, write_json)
from gptjax.science.sweep_report import MANIFEST

BACKENDS = ("local", "slurm", "tpu-vm")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or submit) the sweep's unfinished runs")
    r.add_argument("sweep", help="a sweep file defining SWEEP = Sweep(...), e.g. experiments/sweeps/lr_width.py")
    r.add_argument("--root", required=True, help="sweep folder: one workdir per run, manifest, report")
    r.add_argument("--parallel", type=int, default=1, help="runs at a time (slurm: the %%K array limit)")
    r.add_argument("--backend", choices=BACKENDS, default="local")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra fixed override for every run (not part of run names)")
    r.add_argument("--dry_run", action="store_true", help="print the commands (or sbatch script); run nothing")
    r.add_argument("--zone", default=None, help="tpu-vm: GCP zone (default: SWEEP.tpu['zone'])")
    r.add_argument("--accelerator_type", default=None, help="tpu-vm: e.g. v4-8 (default: SWEEP.tpu[...])")
    r.add_argument("--workdir_root", default=None,
                   help="tpu-vm: where the VMs write run folders (e.g. gs://bucket/sweeps/x); default --root")
    rep = sub.add_parser("report", help="table, CSV and plots of a sweep folder")
    rep.add_argument("root", help="the sweep folder given as --root to `run`")
    rep.add_argument("--flops_convention", default="6N+attn", help="6N, 6N+attn or chinchilla (gptjax/flops.py)")
    rep.add_argument("--scaling", action="store_true",
                     help="fit L = E + A/x^alpha in N and C; write scaling_N.png, scaling_C.png, scaling.json")
    rep.add_argument("--params_col", default="params_non_embedding",
                     help="N for --scaling: params_non_embedding (Kaplan) or params (total)")
    rep.add_argument("--bootstrap", type=int, default=200, help="--scaling: bootstrap resamples for the CIs")
    if argv and argv[0] not in ("run", "report", "-h", "--help"):
        argv = ["run", *argv]  # `sweep.py SWEEP.py --root DIR` means run
    return p.parse_args(argv)


def cmd_run(args) -> int:
    if args.parallel < 1:
        raise ConfigError(f"--parallel={args.parallel}: must be at least 1")
    sweep, base = load_sweep(args.sweep)
    planned = plan(sweep, base, args.overrides)  # every run validated before anything starts
    root = pathlib.Path(args.root).absolute()
    jobs = [Job(p.name, root / p.name, train_command(base, root / p.name, p.overrides),
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
        return run_tpu_vm(args, sweep, base, planned, todo, root)
    if args.backend == "slurm":
        return run_slurm(args, sweep, base, planned, todo, root)
    if args.dry_run:
        for j in todo:
            print(f"{j.name}:\n  {shlex.join(j.command)}")
        return 0
    write_manifest(root, sweep, base, planned, args.backend)
    try:
        outcomes = run_pool(todo, args.parallel, env=compile_cache_env(root))
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
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / MANIFEST, {
        "name": sweep.name, "base": str(base), "backend": backend, "swept_keys": sweep.swept_keys,
        "fixed": {k: v for k, v in sweep.fixed.items()},
        "runs": [{"name": p.name, "swept": p.swept, "overrides": p.overrides,
                  "target_steps": p.experiment.train.steps} for p in planned]})


def run_slurm(args, sweep, base, planned, todo, root) -> int:
    script_path = root / "sweep.sbatch"
    submit = ["sbatch", str(script_path)]
    if not todo:
        print("nothing to submit: every run is finished")
        return 0
    script = slurm_script(todo, args.parallel, root, sweep.name, sweep.slurm)
    if args.dry_run:
        print(f"--- {script_path}\n{script}--- end of script\n{shlex.join(submit)}")
        return 0
    if shutil.which("sbatch") is None:
        raise ConfigError("sbatch not found on PATH: run this on a Slurm login node, or use --dry_run "
                          "to see the script")
    write_manifest(root, sweep, base, planned, "slurm")
    script_path.write_text(script)
    print(shlex.join(submit))
    return subprocess.run(submit).returncode


def run_tpu_vm(args, sweep, base, planned, todo, root) -> int:
    zone = args.zone or sweep.tpu.get("zone")
    accel = args.accelerator_type or sweep.tpu.get("accelerator_type")
    if not zone or not accel:
        raise ConfigError("the tpu-vm backend needs --zone and --accelerator_type (or SWEEP.tpu = "
                          "{'zone': ..., 'accelerator_type': ...})")
    try:  # the VM gets a copy of the repo: name the experiment by its path inside it
        experiment = str(base.relative_to(_bootstrap.ROOT))
    except ValueError:
        experiment = str(base)
    remote = (args.workdir_root or str(root)).rstrip("/")
    by_name = {p.name: p for p in planned}
    jobs = [Job(j.name, j.workdir, tpu_vm_command(tpu_vm_name(sweep.name, j.name), zone, accel, experiment,
                                                  f"{remote}/{j.name}", by_name[j.name].overrides, args.dry_run),
                j.target_steps, j.swept) for j in todo]
    if args.dry_run:
        for j in jobs:
            print(f"{j.name}:\n  {shlex.join(j.command)}")
        if not TPU_LAUNCHER.exists():
            print(f"({TPU_LAUNCHER.name} not found: commands printed only)")
            return 0
        return max([subprocess.run(j.command, cwd=_bootstrap.ROOT).returncode for j in jobs] + [0])
    if not TPU_LAUNCHER.exists():
        raise ConfigError(f"{TPU_LAUNCHER} not found: the tpu-vm backend hands runs to it")
    write_manifest(root, sweep, base, planned, "tpu-vm")
    try:
        outcomes = run_pool(jobs, args.parallel, log_name="launch.log", mark_done=False, stagger=False)
    except KeyboardInterrupt:
        return 130
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"\nFAILED {o.name}: {o.detail}; last lines of {root / o.name / 'launch.log'}:")
        print("\n".join("    | " + line for line in
                        (root / o.name / "launch.log").read_text(errors="replace").splitlines()[-15:]))
    return 1 if failed else 0


def cmd_report(args) -> int:
    from gptjax.science.sweep_report import scaling_fits, write_report

    root = pathlib.Path(args.root)
    text, rows, written = write_report(root, args.flops_convention)
    print(text)
    print("wrote " + ", ".join(str(p) for p in written))
    if args.scaling:
        result = scaling_fits(root, rows, args.params_col, bootstrap=args.bootstrap)
        (root / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    return 0


@main_guard
def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return cmd_run(args) if args.command == "run" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
