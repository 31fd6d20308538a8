"""Preemption, hard kills and bad numbers lose nothing (real subprocesses and signals)."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXP = str(ROOT / "experiments" / "shakespeare_char_cpu.py")
TINY = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "model.max_seq_len=32", "train.batch_size=8",
        "train.eval_every=1000", "train.eval_batches=1", "train.log_every=1", "train.sample_tokens=0",
        "schedule.warmup_steps=2"]


def cmd(workdir, *overrides):
    sets = [a for kv in TINY + list(overrides) for a in ("--set", kv)]
    return [sys.executable, str(ROOT / "scripts" / "train.py"), EXP, "--workdir", str(workdir), "--no_progress", *sets]


@pytest.fixture
def env(data_dir, tmp_path):
    e = dict(os.environ, GPTJAX_DATA_DIR=str(data_dir), GPTJAX_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run(cmd(tmp_path / "warm", "train.steps=1"), env=e, check=True, capture_output=True, timeout=300)
    return e


def train_losses(workdir):
    out = {}
    for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]  # a resumed run rewrites the steps after its checkpoint
    return out


def final_params(workdir):
    from gptjax.sample_text import load_run

    _, params, _ = load_run(workdir)
    import jax
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(params)])


def wait_for(pred, proc, timeout=240):
    t0 = time.time()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.returncode}\n{proc.stderr.read()[-3000:]}")
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.01)


def metric_lines(workdir):
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigterm_saves_exits_and_resumes_identically(env, tmp_path):
    steps = ["train.steps=40", "train.checkpoint_every=100"]
    subprocess.run(cmd(tmp_path / "ref", *steps), env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(cmd(tmp_path / "run", *steps), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for(lambda: metric_lines(tmp_path / "run") >= 12, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]
    saved = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and 12 <= saved[-1] < 40
    assert f"saved a checkpoint at step {saved[-1]}" in out + err
    again = subprocess.run(cmd(tmp_path / "run", *steps), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resumed from step {saved[-1]}" in again.stderr
    ref, got = train_losses(tmp_path / "ref"), train_losses(tmp_path / "run")
    assert sorted(got) == list(range(40))
    np.testing.assert_allclose([got[s] for s in range(40)], [ref[s] for s in range(40)], rtol=1e-6)


def test_sigkill_at_five_moments_then_resume_matches_uninterrupted(env, tmp_path):
    steps = ["train.steps=30", "train.checkpoint_every=3", "train.keep_checkpoints=2"]
    subprocess.run(cmd(tmp_path / "ref", *steps), env=env, check=True, capture_output=True, timeout=300)
    run = tmp_path / "run"
    ckdir = run / "checkpoints"

    def writing():  # an Orbax save in flight: its temporary folder exists
        return ckdir.exists() and any("tmp" in p.name for p in ckdir.iterdir())

    moments = [lambda: metric_lines(run) >= 2,  # before the first checkpoint
               writing,  # during an asynchronous checkpoint write
               lambda: metric_lines(run) >= 16,
               writing,
               lambda: metric_lines(run) >= 27]
    killed_mid_write = 0
    for moment in moments:
        proc = subprocess.Popen(cmd(run, *steps), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        try:
            wait_for(moment, proc)
            killed_mid_write += moment is writing and writing()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        except AssertionError:
            if proc.poll() != 0:  # finishing before the moment came is fine; failing is not
                raise
    assert killed_mid_write >= 1
    final = subprocess.run(cmd(run, *steps), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    np.testing.assert_array_equal(final_params(run), final_params(tmp_path / "ref"))


def test_exploding_learning_rate_stops_with_a_report(env, tmp_path):
    bad = ["train.steps=20", "schedule.kind=constant", "schedule.warmup_steps=0", "schedule.peak_lr=1e3",
           "optimizer.clip_norm=0", "train.checkpoint_every=1"]
    proc = subprocess.run(cmd(tmp_path / "w", *bad), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    msg = proc.stderr.strip().splitlines()[-1]
    assert "non-finite" in msg and "at step" in msg and "last good checkpoint: step" in msg
    assert "['h_0']" in msg or "the loss itself" in msg


def test_skip_policy_continues_and_counts(env, tmp_path):
    bad = ["train.steps=30", "schedule.kind=constant", "schedule.warmup_steps=0", "schedule.peak_lr=1e3",
           "optimizer.clip_norm=0", "train.nonfinite=skip", "train.max_skips=4", "train.checkpoint_every=100"]
    proc = subprocess.run(cmd(tmp_path / "w", *bad), env=env, capture_output=True, text=True, timeout=300)
    lines = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    skipped = [x["step"] for x in lines if x.get("skipped")]
    assert len(skipped) >= 4
    assert "skipped update" in proc.stderr
    assert proc.returncode == 1 and "4 non-finite steps in a row" in proc.stderr
    # the run went on past its first bad step
    assert max(x["step"] for x in lines if "loss" in x) > skipped[0]
