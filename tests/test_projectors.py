"""Modality projectors against numpy computations from their own parameters."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.model.projectors import make_projector


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))  # flax's default (tanh) GELU


def layer_norm(x, p, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def init(module, x, seed=0):
    """Parameters drawn at unit scale (the initialiser's 0.02 would leave every output near its bias)."""
    shapes = jax.eval_shape(lambda: nn.meta.unbox(module.init(jax.random.key(seed), x)["params"]))
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map_with_path(
        lambda path, s: jnp.asarray((jax.tree_util.keystr(path).endswith("['scale']"))
                                    + 0.5 * rng.normal(size=s.shape), jnp.float32), shapes)


X = np.random.default_rng(1).normal(size=(2, 5, 6)).astype(np.float32)  # [B, N encoder tokens, C]


def run(kind, n_tokens=0, **kw):
    module = make_projector(kind, 8, n_tokens, **kw)
    params = init(module, X)
    out = np.asarray(jax.jit(module.apply)({"params": params}, X), np.float64)
    return out, jax.tree.map(lambda a: np.asarray(a, np.float64), params)


def test_linear_projector_is_one_affine_map_per_token():
    out, p = run("linear")
    np.testing.assert_allclose(out, X @ p["proj"]["kernel"] + p["proj"]["bias"], rtol=1e-5, atol=1e-5)


def test_mlp_projector_is_two_layers_with_gelu():
    out, p = run("mlp")
    hidden = gelu(X @ p["fc1"]["kernel"] + p["fc1"]["bias"])
    np.testing.assert_allclose(out, hidden @ p["fc2"]["kernel"] + p["fc2"]["bias"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depth", [1, 2])
def test_resampler_is_learned_queries_cross_attending_to_inputs_and_themselves(depth):
    """Each layer: the latents (layer-normed) attend, unmasked, to [inputs; latents] with per-head
    scaled dot products, then a residual GELU MLP; a final LayerNorm. 3 queries from 5 inputs."""
    out, p = run("resampler", n_tokens=3, heads=2, depth=depth)
    assert out.shape == (2, 3, 8)
    x = layer_norm(X @ p["in_proj"]["kernel"] + p["in_proj"]["bias"], p["ln_in"])
    lat = np.broadcast_to(p["queries"], (2, 3, 8))
    for i in range(depth):
        q_in = layer_norm(lat, p[f"ln_q_{i}"])
        kv = np.concatenate([x, q_in], axis=1)  # [B, 5 + 3, E]
        q = np.einsum("bme,ehd->bhmd", q_in, p[f"q_kernel_{i}"])
        k = np.einsum("bne,ehd->bhnd", kv, p[f"k_kernel_{i}"])
        v = np.einsum("bne,ehd->bhnd", kv, p[f"v_kernel_{i}"])
        weights = softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]))  # [B, H, 3, 8]
        lat = lat + np.einsum("bhmd,hde->bme", weights @ v, p[f"out_kernel_{i}"])
        h = gelu(layer_norm(lat, p[f"ln_mlp_{i}"]) @ p[f"mlp_in_{i}"]["kernel"] + p[f"mlp_in_{i}"]["bias"])
        lat = lat + h @ p[f"mlp_out_{i}"]["kernel"] + p[f"mlp_out_{i}"]["bias"]
    np.testing.assert_allclose(out, layer_norm(lat, p["ln_out"]), rtol=1e-4, atol=1e-4)
    # every input token matters, in every output token (no mask hides any of them)
    moved = X.copy()
    moved[:, 4] += 1.0
    module = make_projector("resampler", 8, 3, heads=2, depth=depth)
    changed = np.asarray(jax.jit(module.apply)({"params": jax.tree.map(jnp.asarray, p)}, moved)) - out
    assert (np.abs(changed).max(axis=-1) > 1e-3).all()
