"""Preemption, hard kills, a full or read-only disk and bad numbers lose nothing.

Real subprocesses, real signals, and a real tmpfs that fills up or turns
read-only under the checkpoints (see tests/helpers/tmpfs.py), training on the
generated corpus. Nothing races: a signal goes to a run far from its end once
the metrics show the steps it needs, and a kill during a checkpoint write
stops the run the moment the kernel reports Orbax's temporary folder.
"""
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
sys.path.insert(0, str(ROOT / "tests"))
from helpers import inotify  # noqa: E402
from helpers.tmpfs import Tmpfs, rerun_in_mount_namespace  # noqa: E402

EXP = str(ROOT / "experiments" / "shakespeare_char_cpu.py")
TINY = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "model.max_seq_len=32", "train.batch_size=8",
        "train.eval_every=1000", "train.eval_batches=1", "train.log_every=1", "train.sample_tokens=0",
        "schedule.warmup_steps=2"]


@pytest.fixture(scope="module")
def cmd(corpus_overrides):
    def make(workdir, *overrides):
        sets = [a for kv in TINY + corpus_overrides + list(overrides) for a in ("--set", kv)]
        return [sys.executable, str(ROOT / "scripts" / "train.py"), EXP, "--workdir", str(workdir), "--no_progress",
                *sets]
    return make


@pytest.fixture(scope="module")
def env(text_corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("env")
    # a persistent compilation cache: every launch after the first skips XLA compilation (same executables)
    e = dict(os.environ, GPTJAX_CACHE_DIR=str(tmp / "cache"),
             JAX_COMPILATION_CACHE_DIR=str(tmp / "xla"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    e.pop("GPTJAX_DATA_DIR", None)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "--dataset", "generated",
                    "--files", str(text_corpus)], env=e, check=True, capture_output=True, timeout=300)
    return e


REF_STEPS = ["train.steps=40", "train.checkpoint_every=5", "train.keep_checkpoints=10"]


@pytest.fixture(scope="module")
def reference(env, cmd, tmp_path_factory):
    """An uninterrupted 40-step run, with a checkpoint every 5 steps (saving does not change the numbers)."""
    workdir = tmp_path_factory.mktemp("reference")
    subprocess.run(cmd(workdir, *REF_STEPS), env=env, check=True, capture_output=True, timeout=300)
    return workdir


def train_losses(workdir):
    out = {}
    for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]  # a resumed run rewrites the steps after its checkpoint
    return out


def final_params(workdir):
    from gptjax.train.restore import load_run

    _, params, _ = load_run(workdir)
    import jax
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(params)])


def saved_state(workdir, step):
    """Every leaf of the train state saved at `step`, as numpy arrays (restored without a target,
    in this one-device process, from runs on the CPU experiment's two devices)."""
    import jax

    from gptjax.train.checkpoint import load_state

    return [np.asarray(x) for x in jax.tree.leaves(load_state(pathlib.Path(workdir) / "checkpoints", step))]


def saved_steps(workdir):
    return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def wait_for(pred, proc, timeout=300):
    """Wait until `pred()` (a condition that stays true once true, e.g. a metrics line written)."""
    t0 = time.time()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.returncode}\n{proc.stderr.read()[-3000:]}")
        if time.time() - t0 > timeout:
            raise AssertionError(f"still waiting after {timeout} s")
        time.sleep(0.05)


def metric_lines(workdir):
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


# a run that would take hours: a signal sent once its first steps are logged always lands mid-run. A
# constant schedule makes the losses independent of train.steps, so shorter runs of the same experiment
# are the references.
ENDLESS = ["train.steps=1000000", "train.checkpoint_every=1000000", "schedule.kind=constant"]


