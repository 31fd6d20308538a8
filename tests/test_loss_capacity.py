"""Logits at the loss's positions only (model.loss_capacity) give the whole-logits loss and gradients."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import Experiment, ModelSpec, TaskData, TextData, Train
from gptjax.errors import ConfigError
from gptjax.model.transformer import Transformer
from gptjax.science.bench import synthetic_batch
from gptjax.train.step import capacity_cross_entropy, cross_entropy, loss_fn
from helpers.quick import quick_first, quick_grid

B, L, E, V = 3, 12, 8, 29


def data(seed=0):
    """Rows whose loss covers a tail of 2, 5 and 4 positions (a prompt, then its target)."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, L, E)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(E, V)) * 0.3, jnp.float32)
    t = jnp.asarray(rng.integers(0, V, (B, L)), jnp.int32)
    m = np.zeros((B, L), np.float32)
    m[0, 10:], m[1, 3:8], m[2, 6:10] = 1, 1, 1
    return x, w, t, jnp.asarray(m)


def whole(x, w, t, m, smoothing=0.0):
    return cross_entropy(jnp.einsum("ble,ev->blv", x, w), t, m, smoothing)


# capacity 5 fits exactly, 6 with room, 4 and 1 are too small (whole rows)
@pytest.mark.parametrize("capacity,smoothing", quick_grid([5, 6, 4, 1], [0.0, 0.1], quick={(5, 0.1), (4, 0.0)}))
def test_capacity_equals_whole_logits_loss_and_gradients(capacity, smoothing):
    x, w, t, m = data()
    ref = jax.jit(lambda x, w: whole(x, w, t, m, smoothing))
    got = jax.jit(lambda x, w: capacity_cross_entropy(x, w, t, m, capacity, smoothing=smoothing))
    (tot_a, cnt_a), (tot_b, cnt_b) = ref(x, w), got(x, w)
    assert float(cnt_b) == float(cnt_a) == 11.0
    np.testing.assert_allclose(tot_b, tot_a, rtol=1e-6)
    ga = jax.grad(lambda *a: ref(*a)[0], argnums=(0, 1))(x, w)
    gb = jax.grad(lambda *a: got(*a)[0], argnums=(0, 1))(x, w)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_capacity_makes_no_logits_outside_the_mask_when_rows_fit():
    # NaN features where the mask is off poison every logit made there (NaN * 0 is NaN), so a
    # finite loss shows those positions were never projected; a row over capacity takes them all.
    # A row short of capacity fills its slots with its first unmasked positions, so 0-2 stay finite
    x, w, t, m = data()
    x = jnp.where((m[..., None] == 0) & (jnp.arange(L)[None, :, None] >= 3), jnp.nan, x)
    assert np.isnan(float(whole(x, w, t, m)[0]))
    total, count = capacity_cross_entropy(x, w, t, m, 5)
    assert np.isfinite(float(total)) and float(count) == 11.0
    assert np.isnan(float(capacity_cross_entropy(x, w, t, m, 4)[0]))
    gx = jax.grad(lambda x: capacity_cross_entropy(x, w, t, m, 5, chunk=2)[0])(x)
    assert np.isfinite(np.asarray(gx)[np.asarray(m) != 0]).all()


@pytest.mark.parametrize("chunk", quick_first([0, 3]))
def test_model_loss_with_capacity_equals_whole_logits(chunk):
    spec = ModelSpec(flavour="llama", n_layer=1, n_head=2, d_model=16, vocab_size=V, max_seq_len=L)
    _, _, t, m = data(1)
    batch = {"inputs": t, "targets": jnp.roll(t, -1, axis=1), "loss_mask": m}
    params = Transformer(spec).init(jax.random.key(0), batch, method="from_batch")["params"]
    ref = Transformer(spec)
    cap = Transformer(dataclasses.replace(spec, loss_capacity=0.5, loss_chunk=chunk))
    (la, ca), ga = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, ref, jax.random.key(1))
    (lb, cb), gb = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, cap, jax.random.key(1))
    assert float(cb) == float(ca) == 11.0
    np.testing.assert_allclose(lb, la, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7), ga, gb)


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_loss_capacity_outside_the_unit_interval_is_refused(share):
    exp = Experiment(model=ModelSpec(loss_capacity=share), data=TextData("tinyshakespeare"))
    with pytest.raises(ConfigError, match=r"loss_capacity.*\(0, 1\]"):
        exp.validate()


def test_loss_capacity_with_distillation_is_refused():
    exp = Experiment(model=ModelSpec(loss_capacity=0.5), data=TaskData(task="qa"),
                     train=Train(distill_from="runs/teacher"))
    with pytest.raises(ConfigError, match="loss_capacity=1"):
        exp.validate()


def test_bench_batch_puts_the_last_share_of_each_row_in_the_loss():
    np.testing.assert_array_equal(synthetic_batch(2, 10, 50, loss_share=0.3)["loss_mask"],
                                  np.tile(np.r_[np.zeros(7), np.ones(3)], (2, 1)))
    assert synthetic_batch(2, 10, 50)["loss_mask"].all()
