"""Training end to end on a generated corpus: learning, metrics, resume equivalence, sampling;
the step's gradient accumulation, dropout and weight decay; starting from another run."""
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gptjax.config import apply_overrides, load_experiment
from gptjax.train.loop import run
from helpers.generated import write_corpus
from helpers.quick import quick_first

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "shakespeare_char_cpu.py"
TINY = ["model.n_layer=2", "model.n_head=2", "model.d_model=32", "model.max_seq_len=32", "train.batch_size=8",
        "train.eval_every=10", "train.eval_batches=2", "train.log_every=1", "train.checkpoint_every=10",
        "train.sample_tokens=0", "schedule.warmup_steps=5", "schedule.peak_lr=3e-3"]


@pytest.fixture
def tiny_exp(corpus_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    exp = load_experiment(EXPERIMENT)
    return apply_overrides(exp, TINY + corpus_overrides + ["train.steps=30"])


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
    assert saved["model"]["vocab_size"] == 65  # the generated corpus uses tiny Shakespeare's 65 characters


@pytest.mark.slow
def test_real_tinyshakespeare_loss_falls(data_dir, tmp_path, monkeypatch):
    """The same 30 steps on the real corpus (from GPTJAX_DATA_DIR): its 65 characters, a falling loss."""
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    result = run(apply_overrides(load_experiment(EXPERIMENT), TINY + ["train.steps=30"]), tmp_path / "w",
                 progress=False)
    assert result.spec.vocab_size == 65 and result.data.dataset == "tinyshakespeare"
    assert result.losses[29] < result.losses[0] - 0.4 and result.eval_loss < np.log(65) - 0.5


@pytest.mark.slow
def test_resumed_run_gives_the_same_losses(tiny_exp, tmp_path):
    straight = run(tiny_exp, tmp_path / "a", progress=False)
    first = run(tiny_exp, tmp_path / "b", progress=False, stop_after=20)
    assert max(first.losses) == 19
    resumed = run(tiny_exp, tmp_path / "b", progress=False)
    assert min(resumed.losses) == 20
    for step in range(20, 30):
        assert resumed.losses[step] == pytest.approx(straight.losses[step], rel=1e-6, abs=1e-6)
    a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(straight.state.params)])
    b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(resumed.state.params)])
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- the compiled step

def compiled_step(exp, vocab=65):
    """The run's compiled steps for `exp` on one device."""
    from gptjax.config import Mesh
    from gptjax.parallel.mesh import make_mesh
    from gptjax.train.optim import make_optimizer
    from gptjax.train.step import compile_steps

    spec = dataclasses.replace(exp.model, vocab_size=vocab)
    exp = dataclasses.replace(exp, model=spec, mesh=Mesh(1, 1, 1))
    tx, schedule = make_optimizer(exp.optimizer, exp.schedule, exp.train.steps)
    example = batch_of(np.random.default_rng(0), exp.train.batch_size, spec.max_seq_len, vocab)
    return compile_steps(exp, spec, tx, schedule, make_mesh(exp.mesh, jax.devices()[:1]), example)


def batch_of(rng, b, length, vocab, counted=None):
    """Random tokens; row r counts its first counted[r] targets (all when None)."""
    x = rng.integers(0, vocab, (b, length + 1)).astype(np.int32)
    mask = np.ones((b, length), np.float32)
    if counted is not None:
        mask = (np.arange(length)[None] < np.asarray(counted)[:, None]).astype(np.float32)
    return {"inputs": x[:, :-1], "targets": x[:, 1:], "segment_ids": np.ones((b, length), np.int32),
            "positions": np.tile(np.arange(length, dtype=np.int32), (b, 1)), "loss_mask": mask}