@pytest.mark.slow
def test_sigterm_saves_exits_and_resumes_identically(env, cmd, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(cmd(run, *ENDLESS), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: metric_lines(run) >= 12, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err[-2000:]
    saved = saved_steps(run)
    assert len(saved) == 1 and saved[0] >= 12  # saved where it stood (no periodic checkpoint came before)
    assert f"saved a checkpoint at step {saved[0]}" in out + err
    end = saved[0] + 10
    again, straight = [subprocess.Popen(cmd(workdir, *ENDLESS, f"train.steps={end}"), env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True) for workdir in (run, tmp_path / "ref")]
    for proc in (again, straight):  # the resumed run and an uninterrupted one, side by side
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        if proc is again:
            assert f"resumed from step {saved[0]}" in err
    ref, got = train_losses(tmp_path / "ref"), train_losses(run)
    assert sorted(got) == sorted(ref) == list(range(end))
    np.testing.assert_allclose([got[s] for s in range(end)], [ref[s] for s in range(end)], rtol=1e-6)


def kill_during_a_write(proc, created, checkpoints) -> bool:
    """SIGSTOP the run the moment Orbax makes a temporary step folder; if the folder is still there, the write
    is in flight: SIGKILL. (A write that finished in between: SIGCONT, and wait for the next.) False when the
    run ended first."""
    while proc.poll() is None:
        name = created.next(timeout=0.5)
        if name is None or "tmp" not in name:
            continue
        os.kill(proc.pid, signal.SIGSTOP)
        if (checkpoints / name).exists():
            proc.kill()
            proc.wait(timeout=60)
            return True
        os.kill(proc.pid, signal.SIGCONT)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not inotify.available(), reason="catching a checkpoint mid-write needs Linux inotify")
def test_sigkill_at_five_moments_then_resume_matches_uninterrupted(env, cmd, tmp_path):
    steps = ["train.steps=30", "train.checkpoint_every=3", "train.keep_checkpoints=2"]
    subprocess.run(cmd(tmp_path / "ref", *steps), env=env, check=True, capture_output=True, timeout=300)
    run = tmp_path / "run"
    ckdir = run / "checkpoints"
    ckdir.mkdir(parents=True)  # (watched from the start)
    moments = [lambda: metric_lines(run) >= 2, "mid-write", lambda: metric_lines(run) >= 16, "mid-write",
               lambda: metric_lines(run) >= 27]
    killed_mid_write = 0
    for moment in moments:
        with inotify.CreatedNames(ckdir) as created:
            proc = subprocess.Popen(cmd(run, *steps), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            try:
                if moment == "mid-write":
                    killed_mid_write += kill_during_a_write(proc, created, ckdir)
                else:
                    wait_for(moment, proc)
                    proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
            except AssertionError:
                if proc.poll() != 0:  # finishing before the moment came is fine; failing is not
                    raise
    assert killed_mid_write == 2  # each mid-write run had saves ahead of it (checkpoints every 3 steps)
    final = subprocess.run(cmd(run, *steps), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    np.testing.assert_array_equal(final_params(run), final_params(tmp_path / "ref"))


@pytest.mark.slow
def test_disk_full_then_read_only_stop_with_a_report_and_keep_the_previous_checkpoint(env, cmd, reference, tmp_path,
                                                                                     request):
    if rerun_in_mount_namespace(request, tmp_path, env):
        return
    run = tmp_path / "run"
    one_checkpoint = sum(-(-f.stat().st_size // 4096) * 4096  # what its files take on a tmpfs: whole pages
                         for f in (reference / "checkpoints" / "5").rglob("*") if f.is_file())
    with Tmpfs(run / "checkpoints", 32 * one_checkpoint) as disk:  # room for all 8 once the ballast goes
        disk.fill(leave=int(1.5 * one_checkpoint))  # room for the step-5 checkpoint, not for step 10 as well
        full = subprocess.run(cmd(run, *REF_STEPS), env=env, capture_output=True, text=True, timeout=300)
        report = full.stderr.strip().splitlines()[-1]
        assert full.returncode == 1, full.stderr[-3000:]
        assert report.startswith("error: checkpoint at step 10 could not be written")
        assert "No space left on device" in report and report.endswith("the previous checkpoint (step 5) is intact")
        assert max(train_losses(run)) < 30  # training stopped soon after, not at the end
        assert saved_steps(run) == [5]
        for got, want in zip(saved_state(run, 5), saved_state(reference, 5), strict=True):
            np.testing.assert_array_equal(got, want)

        disk.empty()
        disk.read_only()
        frozen = subprocess.run(cmd(run, *REF_STEPS), env=env, capture_output=True, text=True, timeout=300)
        report = frozen.stderr.strip().splitlines()[-1]
        assert frozen.returncode == 1, frozen.stderr[-3000:]
        assert "resumed from step 5" in frozen.stderr
        assert report.startswith("error: checkpoint at step 10 could not be written")
        assert "Read-only file system" in report and report.endswith("the previous checkpoint (step 5) is intact")

        disk.read_only(False)
        again = subprocess.run(cmd(run, *REF_STEPS), env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "resumed from step 5" in again.stderr
        ref, got = train_losses(reference), train_losses(run)
        assert sorted(got) == list(range(40))
        np.testing.assert_array_equal([got[s] for s in range(40)], [ref[s] for s in range(40)])


@pytest.mark.slow
def test_exploding_learning_rate_stops_with_a_report(env, cmd, tmp_path):
    bad = ["train.steps=20", "schedule.kind=constant", "schedule.warmup_steps=0", "schedule.peak_lr=1e3",
           "optimizer.clip_norm=0", "train.checkpoint_every=1"]
    proc = subprocess.run(cmd(tmp_path / "w", *bad), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    msg = proc.stderr.strip().splitlines()[-1]
    assert "non-finite" in msg and "at step" in msg and "last good checkpoint: step" in msg
    assert "['h_0']" in msg or "the loss itself" in msg


@pytest.mark.slow
def test_skip_policy_continues_and_counts(env, cmd, tmp_path):
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
