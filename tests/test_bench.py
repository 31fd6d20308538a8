"""The benchmark times the real training step, its figures agree with each other and with an
independent count, and its PyTorch reference computes the very function the JAX model does."""
import json
import pathlib
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from gptjax.config import ModelSpec, apply_overrides, load_experiment
from gptjax.model.transformer import Transformer
from gptjax.science.bench import bench_step
from gptjax.science.bench_torch import _model

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "model.max_seq_len=16", "train.batch_size=4"]


@pytest.mark.slow
def test_bench_step_figures_agree_with_each_other_and_an_independent_count():
    exp = apply_overrides(load_experiment(ROOT / "experiments" / "shakespeare_char_cpu.py"), TINY)
    t0 = time.perf_counter()
    r = bench_step(exp, steps=3, warmup=1, repeats=3)
    elapsed = time.perf_counter() - t0
    assert (r["batch"], r["seq_len"]) == (4, 16)
    assert r["step_ms_min"] <= r["step_ms_median"] <= r["step_ms_max"]
    assert elapsed >= 3 * 3 * r["step_ms_min"] / 1e3  # nine timed steps really ran
    # tokens per second: one step's tokens over the median step time
    # (the JSON rounds the step time to the microsecond, which is ~1e-3 of a tiny step)
    ms = r["step_ms_median"]
    assert 4 * 16 / ((ms + 5e-4) / 1e3) - 0.05 <= r["tokens_per_sec"] <= 4 * 16 / ((ms - 5e-4) / 1e3) + 0.05
    # FLOPs per token, PaLM's 6N + 12 L H Q T: N from the model's own parameter tree (all but the
    # position table; the tied embedding counts once, as the output projection)
    spec = ModelSpec(flavour="gpt2", n_layer=1, n_head=2, d_model=32, max_seq_len=16, vocab_size=65, bias=False)
    shapes = jax.eval_shape(lambda: Transformer(spec).init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32)))
    total = sum(x.size for x in jax.tree.leaves(nn.meta.unbox(shapes["params"])))
    assert r["params"] == total
    assert r["flops_per_token"] == 6 * (total - 16 * 32) + 12 * 1 * 2 * 16 * 16
    assert r["achieved_tflops"] == pytest.approx(r["tokens_per_sec"] * r["flops_per_token"] / 1e12, abs=6e-5)
    assert r["mfu"] is None  # the CPU's peak is unknown: never invented
    assert r["peak_memory_bytes"] is None or r["peak_memory_bytes"] > 4 * total  # at least the parameters


def run_bench_cli(*flags) -> dict:
    sets = [a for kv in TINY for a in ("--set", kv)]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--experiment",
                           str(ROOT / "experiments" / "shakespeare_char_cpu.py"), *sets, "--steps", "2",
                           "--repeats", "1", *flags], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_bench_cli_compare_prints_a_ratio():
    out = run_bench_cli("--compare")
    assert out["reference"]["attention"] == "naive"
    assert abs(out["speedup"] - out["run"]["tokens_per_sec"] / out["reference"]["tokens_per_sec"]) < 1e-2


def torch_state_from(params, spec) -> dict:
    """The JAX parameters in bench_torch's layout (nanoGPT's: fused qkv Linear, [out, in] weights)."""
    e, bias = spec.d_model, spec.use_bias
    t = lambda a: torch.tensor(np.asarray(a))  # noqa: E731
    state = {"wte.weight": t(params["wte"]["embedding"]), "wpe.weight": t(params["wpe"]),
             "ln_f.weight": t(params["ln_f"]["scale"])}
    for i in range(spec.n_layer):
        p, b = params[f"h_{i}"], f"blocks.{i}."
        state |= {b + "ln1.weight": t(p["ln_attn"]["scale"]), b + "ln2.weight": t(p["ln_mlp"]["scale"]),
                  b + "qkv.weight": t(np.asarray(p["attn"]["qkv_kernel"]).reshape(e, 3 * e).T),
                  b + "proj.weight": t(np.asarray(p["attn"]["out_kernel"]).reshape(e, e).T),
                  b + "fc.weight": t(p["mlp"]["wi"]["weight"]), b + "out.weight": t(p["mlp"]["wo"]["weight"])}
        if bias:
            state |= {b + "ln1.bias": t(p["ln_attn"]["bias"]), b + "ln2.bias": t(p["ln_mlp"]["bias"]),
                      b + "qkv.bias": t(np.asarray(p["attn"]["qkv_bias"]).reshape(3 * e)),
                      b + "proj.bias": t(p["attn"]["out_bias"]), b + "fc.bias": t(p["mlp"]["wi"]["bias"]),
                      b + "out.bias": t(p["mlp"]["wo"]["bias"])}
    if bias:
        state["ln_f.bias"] = t(params["ln_f"]["bias"])
    return state