def test_gradient_accumulation_matches_the_big_batch(tiny_exp):
    """Four micro-batches counting 3, 20, 47 and 64 targets (of 64) update the parameters exactly as the
    whole batch does: each micro-batch's gradient weighted by its token count, the sum divided by the
    total. Plain SGD at a constant rate with no clipping passes any error of scale or weighting straight
    into the parameters, over three steps. (The jitted train step itself; compile_steps adds shardings.)"""
    import functools

    import flax.linen as nn

    from gptjax.model.transformer import Transformer
    from gptjax.train.step import TrainState, train_step

    spec = dataclasses.replace(tiny_exp.model, n_layer=1, vocab_size=65)
    model, sgd = Transformer(spec), optax.sgd(0.5)
    params = jax.jit(lambda key: nn.meta.unbox(model.init(key, jnp.zeros((1, 32), jnp.int32))["params"]))(
        jax.random.key(0))
    steps = [jax.jit(functools.partial(train_step, model=model, tx=sgd, schedule=optax.constant_schedule(0.5),
                                       seed=0, grad_accum=k)) for k in (1, 4)]
    states = [TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=sgd.init(params))] * 2
    rng = np.random.default_rng(1)
    for _ in range(3):
        # micro-batch i is rows 2i and 2i+1: unequal counts per micro-batch, and per row
        batch = batch_of(rng, 8, 32, 65, counted=[1, 2, 4, 16, 15, 32, 32, 32])
        (big, big_m), (accum, accum_m) = (step(state, batch) for step, state in zip(steps, states))
        states = [big, accum]
        assert float(accum_m["loss"]) == pytest.approx(float(big_m["loss"]), rel=1e-5)
        assert float(accum_m["grad_norm"]) == pytest.approx(float(big_m["grad_norm"]), rel=1e-4)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(states[0].params), jax.tree.leaves(params)))
    assert moved > 1e-2  # the three steps changed the parameters noticeably
    for a, b in zip(jax.tree.leaves(states[0].params), jax.tree.leaves(states[1].params)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=2e-6)


@pytest.mark.slow
def test_decoder_dropout_acts_in_training_and_not_in_evaluation(tiny_exp):
    """With model.dropout > 0 the train step's loss depends on the step's dropout key and differs from the
    evaluation loss, which equals the deterministic forward pass scored here."""
    from gptjax.model.transformer import Transformer

    exp = apply_overrides(tiny_exp, ["model.n_layer=1", "model.dropout=0.3"])
    compiled = compiled_step(exp)
    batch = batch_of(np.random.default_rng(2), 8, 32, 65)
    state = compiled.init(jax.random.key(0))
    copy = lambda s: jax.tree.map(jnp.copy, s)  # noqa: E731 -- the step donates its input
    t1, t2 = (float(compiled.train_step(copy(state), batch)[1]["loss"]) for _ in range(2))
    later = float(compiled.train_step(copy(state.replace(step=state.step + 1)), batch)[1]["loss"])
    total, count = compiled.eval_step(state.params, batch)
    assert float(compiled.eval_step(state.params, batch)[0]) == float(total)
    spec = dataclasses.replace(exp.model, vocab_size=65)
    logits = np.asarray(Transformer(spec).apply({"params": state.params}, batch["inputs"]), np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    evaluated = -np.take_along_axis(logp, batch["targets"][..., None], -1).mean()
    assert float(total) / float(count) == pytest.approx(evaluated, rel=1e-5)  # evaluation: no dropout
    assert t1 == t2  # the dropout key is a function of the step
    assert abs(later - t1) > 1e-3 and abs(t1 - evaluated) > 1e-3


@pytest.mark.slow
def test_label_smoothing_smooths_the_training_loss_and_not_the_evaluation(tiny_exp):
    """train.label_smoothing=e: the train step's loss is the cross-entropy against (1 - e) * one-hot + e / V,
    computed here in numpy from the model's logits; the evaluation loss stays the plain cross-entropy."""
    from gptjax.model.transformer import Transformer

    exp = apply_overrides(tiny_exp, ["model.n_layer=1", "model.dropout=0", "train.label_smoothing=0.3"])
    compiled = compiled_step(exp)
    batch = batch_of(np.random.default_rng(3), 8, 32, 65)
    state = compiled.init(jax.random.key(0))
    total, count = compiled.eval_step(state.params, batch)
    trained = float(compiled.train_step(jax.tree.map(jnp.copy, state), batch)[1]["loss"])
    logits = np.asarray(Transformer(dataclasses.replace(exp.model, vocab_size=65)).apply(
        {"params": state.params}, batch["inputs"]), np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    q = 0.3 / 65 + 0.7 * np.eye(65)[batch["targets"]]
    smoothed, plain = -(q * logp).sum(-1).mean(), -np.take_along_axis(logp, batch["targets"][..., None], -1).mean()
    assert abs(smoothed - plain) > 1e-3  # the check below can tell them apart
    assert trained == pytest.approx(smoothed, rel=1e-5)
    assert float(total) / float(count) == pytest.approx(plain, rel=1e-5)


# names of the parameters AdamW may shrink; every bias and norm parameter must stay out
DECAYED = {"gpt2": {"attn/qkv_kernel", "attn/out_kernel", "mlp/wi/weight", "mlp/wo/weight", "wpe", "wte/embedding"},
           "llama": {"attn/qkv_kernel", "attn/out_kernel", "mlp/wi_kernel", "mlp/wo/kernel", "wte/embedding",
                     "lm_head/kernel"}}
SPARED = {"gpt2": {"attn/qkv_bias", "attn/out_bias", "ln_attn/scale", "ln_attn/bias", "ln_mlp/scale", "ln_mlp/bias",
                   "mlp/wi/bias", "mlp/wo/bias", "ln_f/scale", "ln_f/bias"},
          "llama": {"ln_attn/scale", "ln_mlp/scale", "ln_f/scale"}}


@pytest.mark.parametrize("flavour, scan", quick_first([("gpt2", False), ("llama", True), ("gpt2", True), ("llama", False)],
                                                      ids=["gpt2-unrolled", "llama-scanned", "gpt2-scanned", "llama-unrolled"]))
def test_weight_decay_spares_biases_and_norms(flavour, scan):
    """One AdamW step with zero gradients moves only what decays (p -> p - lr * wd * p); biases and norm
    scales stay bit-identical, also when scanned layers stack them into rank-2 arrays."""
    from gptjax.config import ModelSpec, Optimizer, Schedule
    from gptjax.model.transformer import Transformer
    from gptjax.train.optim import make_optimizer, param_path

    spec = ModelSpec(flavour=flavour, n_layer=2, n_head=2, d_model=16, vocab_size=20, max_seq_len=8,
                     tie_embeddings=flavour == "gpt2", scan_layers=scan)
    import flax.linen as nn

    shapes = jax.eval_shape(lambda: nn.meta.unbox(Transformer(spec).init(jax.random.key(0),
                                                                          jnp.zeros((1, 8), jnp.int32))["params"]))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(1 + rng.normal(size=s.shape), jnp.float32), shapes)
    tx, _ = make_optimizer(Optimizer(weight_decay=0.5, clip_norm=0), Schedule("constant", peak_lr=0.1,
                                                                             warmup_steps=0), 10)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    new = optax.apply_updates(params, updates)
    shrunk, kept = set(), set()
    for (path, p), q in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(new)):
        name = param_path(path).split("/", 1)[1] if param_path(path).startswith(("h_", "layers/")) else param_path(path)
        if np.array_equal(p, q):
            kept.add(name)
        else:
            np.testing.assert_allclose(q, p * (1 - 0.1 * 0.5), rtol=1e-6, err_msg=name)
            shrunk.add(name)
    assert shrunk == DECAYED[flavour] and kept == SPARED[flavour]


