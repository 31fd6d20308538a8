"""Preemption of a two-process run (jax.distributed on localhost, gloo), with real signals.

SIGTERM to one process of the pair stops both at the same step (the flag is
agreed on by an all-gather at each step boundary): both save, both exit 75.
Rerunning the same commands resumes; a second preemption, SIGTERM to both
processes, does the same; the third rerun finishes. The per-step losses equal
those of an uninterrupted two-process run, exactly.

The preempted runs are set to last for hours, so a signal sent once the metrics
show the step it waits for always lands mid-run; a constant schedule makes the
losses independent of train.steps, so the last rerun and the uninterrupted
reference stop a few steps past the second save. Trains on the generated corpus.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers.jobs import Job, wait_exits  # noqa: E402

EXP = str(ROOT / "experiments" / "shakespeare_char_cpu.py")
ENDLESS = 1_000_000
SETS = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "model.max_seq_len=32", "train.batch_size=8",
        "train.eval_every=1000000", "train.eval_batches=1", "train.log_every=1", "train.sample_tokens=0",
        "schedule.kind=constant", "schedule.warmup_steps=2", "train.checkpoint_every=1000000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_pair(workdir, env, tag, steps=ENDLESS) -> list[Job]:
    """The two processes of one run: the same command but --process_id (a fresh coordinator port each launch)."""
    coordinator = f"localhost:{free_port()}"
    sets = [a for kv in SETS + env["sets"] + [f"train.steps={steps}"] for a in ("--set", kv)]
    return [Job([sys.executable, str(ROOT / "scripts" / "train.py"), EXP, "--workdir", str(workdir), "--no_progress",
                 "--coordinator", coordinator, "--num_processes", "2", "--process_id", str(i), *sets],
                env["env"], log=pathlib.Path(f"{workdir}.{tag}.p{i}.log")) for i in range(2)]


def train_losses(workdir) -> dict:
    out = {}
    path = pathlib.Path(workdir) / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]  # a resumed run rewrites the steps after its checkpoint
    return out


def checkpoints(workdir) -> list[int]:
    return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def preempt(jobs, workdir, after_step, targets, timeout_s=300) -> int:
    """Once step `after_step` is logged, SIGTERM the `targets` processes; return the step both saved at."""
    t0 = time.monotonic()
    while max(train_losses(workdir), default=-1) < after_step:
        assert all(j.proc.poll() is None for j in jobs), f"a process ended early:\n{jobs[0].tail()}\n{jobs[1].tail()}"
        assert time.monotonic() - t0 < timeout_s, f"step {after_step} never came:\n{jobs[0].tail()}"
        time.sleep(0.05)
    for i in targets:
        jobs[i].proc.send_signal(signal.SIGTERM)
    codes = wait_exits(jobs, timeout_s)
    assert codes == [75, 75], f"exit statuses {codes}:\n{jobs[0].tail()}\n{jobs[1].tail()}"
    saved = checkpoints(workdir)[-1]
    assert saved > after_step
    assert f"preempted: saved a checkpoint at step {saved}" in jobs[0].log.read_text()
    return saved


@pytest.fixture(scope="module")
def env(corpus_overrides, text_corpus, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    # a persistent compilation cache: launches after the first skip XLA compilation (same executables)
    e = dict(os.environ, GPTJAX_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_COMPILATION_CACHE_DIR=str(cache / "xla"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    e.pop("GPTJAX_DATA_DIR", None)
    # build the dataset once: two processes preparing it into one empty cache at the same moment collide
    subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "--dataset", "generated",
                    "--files", str(text_corpus)], env=e, check=True, capture_output=True, timeout=300)
    return {"env": e, "sets": corpus_overrides}


@pytest.mark.slow
def test_sigterm_to_one_then_both_processes_resumes_with_identical_losses(env, tmp_path):
    run = tmp_path / "run"
    first = preempt(start_pair(run, env, "a"), run, after_step=5, targets=[1])  # process 0 only hears of it
    again = start_pair(run, env, "b")
    second = preempt(again, run, after_step=first + 5, targets=[0, 1])
    assert f"resumed from step {first}" in again[0].log.read_text()
    end = second + 5
    last = start_pair(run, env, "c", steps=end)
    assert wait_exits(last) == [0, 0], last[0].tail()
    assert f"resumed from step {second}" in last[0].log.read_text()

    ref_jobs = start_pair(tmp_path / "ref", env, "ref", steps=end)  # uninterrupted
    assert wait_exits(ref_jobs) == [0, 0], ref_jobs[0].tail()
    ref, got = train_losses(tmp_path / "ref"), train_losses(run)
    assert sorted(got) == sorted(ref) == list(range(end))
    np.testing.assert_array_equal([got[s] for s in range(end)], [ref[s] for s in range(end)])
