"""Training end to end on tiny Shakespeare: learning, metrics, resume equivalence, sampling."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from gptjax.config import apply_overrides, load_experiment
from gptjax.train.loop import run

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["model.n_layer=2", "model.n_head=2", "model.d_model=32", "model.max_seq_len=32", "train.batch_size=8",
        "train.eval_every=10", "train.eval_batches=2", "train.log_every=1", "train.checkpoint_every=10",
        "train.sample_tokens=0", "schedule.warmup_steps=5", "schedule.peak_lr=3e-3"]


@pytest.fixture
def tiny_exp(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    exp = load_experiment(ROOT / "experiments" / "shakespeare_char_cpu.py")
    return apply_overrides(exp, TINY + ["train.steps=30"])


def test_loss_falls_and_metrics_are_written(tiny_exp, tmp_path):
    result = run(tiny_exp, tmp_path / "w", progress=False)
    lines = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "loss" in x]
    evals = [x for x in lines if "eval_loss" in x]
    assert [x["step"] for x in train] == list(range(30))
    for key in ("loss", "lr", "grad_norm", "tokens_per_sec"):
        assert all(key in x for x in train)
    assert not any("mfu" in x for x in train)  # the CPU's peak is unknown: MFU omitted, not invented
    assert [x["step"] for x in evals] == [10, 20, 30]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"] < np.log(65)
    assert result.losses[29] < result.losses[0] - 0.4
    assert list((tmp_path / "w").glob("events.out.tfevents.*"))
    saved = json.loads((tmp_path / "w" / "config.json").read_text())
    assert saved["model"]["vocab_size"] == 65


def test_resumed_run_gives_the_same_losses(tiny_exp, tmp_path):
    straight = run(tiny_exp, tmp_path / "a", progress=False)
    first = run(tiny_exp, tmp_path / "b", progress=False, stop_after=20)
    assert max(first.losses) == 19
    resumed = run(tiny_exp, tmp_path / "b", progress=False)
    assert min(resumed.losses) == 20
    for step in range(20, 30):
        assert resumed.losses[step] == pytest.approx(straight.losses[step], rel=1e-6, abs=1e-6)
    a = np.concatenate([np.ravel(x) for x in __import__("jax").tree.leaves(straight.state.params)])
    b = np.concatenate([np.ravel(x) for x in __import__("jax").tree.leaves(resumed.state.params)])
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_gradient_accumulation_matches_the_big_batch(tiny_exp, tmp_path):
    exp = apply_overrides(tiny_exp, ["train.steps=3", "train.eval_every=100"])
    big = run(exp, tmp_path / "big", progress=False)
    accum = run(apply_overrides(exp, ["optimizer.grad_accum=4"]), tmp_path / "acc", progress=False)
    for s in range(3):
        assert accum.losses[s] == pytest.approx(big.losses[s], rel=1e-5)


def test_workdir_of_another_experiment_is_refused(tiny_exp, tmp_path):
    from gptjax.errors import ConfigError

    run(apply_overrides(tiny_exp, ["train.steps=10"]), tmp_path / "w", progress=False)
    other = apply_overrides(tiny_exp, ["model.d_model=64", "train.steps=10"])
    with pytest.raises(ConfigError, match="different experiment"):
        run(other, tmp_path / "w", progress=False)


def test_cli_trains_then_samples(data_dir, tmp_path):
    env = {"GPTJAX_CACHE_DIR": str(tmp_path / "cache"), "GPTJAX_DATA_DIR": str(data_dir),
           "PATH": "/usr/bin:/bin"}
    sets = [a for kv in TINY + ["train.steps=10"] for a in ("--set", kv)]
    train = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"),
                            str(ROOT / "experiments" / "shakespeare_char_cpu.py"), "--workdir", str(tmp_path / "w"),
                            "--no_progress", *sets], capture_output=True, text=True, timeout=300, env=env)
    assert train.returncode == 0, train.stderr[-2000:]
    assert "final eval loss" in train.stdout
    sample = subprocess.run([sys.executable, str(ROOT / "scripts" / "sample.py"), "--workdir", str(tmp_path / "w"),
                             "--prompt", "ROMEO:", "--max_new_tokens", "40", "--num_samples", "2", "--top_k", "10"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert sample.returncode == 0, sample.stderr[-2000:]
    bodies = sample.stdout.split("---------- sample ")[1:]
    assert len(bodies) == 2 and all(b.split("\n", 1)[1].startswith("ROMEO:") for b in bodies)
    assert all(len(b.split("\n", 1)[1].rstrip("\n")) >= 40 for b in bodies)
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "sample.py"), "--workdir", str(tmp_path / "w"),
                          "--prompt", "ROMEO: \u00e9"], capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode == 2 and "cannot be encoded" in bad.stderr


def test_failed_checkpoint_write_stops_and_keeps_the_previous_one(tiny_exp, tmp_path, monkeypatch):
    import errno

    import orbax.checkpoint as ocp

    from gptjax.errors import CheckpointWriteError
    from gptjax.train.checkpoint import Checkpointer

    real_save = ocp.CheckpointManager.save

    def failing_save(self, step, *args, **kwargs):
        if step >= 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", failing_save)
    with pytest.raises(CheckpointWriteError, match=r"step 20 could not be written.*No space.*step 10\) is intact"):
        run(tiny_exp, tmp_path / "w", progress=False)
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    ckpt = Checkpointer(tmp_path / "w")
    assert ckpt.latest_step() == 10
    assert ckpt.restore_meta()["fingerprint"]["model"]["d_model"] == 32
    ckpt.close()
    resumed = run(tiny_exp, tmp_path / "w", progress=False)  # and the run goes on from there
    assert min(resumed.losses) == 10 and max(resumed.losses) == 29


def test_after_a_failed_save_only_asyncio_copies_of_the_error_are_dropped(caplog):
    import logging

    from gptjax.train.checkpoint import quiet_failed_writes

    logger = logging.getLogger("asyncio")
    before = list(logger.filters)
    logger.filters[:] = [f for f in before if type(f).__name__ != "_UnretrievedWrites"]  # an earlier test's
    try:
        quiet_failed_writes()
        quiet_failed_writes()  # once is enough
        assert [type(f).__name__ for f in logger.filters].count("_UnretrievedWrites") == 1
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            logger.error("Task exception was never retrieved\nfuture: <Task finished>")
            logger.error("_GatheringFuture exception was never retrieved\nfuture: <_GatheringFuture finished>")
            logger.error("Unclosed client session")
        assert [r.getMessage() for r in caplog.records] == ["Unclosed client session"]
    finally:
        logger.filters[:] = before