@pytest.mark.slow
def test_workdir_of_another_experiment_is_refused(tiny_exp, tmp_path):
    from gptjax.errors import ConfigError

    run(apply_overrides(tiny_exp, ["train.steps=10"]), tmp_path / "w", progress=False)
    other = apply_overrides(tiny_exp, ["model.d_model=64", "train.steps=10"])
    with pytest.raises(ConfigError, match="different experiment"):
        run(other, tmp_path / "w", progress=False)


# ---------------------------------------------------------------- starting from another run

STAGE = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "media.image.width=16", "media.image.depth=1",
         "media.image.heads=2", "train.batch_size=8", "train.steps=2", "train.eval_every=100", "train.eval_batches=1",
         "train.checkpoint_every=0", "train.log_every=1"]


@pytest.mark.slow
def test_init_from_partial_copies_matching_arrays_and_refuses_without_the_flag(tmp_path, monkeypatch):
    """Stage 1 of two-stage captioning starts from the VQA run with a new (MLP) projector: the decoder
    and the encoder arrive as trained, the projector starts fresh; without init_from_partial the
    partial match is refused."""
    from gptjax.errors import ConfigError
    from gptjax.train.checkpoint import Checkpointer, load_params
    from gptjax.train.loop import initial_state, pretrained
    from gptjax.train.optim import param_path
    from gptjax.train.setup import assemble
    from gptjax.data.build import build_data

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    vqa = apply_overrides(load_experiment(ROOT / "experiments" / "digits_vqa.py"), STAGE)
    run(vqa, tmp_path / "vqa", progress=False)
    stage1 = apply_overrides(load_experiment(ROOT / "experiments" / "digits_caption_stage1.py"),
                             STAGE + [f"train.init_from={tmp_path / 'vqa'}", "train.init_from_partial=false"])
    data = build_data(stage1)
    assembled = assemble(stage1, next(iter(data.eval_batches(8, 1))), data.vocab_size)

    def start(exp, workdir):
        stage = dataclasses.replace(assembled, exp=exp)  # (the flag changes nothing that is compiled)
        init_params = pretrained(stage, exp.train)
        ckpt = Checkpointer(workdir)
        try:
            return initial_state(stage, ckpt, init_params)
        finally:
            ckpt.close()

    with pytest.raises(ConfigError, match=r"train.init_from=.*match by name and shape.*init_from_partial=true"):
        start(assembled.exp, tmp_path / "refused")
    state, step = start(apply_overrides(assembled.exp, ["train.init_from_partial=true"]), tmp_path / "stage1")
    assert step == 0
    source = {param_path(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(load_params(tmp_path / "vqa"))}
    fresh = jax.device_get(assembled.compiled.init(jax.random.key(stage1.train.seed)).params)
    fresh = {param_path(p): v for p, v in jax.tree_util.tree_leaves_with_path(fresh)}
    got = {param_path(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(state.params)}
    assert got.keys() == fresh.keys()
    for name, value in got.items():
        if name.startswith(("llm/", "image_encoder/")):  # the same architecture in both runs
            np.testing.assert_array_equal(value, source[name], err_msg=name)
            assert not np.array_equal(value, fresh[name]), name  # (trained, so not the fresh init)
        else:  # linear -> mlp projector: nothing of it exists in the VQA run
            assert name.startswith("image_projector/") and name not in source, name
            np.testing.assert_array_equal(value, fresh[name], err_msg=name)
    assert any(n.startswith("image_projector/fc1") for n in got)


# ---------------------------------------------------------------- the command line

@pytest.mark.slow
def test_cli_trains_then_samples(corpus_overrides, tmp_path):
    env = {"GPTJAX_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    sets = [a for kv in TINY + corpus_overrides + ["train.steps=10"] for a in ("--set", kv)]
    train = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), str(EXPERIMENT),
                            "--workdir", str(tmp_path / "w"), "--no_progress", *sets],
                           capture_output=True, text=True, timeout=300, env=env)
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


