"""The decoder: causality, masks, grouped-query attention, KV cache, scan and remat."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import ModelSpec
from gptjax.model.attention import xla_attention
from gptjax.model.decode import generate, sample_logits
from helpers.reference_decode import cached_logits, generate_without_cache, greedy_past_the_window
from gptjax.model.masks import attention_mask
from gptjax.model.transformer import Transformer
from helpers.quick import quick_first

GPT2 = ModelSpec(flavour="gpt2", n_layer=2, n_head=4, d_model=32, vocab_size=50, max_seq_len=24)
LLAMA = ModelSpec(flavour="llama", n_layer=2, n_head=4, n_kv_head=2, d_model=32, vocab_size=50,
                  max_seq_len=24, tie_embeddings=False)


def init(spec, length=16, seed=0):
    tokens = jnp.zeros((2, length), jnp.int32)
    return nn.meta.unbox(Transformer(spec).init(jax.random.key(seed), tokens))["params"]


def tokens(b=2, l=16, seed=1, vocab=50):
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, (b, l)), jnp.int32)


@pytest.mark.parametrize("spec", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_prediction_at_t_ignores_later_tokens(spec):
    params = init(spec)
    x = tokens()
    t = 7
    changed = x.at[:, t + 1:].set((x[:, t + 1:] + 13) % spec.vocab_size)
    a = Transformer(spec).apply({"params": params}, x)
    b = Transformer(spec).apply({"params": params}, changed)
    np.testing.assert_allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6)
    assert not np.allclose(a[:, t + 1:], b[:, t + 1:], atol=1e-3)


@pytest.mark.parametrize("spec", quick_first([GPT2, LLAMA], ids=["gpt2", "llama"]))
def test_gradient_of_early_logits_is_zero_for_later_inputs(spec):
    params = init(spec)
    x = tokens()
    model = Transformer(spec)

    def early_logits(emb):
        return model.apply({"params": params}, embeds_BxLxE=emb)[:, :5].sum()

    emb = model.apply({"params": params}, x, method=Transformer.embed)
    g = jax.grad(early_logits)(emb)
    assert float(jnp.abs(g[:, 5:]).max()) == 0.0
    assert float(jnp.abs(g[:, :5]).max()) > 0.0


def test_mask_combines_causal_padding_segments_and_prefix():
    idx = jnp.arange(6)[None]
    seg = jnp.array([[1, 1, 2, 2, 2, 0]])
    m = np.asarray(attention_mask(idx, idx, seg, seg))[0, 0]
    expected = np.zeros((6, 6), bool)
    for q in range(6):
        for k in range(6):
            expected[q, k] = k <= q and seg[0, k] != 0 and seg[0, q] == seg[0, k]
    np.testing.assert_array_equal(m, expected)
    # prefix-LM: the first 3 positions see each other both ways, later ones are causal
    ones = jnp.ones((1, 6), jnp.int32)
    p = np.asarray(attention_mask(idx, idx, ones, ones, idx < 3))[0, 0]
    assert p[0, 2] and p[1, 2] and not p[0, 3] and p[4, 3] and not p[3, 4]
    assert p[5].all()
    # packed prompts: each segment's prefix is visible within that segment only
    prompts = jnp.array([[True, False, True, True, False, False]])
    p = np.asarray(attention_mask(idx, idx, seg, seg, prompts))[0, 0]
    assert p[0, 0] and not p[0, 1] and p[2, 3] and not p[2, 4] and p[4, 3] and not p[1, 2] and not p[5].any()


def test_segments_do_not_see_each_other():
    """Two documents packed in one row give the same outputs as each alone."""
    spec = GPT2
    params = init(spec)
    a, b = tokens(1, 6, seed=3), tokens(1, 10, seed=4)
    packed = jnp.concatenate([a, b], axis=1)
    seg = jnp.array([[1] * 6 + [2] * 10])
    pos = jnp.array([list(range(6)) + list(range(10))])
    model = Transformer(spec)
    out = model.apply({"params": params}, packed, pos, seg)
    np.testing.assert_allclose(out[:, :6], model.apply({"params": params}, a), atol=1e-5)
    np.testing.assert_allclose(out[:, 6:], model.apply({"params": params}, b), atol=1e-5)


def test_grouped_query_equals_multi_head_with_repeated_kv():
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(2, 5, 4, 8)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(2, 5, 2, 8)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(2, 5, 2, 8)), jnp.float32)
    idx = jnp.broadcast_to(jnp.arange(5), (2, 5))
    mask = attention_mask(idx, idx)
    gqa = xla_attention(q, k, v, mask)
    mha = xla_attention(q, jnp.repeat(k, 2, axis=2), jnp.repeat(v, 2, axis=2), mask)
    np.testing.assert_allclose(gqa, mha, atol=1e-5)
    ref = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(gqa, ref, atol=1e-5)


@pytest.mark.parametrize("spec", quick_first([GPT2, LLAMA], ids=["gpt2", "llama"]))
def test_kv_cache_decoding_matches_full_forward(spec):
    params = init(spec)
    x = tokens(2, 12)
    full = Transformer(spec).apply({"params": params}, x)
    np.testing.assert_allclose(cached_logits(params, spec, x, prefill=5), full, atol=1e-5)


@pytest.mark.parametrize("spec", quick_first([GPT2, LLAMA], ids=["gpt2", "llama"]))
# greedy, and sampling through every filter (the filters themselves: the top-k / top-p test below)
@pytest.mark.parametrize("temperature,top_k,top_p", [(0.0, 0, 1.0), (0.9, 5, 0.8)])
def test_sampling_with_cache_equals_recomputing(spec, temperature, top_k, top_p):
    params = init(spec)
    prompt = tokens(3, 4)
    rng = jax.random.key(5)
    fast = generate(params, spec, prompt, 15, rng, temperature, top_k, top_p)
    slow = generate_without_cache(params, spec, prompt, 15, rng, temperature, top_k, top_p)
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(slow))


def filtered_distribution(logits_V, temperature, top_k, top_p):
    """What sampling should draw from, computed here: softmax at the temperature; the top_k likeliest tokens
    kept; then, of their renormalised distribution, the likeliest tokens until the mass *before* a token
    reaches top_p (the first always stays); renormalised again."""
    z = np.asarray(logits_V, np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_k:
        p[np.argsort(-z)[top_k:]] = 0.0
        p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p)
        before = np.cumsum(p[order]) - p[order]
        p[order[before >= top_p]] = 0.0
        p /= p.sum()
    return p


# two rows with different orders, so a cut-off computed across rows would show
LOGITS = np.log(np.array([[0.30, 0.02, 0.20, 0.15, 0.03, 0.12, 0.10, 0.08],
                          [0.05, 0.25, 0.02, 0.01, 0.33, 0.14, 0.12, 0.08]]))


# kept: how many tokens of the first row each setting keeps, worked out by hand
@pytest.mark.parametrize("temperature,top_k,top_p,kept", [(1.0, 0, 1.0, 8), (1.0, 3, 1.0, 3), (1.0, 0, 0.6, 3),
                                                          (0.5, 5, 0.8, 3), (2.0, 0, 0.9, 7), (1.0, 1, 1.0, 1)])
def test_top_k_and_top_p_draw_only_the_kept_tokens_in_proportion(temperature, top_k, top_p, kept):
    n = 100_000
    logits = jnp.asarray(np.repeat(LOGITS, n, axis=0), jnp.float32)  # rows 0..n-1: LOGITS[0], then LOGITS[1]
    draws = np.asarray(sample_logits(logits, jax.random.key(0), temperature, top_k, top_p))
    for row in range(2):
        want = filtered_distribution(LOGITS[row], temperature, top_k, top_p)
        got = np.bincount(draws[row * n:(row + 1) * n], minlength=8) / n
        assert (got[want == 0] == 0).all(), (row, got, want)  # a filtered token is never drawn
        tolerance = 5 * np.sqrt(want * (1 - want) / n) + 1e-9  # five standard errors
        assert (np.abs(got - want) <= tolerance).all(), (row, got, want)
    assert (filtered_distribution(LOGITS[0], temperature, top_k, top_p) > 0).sum() == kept
    assert len(set(draws[:n].tolist())) == kept


def test_generation_past_the_context_window_equals_recomputing_each_window():
    """44 new tokens with a context of 24: two windows after the first, each restarting from the last
    half of the sequence. Greedy tokens equal those of a model re-run on that same context for every
    token. (Weights drawn at unit scale: a freshly initialised model repeats one token, which would
    hide a wrong context.)"""
    leaves, tree = jax.tree.flatten(init(GPT2))
    rng = np.random.default_rng(0)
    params = jax.tree.unflatten(tree, [jnp.asarray(rng.normal(size=x.shape), jnp.float32) for x in leaves])
    prompt = tokens(2, 4)
    out = np.asarray(generate(params, GPT2, prompt, 44, jax.random.key(0), 0.0))
    reference, gap = greedy_past_the_window(params, GPT2, prompt, 44)
    assert gap > 1e-3, "near-tied logits: the comparison would hinge on rounding"
    assert out.shape == (2, 48)
    assert min(len(set(row[4:].tolist())) for row in reference) >= 5  # a varied continuation
    np.testing.assert_array_equal(out, reference)
    long_prompt = tokens(2, 30, seed=7)  # longer than the context: continued from its last half
    np.testing.assert_array_equal(np.asarray(generate(params, GPT2, long_prompt, 12, jax.random.key(0), 0.0)),
                                  greedy_past_the_window(params, GPT2, long_prompt, 12)[0])


def test_scan_over_layers_equals_unrolled_layers():
    spec = dataclasses.replace(LLAMA, scan_layers=True)
    unrolled = init(LLAMA)
    stacked = {k: v for k, v in unrolled.items() if not k.startswith("h_")}
    stacked["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), *[unrolled[f"h_{i}"] for i in range(LLAMA.n_layer)])
    x = tokens()
    np.testing.assert_allclose(Transformer(spec).apply({"params": stacked}, x),
                               Transformer(LLAMA).apply({"params": unrolled}, x), atol=1e-5)


@pytest.mark.parametrize("policy", ["full", "dots", "dots_no_batch"])
def test_remat_gives_identical_gradients(policy):
    params = init(GPT2)
    x = tokens()

    def loss(p, spec):
        return Transformer(spec).apply({"params": p}, x).mean()

    g_plain = jax.grad(loss)(params, GPT2)
    g_remat = jax.grad(loss)(params, dataclasses.replace(GPT2, remat=policy))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), g_plain, g_remat)


def test_bf16_compute_keeps_f32_params():
    spec = dataclasses.replace(GPT2, dtype="bfloat16")
    params = init(spec)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    out = Transformer(spec).apply({"params": params}, tokens())
    assert out.dtype == jnp.float32  # logits upcast for the loss
    ref = Transformer(GPT2).apply({"params": params}, tokens())
    assert float(jnp.abs(out - ref).max()) < 0.1


def test_naive_reference_attention_equals_xla():
    from gptjax.model.attention import naive_attention

    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.normal(size=(2, 6, 4, 8)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(2, 6, 2, 8)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(2, 6, 2, 8)), jnp.float32)
    idx = jnp.broadcast_to(jnp.arange(6), (2, 6))
    seg = jnp.array([[1, 1, 1, 2, 2, 0], [1] * 6])
    mask = attention_mask(idx, idx, seg, seg)
    np.testing.assert_allclose(naive_attention(q, k, v, mask), xla_attention(q, k, v, mask), atol=1e-5)
