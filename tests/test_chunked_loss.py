"""Cross-entropy over chunks of positions equals the whole-logits loss and never holds all logits."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gptjax.config import Experiment, ModelSpec, TextData, Train
from gptjax.errors import ConfigError
from gptjax.model.transformer import Transformer
from gptjax.train.step import chunked_cross_entropy, cross_entropy, loss_fn
from helpers.quick import quick_first

B, L, E, V = 2, 13, 16, 37


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, L, E)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(E, V)) * 0.3, jnp.float32)
    t = jnp.asarray(rng.integers(0, V, (B, L)), jnp.int32)
    m = jnp.asarray(rng.random((B, L)) > 0.3, jnp.float32)
    return x, w, t, m


@pytest.mark.parametrize("chunk", [1, 4, 5, 13, 64])
def test_chunked_equals_whole_logits_loss_and_gradients(chunk):
    x, w, t, m = data()

    def whole(x, w):
        return cross_entropy(jnp.einsum("ble,ev->blv", x, w), t, m)

    def chunked(x, w):
        return chunked_cross_entropy(x, w, t, m, chunk)

    (tot_a, cnt_a), (tot_b, cnt_b) = whole(x, w), chunked(x, w)
    assert float(cnt_a) == float(cnt_b) == float(m.sum())
    np.testing.assert_allclose(tot_b, tot_a, rtol=1e-6)
    ga = jax.grad(lambda *a: whole(*a)[0], argnums=(0, 1))(x, w)
    gb = jax.grad(lambda *a: chunked(*a)[0], argnums=(0, 1))(x, w)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tied", quick_first([False, True]))
def test_model_loss_with_chunks_equals_whole_logits(tied):
    spec = ModelSpec(flavour="gpt2", n_layer=1, n_head=2, d_model=16, vocab_size=V, max_seq_len=L,
                     tie_embeddings=tied)
    x, _, t, m = data(1)
    batch = {"inputs": t, "targets": jnp.roll(t, -1, axis=1), "loss_mask": m}
    params = Transformer(spec).init(jax.random.key(0), batch, method="from_batch")["params"]
    whole, chunked = Transformer(spec), Transformer(dataclasses.replace(spec, loss_chunk=4))
    (la, ca), ga = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, whole, jax.random.key(1))
    (lb, cb), gb = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, chunked, jax.random.key(1))
    np.testing.assert_allclose(lb, la, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7), ga, gb)


def test_label_smoothing_is_cross_entropy_against_optax_smoothed_labels():
    x, w, t, m = data(2)
    logits = jnp.einsum("ble,ev->blv", x, w) * 4  # peaked, so smoothing changes the loss
    want = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(t, V), 0.2))
    total, count = cross_entropy(logits, t, m, smoothing=0.2)
    np.testing.assert_allclose(total, jnp.sum(want * m), rtol=1e-6)
    assert abs(float(total) - float(cross_entropy(logits, t, m)[0])) > 1.0
    whole = jax.grad(lambda x: cross_entropy(jnp.einsum("ble,ev->blv", x, w), t, m, 0.2)[0])(x)
    chunked = jax.grad(lambda x: chunked_cross_entropy(x, w, t, m, 5, 0.2)[0])(x)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_label_smoothing_of_one_or_more_is_refused():
    exp = Experiment(model=ModelSpec(), data=TextData("tinyshakespeare"), train=Train(label_smoothing=1.0))
    with pytest.raises(ConfigError, match="label_smoothing"):
        exp.validate()


def test_chunks_hold_a_fraction_of_the_logits():
    """XLA's count of temporary memory for loss + gradients: whole logits need B x L x V floats."""
    b, l, e, v = 4, 512, 64, 8192
    x = jnp.ones((b, l, e), jnp.float32)
    w = jnp.ones((e, v), jnp.float32) * 0.01
    t, m = jnp.zeros((b, l), jnp.int32), jnp.ones((b, l), jnp.float32)

    def temp_bytes(f):
        g = jax.jit(jax.grad(lambda x, w: f(x, w)[0], argnums=(0, 1)))
        return g.lower(x, w).compile().memory_analysis().temp_size_in_bytes

    logits_bytes = 4 * b * l * v
    assert temp_bytes(lambda x, w: cross_entropy(jnp.einsum("ble,ev->blv", x, w), t, m)) >= logits_bytes
    # chunks of 64 positions: an eighth of the logits each, about two of them alive at once
    assert temp_bytes(lambda x, w: chunked_cross_entropy(x, w, t, m, 64)) < logits_bytes / 2


def test_bad_chunk_is_refused():
    exp = Experiment(model=ModelSpec(loss_chunk=-1), data=TextData("tinyshakespeare"))
    with pytest.raises(ConfigError, match="loss_chunk"):
        exp.validate()
