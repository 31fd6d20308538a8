"""Int8 / int4 weight-only quantization: the per-channel round trip, a quantized model's logits, the
quantized workdir that sample.py, evaluate.py and convert.py logits read, quantization-aware training,
and the inputs quantize.py refuses."""
import json
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import ModelSpec
from gptjax.model import quant
from gptjax.model.transformer import Transformer
from gptjax.model.weights import weight_paths
from helpers.scripts import call_main
from helpers.tiny_runs import experiment, tiny_world
from helpers.quick import quick_first

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))

SHAPES = {"h_0/mlp/wi/weight": (24, 8), "h_0/attn/qkv_kernel": (8, 3, 2, 4), "h_0/attn/out_kernel": (2, 4, 8),
          "wte/embedding": (11, 8), "lm_head/kernel": (8, 11), "layers/attn/qkv_kernel": (3, 8, 3, 2, 4)}


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("path", sorted(SHAPES))
def test_round_trip_error_is_at_most_half_a_step_of_each_channel(path, bits):
    from gptjax.model.weights import weight_axes

    rng = np.random.default_rng(0)
    w = rng.normal(size=SHAPES[path]).astype(np.float32) * rng.uniform(0.01, 3, size=SHAPES[path][-1:])
    stacked, inputs = weight_axes(path, w.ndim)
    q = quant.quantize(w, inputs, bits)
    absmax = np.max(np.abs(w), axis=inputs, keepdims=True)
    step = absmax / (2 ** (bits - 1) - 0.5)  # qwix's absmax bound: qmax + 0.5
    np.testing.assert_allclose(np.asarray(q.scale), step, rtol=1e-6)
    assert q.scale.shape == tuple(1 if i in inputs else n for i, n in enumerate(w.shape))  # one per channel
    err = np.max(np.abs(np.asarray(q.dequantize()) - w), axis=inputs, keepdims=True)
    assert np.all(err <= step / 2 * (1 + 1e-4)), (err / step).max()  # (float32 rounding of w / scale)
    assert np.all(err > 0)  # it does round
    qv = np.asarray(q.qvalue)
    assert qv.dtype == np.int8 and qv.min() >= -2 ** (bits - 1) and qv.max() <= 2 ** (bits - 1) - 1
    if bits == 4:
        np.testing.assert_array_equal(quant.unpack_int4(quant.pack_int4(qv), qv.shape), qv)


def tiny(**kw):
    spec = ModelSpec(n_layer=2, n_head=2, d_model=32, vocab_size=50, max_seq_len=16, **kw)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 50, (2, 16)), jnp.int32)
    return spec, x, nn.meta.unbox(Transformer(spec).init(jax.random.key(0), x)["params"])


@pytest.mark.parametrize("kw", quick_first([{}, {"flavour": "llama", "tie_embeddings": False, "n_kv_head": 1},
                                            {"scan_layers": True}], ids=["gpt2", "llama_gqa_untied", "scanned"]))
def test_quantized_logits_are_close_to_fp32_and_equal_the_qat_forward(kw):
    import dataclasses

    spec, x, params = tiny(**kw)
    logits = Transformer(spec).apply({"params": params}, x)
    kernels = weight_paths(params)
    assert "wte/embedding" in kernels and all(k.split("/")[-1] != "wpe" for k in kernels)
    for bits, tol in ((8, 0.01), (4, 0.2)):
        q = quant.quantize_params(params, bits)
        n_q = sum(isinstance(v, quant.QuantizedArray) for v in jax.tree.leaves(q, is_leaf=quant._is_q))
        assert n_q == len(kernels)
        got = jax.jit(lambda p: Transformer(spec).apply({"params": p}, x))(q)
        rel = float(jnp.max(jnp.abs(got - logits)) / jnp.max(jnp.abs(logits)))
        assert 0 < rel < tol, (bits, rel)
        # training with model.quant sees exactly the weights quantization will store
        qat = Transformer(dataclasses.replace(spec, quant=f"int{bits}")).apply({"params": params}, x)
        np.testing.assert_allclose(np.asarray(qat), np.asarray(got), atol=1e-5)


