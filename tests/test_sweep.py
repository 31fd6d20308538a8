"""Sweeps: expansion and names, up-front validation, dry runs for every backend, a real
local sweep (parallel, a killed run resumed, a failing run), reports and scaling fits."""
import csv
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from gptjax.config import Experiment, apply_overrides
from gptjax.errors import ConfigError
from gptjax.model import flops
from gptjax.config.sweep import (Choice, LogUniform, Sweep, Uniform, expand, format_value, plan, run_name,
                                 short_names)

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASE = ROOT / "experiments" / "shakespeare_char_cpu.py"
SWEEP_PY = ROOT / "scripts" / "sweep.py"
TINY = {"model.n_layer": 1, "model.n_head": 2, "model.d_model": 16, "model.max_seq_len": 16,
        "train.batch_size": 4, "train.eval_batches": 2, "train.sample_tokens": 0, "schedule.warmup_steps": 5}
PNG = b"\x89PNG\r\n\x1a\n"


def big_sweep(**changes) -> Sweep:
    kwargs = dict(base=str(BASE), grid={"model.d_model": [16, 32], "model.n_layer": [1, 2, 3]},
                  zip={"train.steps": [10, 20], "schedule.warmup_steps": [1, 2]},
                  random={"schedule.peak_lr": LogUniform(1e-4, 3e-3), "model.dropout": Uniform(0.0, 0.2),
                          "model.flavour": Choice(("gpt2", "llama"))},
                  samples=3, seeds=[0, 1])
    return Sweep(**{**kwargs, **changes})


def write_sweep(path: pathlib.Path, body: str) -> pathlib.Path:
    path.write_text("from gptjax.config import Sweep, LogUniform, Uniform, Choice\n"
                    f"BASE = {str(BASE)!r}\nTINY = {TINY!r}\n{body}\n")
    return path