@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
def test_torch_reference_computes_the_jax_models_loss_and_gradients(bias):
    """Loaded with the JAX model's weights, the PyTorch model gives the same loss and the same gradient
    for every parameter. Weights are drawn at a scale where the function is far from uniform."""
    spec = ModelSpec(flavour="gpt2", n_layer=2, n_head=2, d_model=32, vocab_size=65, max_seq_len=16, bias=bias)
    model = Transformer(spec)
    shapes = nn.meta.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))))
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map_with_path(
        lambda path, s: jnp.asarray((jax.tree_util.keystr(path).endswith("['scale']")) + 0.3 * rng.normal(size=s.shape),
                                    jnp.float32), shapes["params"])
    x = rng.integers(0, 65, (4, 16))
    y = rng.integers(0, 65, (4, 16))

    def loss_fn(p):
        logits = model.apply({"params": p}, jnp.asarray(x, jnp.int32))
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(y)[..., None], -1).mean()

    jax_loss, jax_grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    assert abs(float(jax_loss) - np.log(65)) > 0.5  # far from a uniform guess: the weights matter

    net = _model(spec)
    missing = net.load_state_dict(torch_state_from(params, spec), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    assert sum(p.numel() for p in net.parameters()) == sum(v.size for v in jax.tree.leaves(params))
    torch_loss = net(torch.tensor(x), torch.tensor(y))
    torch_loss.backward()
    assert torch_loss.item() == pytest.approx(float(jax_loss), rel=1e-5)
    want = torch_state_from(jax_grads, spec)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), want[name].numpy(), rtol=2e-4, atol=2e-6, err_msg=name)


def test_torch_reference_has_the_counted_parameters():
    from gptjax.model import flops

    exp = apply_overrides(load_experiment(ROOT / "experiments" / "shakespeare_char.py"), ["model.vocab_size=65"])
    n_torch = sum(p.numel() for p in _model(exp.model).parameters())
    assert n_torch == flops.param_counts(exp.model)["total"] == 10_745_088


@pytest.mark.slow
def test_bench_cli_torch_prints_the_ratio():
    out = run_bench_cli("--torch")
    assert out["torch"]["framework"].startswith("torch")
    assert abs(out["vs_torch"] - out["tokens_per_sec"] / out["torch"]["tokens_per_sec"]) < 1e-2


def test_profile_op_kinds_and_shares():
    from gptjax.science.op_profile import op_kind, op_times_us

    assert [op_kind(n) for n in ("dot.3", "dot_general", "multiply_tanh_fusion", "copy_bitcast_fusion",
                                 "wrapped_reduce-window", "subtract_exponential_fusion", "wrapped_is-finite.2",
                                 "add_select_fusion")] == [
        "matmul", "matmul", "gelu", "copy/transpose", "reduction", "softmax", "non-finite guard",
        "other element-wise"]
    events = [{"ph": "X", "name": "dot.1", "dur": 30}, {"ph": "X", "name": "dot.1.2", "dur": 10},
              {"ph": "X", "name": "$api.py:1 block_until_ready", "dur": 500},  # Python frame: not an op
              {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 400}, {"ph": "i", "name": "dot.9"},
              {"ph": "X", "name": "copy.4", "dur": 5}]
    assert op_times_us(events) == {"dot": 40, "copy": 5}


@pytest.mark.slow
def test_bench_profile_reports_where_the_step_time_goes():
    exp = apply_overrides(load_experiment(ROOT / "experiments" / "shakespeare_char_cpu.py"),
                          TINY + ["mesh.cpu_devices=0"])
    prof = bench_step(exp, steps=1, warmup=1, repeats=1, profile=True)["profile"]
    shares = prof["op_share_by_kind"]
    assert sum(shares.values()) == pytest.approx(1, abs=0.01)
    assert shares["matmul"] > 0 and prof["op_ms_per_call"] > 0  # the step's dots were seen and named
    assert 0 < len(prof["top_ops_ms_per_call"]) <= 8
