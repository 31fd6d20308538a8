"""Modality projectors: encoder vectors [B, N, C] -> decoder-width tokens [B, M, E].

linear      one matrix per token (M = N)
mlp         two layers with GELU, LLaVA-1.5's projector (M = N)
resampler   M learned queries cross-attending to the encoder outputs
            (Perceiver / Flamingo): any N in, a fixed number of tokens out
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from gptjax.model.attention import xla_attention
from gptjax.model.layers import dense, layer_norm
from gptjax.parallel.rules import constrain


class DenseProjector(nn.Module):
    """`mlp`: linear -> GELU -> linear with a hidden width of d_model (LLaVA-1.5); else one linear map."""

    d_model: int
    mlp: bool = True
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x_BxNxC):
        dt, pdt = self.dtype, self.param_dtype
        if self.mlp:
            h = nn.gelu(dense(self.d_model, "fc1", (None, "mlp"), dt, pdt)(x_BxNxC))
            y = dense(self.d_model, "fc2", ("mlp", "embed"), dt, pdt)(constrain(h, ("batch", "length", "mlp")))
        else:
            y = dense(self.d_model, "proj", (None, "embed"), dt, pdt)(x_BxNxC)
        return constrain(y, ("batch", "length", "act_embed"))


class Resampler(nn.Module):
    """`n_queries` learned latents; each layer: latents attend to [inputs; latents], then an MLP."""

    d_model: int
    n_queries: int
    heads: int = 4
    depth: int = 1
    mlp_ratio: int = 4
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x_BxNxC):
        e, h = self.d_model, self.heads
        d = e // h
        dt, pdt = self.dtype, self.param_dtype
        x = dense(e, "in_proj", (None, "embed"), dt, pdt)(x_BxNxC)
        x = layer_norm("ln_in", dt, pdt)(x)
        latents = self.param("queries", nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                                     (None, "embed")), (self.n_queries, e), pdt)
        lat = jnp.broadcast_to(latents.astype(dt), (x.shape[0], self.n_queries, e))
        init = nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed", "heads", "kv"))
        out_init = nn.with_logical_partitioning(nn.initializers.normal(0.02), ("heads", "kv", "embed"))
        for i in range(self.depth):
            q_in = layer_norm(f"ln_q_{i}", dt, pdt)(lat)
            kv_in = jnp.concatenate([x, q_in], axis=1)  # Flamingo: keys include the latents
            wq = self.param(f"q_kernel_{i}", init, (e, h, d), pdt).astype(dt)
            wk = self.param(f"k_kernel_{i}", init, (e, h, d), pdt).astype(dt)
            wv = self.param(f"v_kernel_{i}", init, (e, h, d), pdt).astype(dt)
            wo = self.param(f"out_kernel_{i}", out_init, (h, d, e), pdt).astype(dt)
            q = jnp.einsum("bme,ehd->bmhd", q_in, wq)
            k = jnp.einsum("bne,ehd->bnhd", kv_in, wk)
            v = jnp.einsum("bne,ehd->bnhd", kv_in, wv)
            everything = jnp.ones((x.shape[0], 1, self.n_queries, kv_in.shape[1]), bool)
            lat = lat + jnp.einsum("bmhd,hde->bme", xla_attention(q, k, v, everything), wo)
            hid = nn.gelu(dense(self.mlp_ratio * e, f"mlp_in_{i}", ("embed", "mlp"), dt, pdt)(
                layer_norm(f"ln_mlp_{i}", dt, pdt)(lat)))
            lat = lat + dense(e, f"mlp_out_{i}", ("mlp", "embed"), dt, pdt)(hid)
        return constrain(layer_norm("ln_out", dt, pdt)(lat), ("batch", "length", "act_embed"))


def make_projector(kind: str, d_model: int, n_tokens: int, *, heads: int = 4, depth: int = 1,
                   dtype: str = "float32", param_dtype: str = "float32", name: str | None = None) -> nn.Module:
    """The projector of `kind` (linear | mlp | resampler) producing `d_model`-wide tokens."""
    if kind in ("linear", "mlp"):
        return DenseProjector(d_model, kind == "mlp", dtype, param_dtype, name=name)
    if kind == "resampler":
        return Resampler(d_model, n_tokens, heads, depth, dtype=dtype, param_dtype=param_dtype, name=name)
    raise ValueError(f"unknown projector {kind!r}; expected linear, mlp or resampler")