def sweep_cli(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, str(SWEEP_PY), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


# ---------------------------------------------------------------- expansion and names

def test_expansion_counts_order_and_deterministic_draws():
    sweep = big_sweep()
    runs = expand(sweep)
    assert len(runs) == 2 * 3 * 2 * 3 * 2  # grid x zip x samples x seeds
    assert len({r.name for r in runs}) == len(runs)
    assert runs == expand(big_sweep())  # same names and values on every invocation
    keys = ["model.d_model", "model.n_layer", "train.steps", "schedule.warmup_steps", "schedule.peak_lr",
            "model.dropout", "model.flavour", "train.seed"]
    assert all(list(r.swept) == keys for r in runs)
    assert [r.swept["train.seed"] for r in runs[:4]] == [0, 1, 0, 1]  # seeds vary fastest
    assert [(r.swept["train.steps"], r.swept["schedule.warmup_steps"]) for r in runs[::6]] == [(10, 1), (20, 2)] * 6
    first = runs[0]
    assert first.name == (f"d_model=16,n_layer=1,steps=10,warmup_steps=1,"
                          f"peak_lr={format_value(first.swept['schedule.peak_lr'])},"
                          f"dropout={format_value(first.swept['model.dropout'])},"
                          f"flavour={first.swept['model.flavour']},seed=0")
    lrs = sorted({r.swept["schedule.peak_lr"] for r in runs})
    assert len(lrs) == 3 and all(1e-4 <= v <= 3e-3 for v in lrs)
    assert all(float(f"{v:.2e}") == v for v in lrs)  # rounded: the name shows the exact value used
    assert all(0.0 <= r.swept["model.dropout"] <= 0.2 for r in runs)
    assert {r.swept["schedule.peak_lr"] for r in expand(big_sweep(seed=1))}.isdisjoint(lrs)


def test_names_do_not_depend_on_the_other_runs():
    full = {r.name: r.swept for r in expand(big_sweep())}
    # fewer grid values, reordered, one seed, more samples: shared runs keep name and values
    other = expand(big_sweep(grid={"model.d_model": [32], "model.n_layer": [3, 1]}, seeds=[1], samples=5))
    shared = [r for r in other if r.name in full]
    assert len(shared) == 1 * 2 * 2 * 3 * 1  # the first 3 of the 5 draws are the same draws
    assert all(full[r.name] == r.swept for r in shared)


def test_value_formatting_and_safe_names():
    assert format_value(3.2e-4) == "3.2e-4"
    assert format_value(0.001) == "0.001"
    assert format_value(128.0) == "128"
    assert format_value(True) == "true"
    assert format_value(2.5e6) == "2.5e6"
    assert short_names(["a.x", "b.x", "c.y"]) == {"a.x": "a.x", "b.x": "b.x", "c.y": "y"}
    assert run_name({"data.files": "some dir/*.txt"}, {"data.files": "files"}) == "files=some_dir__.txt"
    long = run_name({"data.files": "x" * 300}, {"data.files": "files"})
    assert len(long) <= 120 and long != run_name({"data.files": "x" * 299}, {"data.files": "files"})


@pytest.mark.parametrize("changes,fragment", [
    (dict(grid={"model.d_modle": [16, 32]}), "unknown key 'model.d_modle'"),
    (dict(grid={"model.n_layer": [1, 2.5]}), "expected an int"),
    (dict(zip={"train.steps": [10, 20], "schedule.warmup_steps": [1]}), "equal length"),
    (dict(grid={"model.d_model": 16}), "non-empty list"),
    (dict(samples=0), "samples"),
    (dict(random={}), "Sweep.random is empty"),
    (dict(random={"schedule.peak_lr": LogUniform(0.0, 1e-3)}), "0 < low < high"),
    (dict(grid={"train.seed": [1, 2]}), "Sweep.seeds"),
    (dict(grid={"model.n_head": [5]}, random={}, samples=0), "not divisible"),
])
def test_bad_sweeps_are_refused_before_running(changes, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        plan(big_sweep(**changes), BASE)


def test_cli_refuses_a_bad_key_and_writes_nothing(tmp_path):
    path = write_sweep(tmp_path / "bad.py", 'SWEEP = Sweep(base=BASE, grid={"model.d_model": [16], '
                                            '"train.stepz": [5]}, fixed=TINY)')
    result = sweep_cli(path, "--root", tmp_path / "root", "--parallel", "2")
    assert result.returncode == 2
    assert "train.stepz" in result.stderr and "train.steps" in result.stderr
    assert not (tmp_path / "root").exists()


# ---------------------------------------------------------------- dry runs

def small_sweep_file(tmp_path) -> pathlib.Path:
    return write_sweep(tmp_path / "small.py", 'SWEEP = Sweep(base=BASE, grid={"model.d_model": [16, 24]}, '
                                              'seeds=[0, 1, 2], fixed={**TINY, "train.steps": 10})')


def test_local_dry_run_prints_train_commands(tmp_path):
    root = tmp_path / "root"
    result = sweep_cli(small_sweep_file(tmp_path), "--root", root, "--dry_run")  # `run` implied
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if "scripts/train.py" in line]
    assert len(commands) == 6
    assert all(f" {ROOT / 'scripts' / 'train.py'} " in c for c in commands)  # this checkout's entry point
    assert f"--workdir {root}/d_model=24,seed=2 " in commands[-1]
    assert commands[-1].rstrip().endswith("--set model.d_model=24 --set train.seed=2")
    assert "model.d_model=16" not in commands[-1]  # a swept value replaces the fixed one
    assert not root.exists()


def test_a_run_still_going_from_an_earlier_invocation_is_not_started_twice(tmp_path):
    root = tmp_path / "root"
    (root / "d_model=16,seed=1").mkdir(parents=True)
    record = {"name": "d_model=16,seed=1", "swept": {"model.d_model": 16, "train.seed": 1},
              "attempts": [{"start": time.time(), "end": None, "pid": os.getpid(), "host": socket.gethostname()}]}
    (root / "d_model=16,seed=1" / "sweep_run.json").write_text(json.dumps(record))
    result = sweep_cli(small_sweep_file(tmp_path), "--root", root, "--dry_run")
    assert f"skip     d_model=16,seed=1 (still running as pid {os.getpid()}" in result.stdout
    assert len([x for x in result.stdout.splitlines() if "scripts/train.py" in x]) == 5
    report = sweep_cli("report", root)
    assert report.returncode == 0, report.stderr
    assert "| d_model=16,seed=1 | running |" in report.stdout


def test_slurm_dry_run_prints_a_job_array(tmp_path):
    root = tmp_path / "root"
    result = sweep_cli("run", small_sweep_file(tmp_path), "--root", root, "--backend", "slurm",
                       "--parallel", "3", "--dry_run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "#SBATCH --array=0-5%3" in out
    assert f"\ncd {ROOT}\n" in out  # runs start in the checkout, as local ones do
    for i, name in enumerate(["d_model=16,seed=0", "d_model=16,seed=1", "d_model=16,seed=2",
                              "d_model=24,seed=0", "d_model=24,seed=1", "d_model=24,seed=2"]):
        line = next(x for x in out.splitlines() if x.startswith(f"  {i}) run "))
        assert f"--workdir {root}/{name} " in line and "scripts/train.py" in line
    assert out.rstrip().endswith(f"sbatch {root}/sweep.sbatch")
    assert not root.exists()


def test_tpu_vm_dry_run_hands_runs_to_the_launcher(tmp_path):
    root = tmp_path / "root"
    path = write_sweep(tmp_path / "small.py", 'SWEEP = Sweep(base=BASE, grid={"model.d_model": [16, 24]}, fixed=TINY)')
    assert sweep_cli("run", path, "--root", root, "--backend", "tpu-vm", "--dry_run").returncode == 2  # no zone
    result = sweep_cli("run", path, "--root", root, "--backend", "tpu-vm", "--zone", "us-central2-b",
                       "--accelerator_type", "v4-8", "--workdir_root", "gs://bucket/sw", "--dry_run")
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [x for x in result.stdout.splitlines() if "launch_tpu_vm.py --name" in x]
    assert len(commands) == 2
    for cmd in commands:
        assert re.search(r"--name small-[0-9a-f]{8} --zone us-central2-b --accelerator_type v4-8 "
                         r"--experiment experiments/shakespeare_char_cpu.py --workdir gs://bucket/sw/d_model=", cmd)
        assert cmd.rstrip().endswith("--dry_run")
    assert len({re.search(r"--name (\S+)", c).group(1) for c in commands}) == 2
    assert not root.exists()


def test_pool_runs_k_at_a_time_and_records_each_attempt(tmp_path):
    from gptjax.science.sweep_backends import Job, run_pool
    from gptjax.science.sweep_report import run_status

    # each job notes its start and end time; one fails; they are launch-only (as for TPU VMs)
    script = ("import sys, time; t = time.time(); time.sleep(1.0); open(sys.argv[1], 'w').write(f'{t} {time.time()}'); "
              "print('hello from', sys.argv[2]); sys.exit(int(sys.argv[2]))")
    jobs = [Job(f"j{i}", tmp_path / f"j{i}", [sys.executable, "-c", script, str(tmp_path / f"times{i}"), str(rc)], 1)
            for i, rc in enumerate([0, 0, 3, 0])]
    said = []
    outcomes = run_pool(jobs, 2, log_name="launch.log", mark_done=False, stagger=False, poll_s=0.02,
                        say=said.append)
    assert {o.name: o.ok for o in outcomes} == {"j0": True, "j1": True, "j2": False, "j3": True}
    assert next(o.detail for o in outcomes if o.name == "j2") == "exit status 3"
    spans = [tuple(map(float, (tmp_path / f"times{i}").read_text().split())) for i in range(4)]
    overlap = [sum(a < t < b for a, b in spans) for t in (s for s, _ in spans)]
    assert max(overlap) == 1 and len(spans) == 4  # never more than 2 at once, and 2 did overlap
    assert "hello from 3" in (tmp_path / "j2" / "launch.log").read_text()
    assert not (tmp_path / "j0" / "DONE").exists()  # a launch is not a finished run
    assert run_status(tmp_path / "j0", 1, []) == "launched" and run_status(tmp_path / "j2", 1, []) == "failed"


# ---------------------------------------------------------------- a real local sweep

def _checkpointed(workdir: pathlib.Path) -> bool:
    ckpt = workdir / "checkpoints"
    return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def _snapshot(workdir: pathlib.Path) -> dict:
    return {f: ((workdir / f).read_bytes(), (workdir / f).stat().st_mtime_ns)
            for f in ("train.log", "metrics.jsonl", "DONE", "sweep_run.json", "config.json")}


def test_local_sweep_survives_a_kill_and_a_failure_then_reports(data_dir, tmp_path):
    env = dict(os.environ, GPTJAX_CACHE_DIR=str(tmp_path / "cache"), GPTJAX_DATA_DIR=str(data_dir))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    # four runs: two sharing a shape (the second finds the first's compiled program in the
    # sweep's JAX cache), one wider, and one that fails only at run time (vocab_size 5 < 65 symbols)
    path = write_sweep(tmp_path / "real.py", """SWEEP = Sweep(
    base=BASE,
    zip={"model.d_model": [16, 24, 16, 16], "train.seed": [0, 0, 1, 0], "model.vocab_size": [0, 0, 0, 5]},
    fixed={**TINY, "train.steps": 300, "train.eval_every": 100, "train.checkpoint_every": 20,
           "train.log_every": 20})""")
    root = tmp_path / "root"
    names = ["d_model=16,seed=0,vocab_size=0", "d_model=24,seed=0,vocab_size=0", "d_model=16,seed=1,vocab_size=0",
             "d_model=16,seed=0,vocab_size=5"]
    victim, failing = root / names[2], names[3]

    proc = subprocess.Popen([sys.executable, str(SWEEP_PY), "run", str(path), "--root", str(root), "--parallel", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    killed_pid, deadline = None, time.time() + 900
    while killed_pid is None and proc.poll() is None and time.time() < deadline:
        record = json.loads((victim / "sweep_run.json").read_text()) if (victim / "sweep_run.json").exists() else {}
        attempt = (record.get("attempts") or [{}])[-1]
        if attempt.get("end", 1) is None and _checkpointed(victim):
            os.kill(attempt["pid"], signal.SIGKILL)  # mid-run, after at least one checkpoint
            killed_pid = attempt["pid"]
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=900)
    assert killed_pid is not None, "the victim run ended before it could be killed:\n" + out
    assert proc.returncode == 1, out
    assert f"FAILED {names[2]}: killed by SIGKILL" in out
    assert f"FAILED {failing}: exit status 2" in out and "smaller than the tokenizer" in out  # its log tail
    for name in names[:2]:
        assert (root / name / "DONE").exists()
    assert not (victim / "DONE").exists() and not (root / failing / "DONE").exists()
    finished = {n: _snapshot(root / n) for n in names[:2]}

    rerun = sweep_cli("run", path, "--root", root, "--parallel", "2", env=env)
    assert rerun.returncode == 1, rerun.stdout  # the failing run fails again; the others are fine
    for name in names[:2]:
        assert f"skip     {name} (finished)" in rerun.stdout
        assert _snapshot(root / name) == finished[name]  # not redone, not rewritten
    assert f"finished {names[2]}" in rerun.stdout and f"FAILED {failing}" in rerun.stdout
    log = (victim / "train.log").read_text()
    resumed = re.search(r"resumed from step (\d+)", log.split("=== sweep attempt 2")[1])
    assert resumed and 0 < int(resumed.group(1)) < 300, log[-2000:]
    attempts = json.loads((victim / "sweep_run.json").read_text())["attempts"]
    assert [a["returncode"] for a in attempts] == [-signal.SIGKILL, 0]
    metrics = [json.loads(x) for x in (victim / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "eval_loss" in m][-1] == 300

    report = sweep_cli("report", root)
    assert report.returncode == 0, report.stderr
    md = (root / "report.md").read_text()
    assert md in report.stdout and "6N+attn" in md
    assert f"## failed: {failing}" in md and "smaller than the tokenizer" in md
    with open(root / "report.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert list(rows) == names
    assert [rows[n]["status"] for n in names] == ["done", "done", "done", "failed"]
    for name in names[:3]:
        row, workdir = rows[name], root / name
        assert int(row["steps"]) == 300 and int(row["tokens"]) == 300 * 4 * 16
        logged = int(re.search(r"model: ([\d,]+) parameters", (workdir / "train.log").read_text())
                     .group(1).replace(",", ""))
        assert int(row["params"]) == logged  # flops.param_counts agrees with the real parameter tree
        assert row["model.d_model"] == name[8:10] and row["train.seed"] == name.split("seed=")[1][0]
        evals = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
        final = [m["eval_loss"] for m in evals if m.get("step") == 300 and "eval_loss" in m][-1]
        assert float(row["loss"]) == pytest.approx(final)
        assert float(row["best_loss"]) <= float(row["loss"]) and float(row["wall_s"]) > 0
        assert float(row["flops"]) > 6 * int(row["params_non_embedding"]) * int(row["tokens"])
    assert rows[failing]["loss"] == ""
    for png in ("loss_vs_axes.png", "curves.png"):
        assert (root / png).read_bytes()[:8] == PNG
        import matplotlib.image

        assert matplotlib.image.imread(root / png).shape[0] > 100


# ---------------------------------------------------------------- scaling fits from a report

def fake_sweep(root: pathlib.Path, alpha=0.3, E=1.2, A=40.0):
    """Run folders whose final losses follow E + A / N^alpha exactly (N = non-embedding params)."""
    shapes = [(1, 16), (1, 32), (2, 32), (2, 48), (3, 64), (4, 96), (4, 128)]
    runs = []
    for n_layer, d in shapes:
        name = f"n_layer={n_layer},d_model={d}"
        runs.append({"name": name, "swept": {"model.n_layer": n_layer, "model.d_model": d}, "target_steps": 100})
        exp = apply_overrides(Experiment(), [f"model.n_layer={n_layer}", f"model.d_model={d}", "model.n_head=4",
                                             "model.vocab_size=65", "model.max_seq_len=64", "train.steps=100"])
        n = flops.param_counts(exp.model)["non_embedding"]
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text(exp.to_json())
        evals = [{"step": 50, "eval_loss": 4.0}, {"step": 100, "eval_loss": E + A / n ** alpha}]
        (root / name / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in evals))
    runs.append({"name": "n_layer=8,d_model=256", "swept": {"model.n_layer": 8, "model.d_model": 256},
                 "target_steps": 100})  # never started
    (root / "sweep.json").write_text(json.dumps({"name": "fake", "base": "x.py",
                                                 "swept_keys": ["model.n_layer", "model.d_model"], "runs": runs}))


def test_report_scaling_fit_recovers_the_exponent_and_feeds_scaling_py(tmp_path):
    root = tmp_path / "fake"
    fake_sweep(root)
    result = sweep_cli("report", root, "--scaling", "--bootstrap", "20")
    assert result.returncode == 0, result.stderr
    fit = json.loads(result.stdout[result.stdout.rindex("\n{") + 1:])
    assert fit["N"]["alpha"] == pytest.approx(0.3, abs=0.01) and fit["N"]["r2_log"] > 0.999
    assert fit["N"]["n_points"] == 7 and fit["C"]["column"] == "flops"
    assert fit == json.loads((root / "scaling.json").read_text())
    for png in ("scaling_N.png", "scaling_C.png", "loss_vs_axes.png", "curves.png"):
        assert (root / png).read_bytes()[:8] == PNG
    with open(root / "report.csv", newline="") as fh:
        statuses = [r["status"] for r in csv.DictReader(fh)]
    assert statuses == ["done"] * 7 + ["pending"]
    direct = subprocess.run([sys.executable, str(ROOT / "scripts" / "scaling.py"), "fit", "--csv",
                             str(root / "report.csv"), "--form", "power_n", "--params-col", "params_non_embedding",
                             "--bootstrap", "0"], capture_output=True, text=True)
    assert direct.returncode == 0, direct.stderr
    assert json.loads(direct.stdout)["params"]["alpha"]["value"] == pytest.approx(0.3, abs=0.01)


def test_report_errors_exit_2(tmp_path):
    assert sweep_cli("report", tmp_path / "nope").returncode == 2
    root = tmp_path / "fake"
    fake_sweep(root)
    bad = sweep_cli("report", root, "--flops_convention", "7N")
    assert bad.returncode == 2 and "6N+attn" in bad.stderr


def test_report_adds_the_scores_of_evaluated_runs_and_their_mean(tmp_path):
    from gptjax.science.sweep_report import write_report

    root = tmp_path / "fake"
    fake_sweep(root)
    scores = {"n_layer=1,d_model=16": (0.8, 0.2), "n_layer=1,d_model=32": (0.9, 0.125)}
    for name, (acc, wer) in scores.items():
        (root / name / "eval_transcribe.json").write_text(json.dumps(
            {"task": "transcribe", "accuracy": acc, "wer": wer, "examples": 500, "zero_media": False,
             "per_digit_accuracy": {"0": 1.0}}))
    (root / "n_layer=1,d_model=16" / "eval_transcribe_zero_media.json").write_text(json.dumps({"accuracy": 0.1}))
    (root / "n_layer=1,d_model=16" / "eval_broken.json").write_text("{not json")
    (root / "n_layer=1,d_model=16" / "eval_list.json").write_text("[0.5]")
    text, rows, _ = write_report(root)
    with open(root / "report.csv", newline="") as fh:
        table = {r["name"]: r for r in csv.DictReader(fh)}
    assert float(table["n_layer=1,d_model=32"]["transcribe_accuracy"]) == 0.9
    assert float(table["n_layer=1,d_model=16"]["transcribe_wer"]) == 0.2
    assert float(table["n_layer=1,d_model=16"]["transcribe_zero_media_accuracy"]) == 0.1
    assert table["n_layer=2,d_model=32"]["transcribe_accuracy"] == ""  # not evaluated
    assert "examples" not in next(iter(table.values())) and "transcribe_examples" not in next(iter(table.values()))
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    assert header.index("transcribe_accuracy") < header.index("transcribe_wer") < header.index(
        "transcribe_zero_media_accuracy")
    assert "transcribe_accuracy 0.850 (2 runs, 0.800-0.900)" in text
    assert "transcribe_zero_media_accuracy 0.100 (1 runs" in text
