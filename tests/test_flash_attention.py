"""The blocked (flash-style) attention equals the plain reference, forward and backward."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import ModelSpec
from gptjax.model.attention import naive_attention
from gptjax.model.flash_attention import flash_attention
from gptjax.model.masks import attention_mask
from gptjax.model.transformer import Transformer
from helpers.quick import quick_grid
from helpers.reference_decode import cached_logits

B, L = 2, 40


def qkv(h=4, kh=2, d=8, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(B, L, h, d)), dtype)
    k, v = (jnp.asarray(rng.normal(size=(B, L, kh, d)), dtype) for _ in range(2))
    return q, k, v


IDX = jnp.broadcast_to(jnp.arange(L), (B, L))
# two packed documents, then padding (segment 0) at the end of the second row
SEG = jnp.asarray(np.array([[1] * 25 + [2] * 15, [1] * 30 + [0] * 10], np.int32))
VALID = (SEG != 0)[:, :, None, None]  # padding queries see nothing: their output is not compared


def both(q, k, v, prefix, block):
    ref = naive_attention(q, k, v, attention_mask(IDX, IDX, SEG, SEG, prefix))
    out = flash_attention(q, k, v, IDX, IDX, SEG, SEG, prefix, block=block)
    return ref, out


# prefixes: none; the first 7 / 30 tokens of each row; the prompt of each packed document (5 and 4 tokens)
PACKED_PROMPTS = np.zeros((B, L), bool)
PACKED_PROMPTS[0, :5] = PACKED_PROMPTS[0, 25:29] = PACKED_PROMPTS[1, :6] = True


@pytest.mark.parametrize("block, prefix, heads", quick_grid(
    [8, 13, 16, 64], [None, "rows", "packed"], [(4, 4), (4, 2), (4, 1)],
    quick=[(13, "packed", (4, 2)), (64, "rows", (4, 1))]))
def test_flash_equals_reference_forward_and_backward(block, prefix, heads):
    q, k, v = qkv(*heads)
    prefix = {None: None, "rows": IDX < jnp.asarray([7, 30])[:, None], "packed": jnp.asarray(PACKED_PROMPTS)}[prefix]
    ref, out = both(q, k, v, prefix, block)
    np.testing.assert_allclose(np.where(VALID, out, 0), np.where(VALID, ref, 0), atol=2e-6)
    w = jnp.where(VALID, jnp.asarray(np.random.default_rng(5).normal(size=q.shape), jnp.float32), 0.0)
    grads = [jax.grad(lambda *x, i=i: jnp.sum(both(*x, prefix, block)[i] * w), argnums=(0, 1, 2))(q, k, v)
             for i in (0, 1)]
    for g_ref, g_out in zip(*grads):
        np.testing.assert_allclose(g_out, g_ref, atol=1e-5)


def test_padding_queries_get_zeros_not_nan():
    q, k, v = qkv()
    out = flash_attention(q, k, v, IDX, IDX, SEG, SEG, block=16)
    assert np.all(np.isfinite(out)) and float(jnp.abs(out[1, 30:]).max()) == 0.0


def test_bf16_inputs_stay_close_to_f32():
    q, k, v = qkv()
    ref = flash_attention(q, k, v, IDX, IDX, SEG, SEG, block=16)
    half = flash_attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), IDX, IDX, SEG, SEG, block=16)
    assert half.dtype == jnp.bfloat16
    assert float(jnp.abs(jnp.where(VALID, half.astype(jnp.float32) - ref, 0)).max()) < 0.05


def test_blocked_attention_stores_less_than_full_attention():
    """At 1024 positions, by XLA's own count of temporary memory: the forward pass (evaluation,
    sampling) holds well under half of the reference's, and training under the reference's."""
    n, h, d = 1024, 4, 16
    q, k, v = (jnp.ones((1, n, h, d), jnp.float32) for _ in range(3))
    idx, seg = jnp.arange(n)[None], jnp.ones((1, n), jnp.int32)

    def temp_bytes(kernel, grad):
        f = lambda q, k, v: jnp.sum(kernel(q, k, v))  # noqa: E731
        f = jax.grad(f, argnums=(0, 1, 2)) if grad else f
        return jax.jit(f).lower(q, k, v).compile().memory_analysis().temp_size_in_bytes

    def full(q, k, v):
        return naive_attention(q, k, v, attention_mask(idx, idx, seg, seg))

    def blocked(q, k, v):
        return flash_attention(q, k, v, idx, idx, seg, seg, block=128)

    assert temp_bytes(full, False) >= 4 * n * n * h  # the reference holds an f32 L x L matrix per head
    assert temp_bytes(blocked, False) < temp_bytes(full, False) / 2
    assert temp_bytes(blocked, True) < temp_bytes(full, True)


SPEC = ModelSpec(flavour="gpt2", n_layer=2, n_head=4, d_model=32, vocab_size=50, max_seq_len=24,
                 attention="naive", attention_block=8)


@pytest.mark.slow  # the whole model's gradients through the blocked kernel's custom VJP: a long compile
@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_model_with_flash_equals_model_with_reference(flavour):
    ref_spec = dataclasses.replace(SPEC, flavour=flavour, n_kv_head=2 if flavour == "llama" else 0)
    fast_spec = dataclasses.replace(ref_spec, attention="flash")
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, 50, (2, 24)), jnp.int32)
    params = Transformer(ref_spec).init(jax.random.key(0), tokens)["params"]

    def loss(p, spec):
        return jnp.mean(jax.nn.log_softmax(Transformer(spec).apply({"params": p}, tokens))[..., 0])

    np.testing.assert_allclose(loss(params, fast_spec), loss(params, ref_spec), rtol=1e-6)
    g_ref, g_fast = (jax.grad(loss)(params, s) for s in (ref_spec, fast_spec))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, atol=1e-6), g_ref, g_fast)


def test_flash_decoding_with_kv_cache_matches_full_forward():
    spec = dataclasses.replace(SPEC, attention="flash")
    tokens = jnp.asarray(np.random.default_rng(3).integers(0, 50, (2, 12)), jnp.int32)
    params = Transformer(spec).init(jax.random.key(0), tokens)["params"]
    full = Transformer(spec).apply({"params": params}, tokens)
    np.testing.assert_allclose(cached_logits(params, spec, tokens, prefill=8), full, atol=1e-5)