def test_qat_gradients_reach_every_parameter():
    import dataclasses

    spec, x, params = tiny()
    model = Transformer(dataclasses.replace(spec, quant="int8"))
    grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x) ** 2))(params)
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))


# ------------------------------------------------------------------ workdirs

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A trained tiny run, its int8 and int4 copies (through scripts/quantize.py), and a QAT run."""
    root, text = tiny_world(tmp_path_factory, "quant")
    from gptjax.train.loop import run

    base = run(experiment(text, steps=30, model={"bias": False}), root / "base", progress=False)
    qat = run(experiment(text, steps=30, model={"bias": False, "quant": "int8"}), root / "qat", progress=False)
    return {"root": root, "base": root / "base", "qat": root / "qat", "base_eval": base.eval_loss,
            "qat_eval": qat.eval_loss}


@pytest.fixture(scope="module")
def int8(runs):
    from gptjax.convert.quantize import quantize_workdir

    quantize_workdir(runs["base"], runs["root"] / "int8", sample_tokens=0)
    return runs["root"] / "int8"


def quantize_cli(capsys, *args):
    code, out = call_main("quantize", capsys, *args)
    return (code, out) if code else (0, json.loads(out.out))


@pytest.mark.slow
def test_quantized_workdir_is_small_close_and_loads_like_any_run(runs, capsys):
    from gptjax.convert.logits import workdir_logits
    from gptjax.model.decode import sample_text
    from gptjax.train.restore import load_run

    out = runs["root"] / "int8_cli"
    status, report = quantize_cli(capsys, "--workdir", runs["base"], "--out", out, "--sample_tokens", 16)
    assert status == 0
    assert abs(report["eval_loss_int8"] - report["eval_loss_fp32"]) < 0.01 * report["eval_loss_fp32"]
    assert report["eval_loss_int8"] != report["eval_loss_fp32"]
    assert report["weights_ratio"] < 0.4 and report["disk_bytes_int8"] < report["disk_bytes_fp32"]
    assert report["sample_tokens_per_s_fp32"] > 0 and report["sample_tokens_per_s_int8"] > 0
    exp, params, tok = load_run(out)
    leaves = jax.tree.leaves(params, is_leaf=quant._is_q)
    assert any(isinstance(x, quant.QuantizedArray) and x.qvalue.dtype == jnp.int8 for x in leaves)
    assert quant.tree_bytes(params) == report["weights_bytes_int8"]  # what stays in memory
    assert sample_text(params, exp.model, tok, "the ", 8, seed=0)[0].startswith("the ")
    fp32 = np.asarray(workdir_logits(runs["base"], text="the cat")["logits"])
    int8 = np.asarray(workdir_logits(out, text="the cat")["logits"])
    assert 0 < np.max(np.abs(int8 - fp32)) < 0.05 * np.max(np.abs(fp32))


@pytest.mark.slow
def test_int4_packs_two_values_a_byte_and_reads_back_exactly(runs, capsys):
    from gptjax.train.restore import load_run

    out = runs["root"] / "int4"
    status, report = quantize_cli(capsys, "--workdir", runs["base"], "--out", out, "--bits", 4, "--sample_tokens", 0)
    assert status == 0 and report["eval_loss_int4"] > 0 and report["sample_tokens_per_s_int4"] is None
    _, fp32, _ = load_run(runs["base"])
    _, back, _ = load_run(out)
    expected = quant.quantize_params(fp32, 4)
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    int8_disk = quant.tree_bytes(quant.to_saved(quant.quantize_params(fp32, 8)))
    assert quant.tree_bytes(quant.to_saved(back)) < 0.7 * int8_disk


@pytest.mark.slow
def test_a_qat_run_loses_nothing_when_quantized(runs, capsys):
    status, report = quantize_cli(capsys, "--workdir", runs["qat"], "--out", runs["root"] / "qat8",
                                  "--sample_tokens", 0)
    assert status == 0
    assert report["eval_loss_int8"] == pytest.approx(report["eval_loss_fp32"], abs=1e-5)
    assert report["eval_loss_fp32"] == pytest.approx(runs["qat_eval"], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["already_quantized", "bits", "not_a_run", "used_out"])
def test_quantize_refuses_bad_input_and_writes_nothing(runs, int8, capsys, tmp_path, case):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    source = {"already_quantized": int8, "not_a_run": tmp_path}.get(case, runs["base"])
    out = tmp_path / ("used" if case == "used_out" else "out")
    extra = ["--bits", 5] if case == "bits" else []
    status, captured = quantize_cli(capsys, "--workdir", source, "--out", out, *extra)
    words = {"already_quantized": "already quantized", "bits": "--bits=5", "not_a_run": "not a run folder",
             "used_out": "not empty"}[case]
    assert status == 2 and captured.err.startswith("error: ") and words in captured.err, captured.err
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["used"]


@pytest.mark.slow
def test_a_quantized_workdir_does_not_train_nor_teach(runs, int8):
    import dataclasses

    from gptjax.config import read_config
    from gptjax.errors import ConfigError
    from gptjax.train.loop import run

    exp = read_config(int8 / "config.json")
    before = sorted(p.name for p in int8.rglob("*"))
    with pytest.raises(ConfigError, match="quantized workdir"):
        run(exp, int8, progress=False)
    with pytest.raises(ConfigError, match="quantized workdir"):
        run(dataclasses.replace(exp, train=dataclasses.replace(exp.train, distill_from=str(int8))),
            runs["root"] / "student", progress=False)
    assert sorted(p.name for p in int8.rglob("*")) == before and not (runs["root"] / "student").exists()


@pytest.mark.parametrize("quantized", ["int8_tree", "qat"])
def test_chunked_cross_entropy_sees_the_same_quantized_weights(quantized):
    import dataclasses

    from gptjax.train.step import model_cross_entropy

    for kw in ({}, {"tie_embeddings": False}):
        spec, x, params = tiny(**kw)
        if quantized == "qat":
            spec = dataclasses.replace(spec, quant="int8")
        else:
            params = quant.quantize_params(params, 8)
        batch = {"inputs": x, "targets": jnp.roll(x, -1, axis=1), "loss_mask": jnp.ones(x.shape, jnp.float32)}
        whole, _ = model_cross_entropy(params, batch, Transformer(spec))
        chunked, _ = model_cross_entropy(params, batch, Transformer(dataclasses.replace(spec, loss_chunk=4)))
        assert float(chunked) == pytest.approx(float(whole), rel=1e-5)
        plain, _ = model_cross_entropy(quant.dequantize_params(quant.quantize_params(tiny(**kw)[2], 8)), batch,
                                       Transformer(dataclasses.replace(spec, quant="none")))
        assert float(whole) == pytest.approx(float(plain), rel=1e-5)


@pytest.mark.slow
def test_a_quantized_task_model_is_scored_by_evaluate(runs, tmp_path):
    import dataclasses

    from gptjax.config import TaskData
    from gptjax.convert.quantize import quantize_workdir
    from gptjax.tasks.text_eval import run as evaluate
    from gptjax.train.loop import run

    rng = np.random.default_rng(0)
    for name, n in (("train", 300), ("validation", 30), ("test", 20)):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            for _ in range(n):
                seq = list(rng.choice("red green blue".split(), rng.integers(1, 3)))
                f.write(json.dumps({"prompt": " ".join(seq) + " =", "target": seq[0]}) + "\n")
    exp = dataclasses.replace(experiment(tmp_path, steps=20), data=TaskData(task="jsonl", folder=str(tmp_path),
                                                                           tokenizer="byte"))
    run(exp, tmp_path / "task", progress=False)
    report = quantize_workdir(tmp_path / "task", tmp_path / "task_int8", sample_tokens=0)
    assert abs(report["eval_loss_int8"] - report["eval_loss_fp32"]) < 0.01 * report["eval_loss_fp32"]
    scores = {w: evaluate(tmp_path / w, "jsonl", tmp_path / "test.jsonl")[0] for w in ("task", "task_int8")}
    assert scores["task_int8"]["examples"] == 20 and 0 <= scores["task_int8"]["accuracy"] <= 1
    assert abs(scores["task_int8"]["accuracy"] - scores["task"]["accuracy"]) <= 0.1