@pytest.mark.slow
def test_run_sh_prepares_trains_and_samples_in_a_fresh_copy(tmp_path):
    """scripts/run.sh, the main job, in a copy of the repository: its .venv is this test's environment
    (pip finds every requirement installed and, offline, installs nothing), tiny Shakespeare comes from
    GPTJAX_DATA_DIR (here a generated stand-in), and the training is cut to a few steps."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("scripts/run.sh installs into .venv: run the tests from a virtual environment "
                    "(scripts/test.sh makes one)")
    clone = tmp_path / "clone"
    for name in ("gptjax", "scripts", "experiments"):
        shutil.copytree(ROOT / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    for req in ROOT.glob("requirements*.txt"):
        shutil.copy(req, clone)
    (clone / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    write_corpus(tmp_path / "data" / "tinyshakespeare" / "input.txt")
    env = dict(os.environ, GPTJAX_DATA_DIR=str(tmp_path / "data"), GPTJAX_CACHE_DIR=str(tmp_path / "cache"),
               WORKDIR=str(tmp_path / "run"), PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    sets = ["train.steps=20", "train.eval_every=10", "train.eval_batches=2", "train.sample_tokens=60"]
    proc = subprocess.run(["bash", str(clone / "scripts" / "run.sh"), "--no_progress",
                           *[a for kv in sets for a in ("--set", kv)]],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "gptjax_text/tinyshakespeare" in proc.stdout  # prepare_data.py built the corpus
    assert "done: 20 steps, final eval loss" in proc.stdout
    samples = proc.stdout.split("---------- sample ")[1:]
    assert len(samples) == 2 and all(len(s.split("\n", 1)[1]) >= 60 for s in samples)
    assert (tmp_path / "run" / "checkpoints" / "20").is_dir()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) >= 20
    assert not (clone / "runs").exists()  # WORKDIR was honoured


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


@pytest.mark.parametrize("earlier", [None, 5])
def test_a_failed_save_names_what_survives_even_when_it_was_the_first(earlier, tmp_path):
    from gptjax.train.checkpoint import Checkpointer, Saver

    ckpt = Checkpointer(tmp_path / "run")
    if earlier is not None:
        ckpt.save(earlier, {"w": np.zeros(3, np.float32)}, meta={})
        ckpt.wait()
    report = str(Saver(ckpt, {})._error(10, OSError("No space left on device")))
    assert report.startswith("checkpoint at step 10 could not be written (OSError: No space left on device); ")
    assert report.endswith("no earlier checkpoint was saved, so a restart begins at step 0" if earlier is None
                           else "the previous checkpoint (step 5) is intact")
