"""The CPU fusion fence is an exact identity, forward and backward, NaNs included."""
import jax
import jax.numpy as jnp
import numpy as np

from gptjax.model.fusion_fence import cpu_fence, fusion_fence


def test_fence_is_identity_for_values_and_gradients():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), jnp.float32)
    f = lambda x: jnp.sum(jnp.tanh(fusion_fence(x * 2.0)) * w)  # noqa: E731
    g = lambda x: jnp.sum(jnp.tanh(x * 2.0) * w)  # noqa: E731
    np.testing.assert_array_equal(jax.jit(f)(x), jax.jit(g)(x))
    np.testing.assert_array_equal(jax.jit(jax.grad(f))(x), jax.jit(jax.grad(g))(x))
    np.testing.assert_array_equal(jax.vmap(jax.grad(f))(x[None]), jax.grad(g)(x)[None])


def test_non_finite_gradients_pass_through_unchanged():
    x = jnp.ones((4,), jnp.float32)
    upstream = jnp.asarray([jnp.nan, 1.0, jnp.inf, -2.0])
    grad = jax.jit(jax.grad(lambda x: jnp.sum(cpu_fence(x) * upstream)))(x)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(upstream))
    np.testing.assert_array_equal(grad[1:], upstream[1:])
