"""Attention: rotary positions, the kernels, and the attention layer with a KV cache.

Shapes in names: B batch, L query length, S key length, H query heads,
K key/value heads (K divides H; K < H is grouped-query), D head dim.
"""
from __future__ import annotations

import functools
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp

from gptjax.model.flash_attention import flash_attention
from gptjax.model.fusion_fence import cpu_fence
from gptjax.model.layers import kernel as weight
from gptjax.model.masks import attention_mask
from gptjax.parallel.rules import constrain

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ rotary

def rope(x_BxLxHxD, positions_BxL, theta: float):
    """Rotary position embedding (half-split layout, as in LLaMA / GPT-NeoX)."""
    d = x_BxLxHxD.shape[-1]
    freqs = theta ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)
    angles_BxLxF = positions_BxL[..., None].astype(jnp.float32) * freqs
    sin = jnp.sin(angles_BxLxF)[:, :, None, :]
    cos = jnp.cos(angles_BxLxF)[:, :, None, :]
    x1, x2 = jnp.split(x_BxLxHxD.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxLxHxD.dtype)


# ------------------------------------------------------------------ kernels

def xla_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask_Bx1xLxS):
    """Plain attention: einsum, mask, softmax in f32, einsum. Grouped-query by reshape."""
    b, l, h, d = q_BxLxHxD.shape
    kh = k_BxSxKxD.shape[2]
    q_BxLxKxGxD = q_BxLxHxD.reshape(b, l, kh, h // kh, d) * (d ** -0.5)
    logits = jnp.einsum("blkgd,bskd->bkgls", q_BxLxKxGxD, k_BxSxKxD).astype(jnp.float32)
    logits = jnp.where(mask_Bx1xLxS[:, :, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v_BxSxKxD.dtype)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, v_BxSxKxD)
    return out.reshape(b, l, h, d)


def naive_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask_Bx1xLxS):
    """The reference for benchmarks and tests: heads repeated, additive mask, all in f32."""
    h, kh = q_BxLxHxD.shape[2], k_BxSxKxD.shape[2]
    k = jnp.repeat(k_BxSxKxD, h // kh, axis=2).astype(jnp.float32)
    v = jnp.repeat(v_BxSxKxD, h // kh, axis=2).astype(jnp.float32)
    q = q_BxLxHxD.astype(jnp.float32)
    logits_BxHxLxS = jnp.einsum("blhd,bshd->bhls", q, k) / jnp.sqrt(q.shape[-1])
    logits_BxHxLxS = logits_BxHxLxS + jnp.where(mask_Bx1xLxS, 0.0, -1e30)
    probs = jax.nn.softmax(logits_BxHxLxS, axis=-1)
    return jnp.einsum("bhls,bshd->blhd", probs, v).astype(q_BxLxHxD.dtype)


def cudnn_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask_Bx1xLxS):
    """`jax.nn.dot_product_attention` with the cuDNN flash kernel (NVIDIA GPUs, bf16/fp16)."""
    return jax.nn.dot_product_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask=mask_Bx1xLxS,
                                        implementation="cudnn")


def splash_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, segment_ids_BxL):
    """Pallas splash attention on TPUs: causal, with segment ids (training only, L == S)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as sk, splash_attention_mask as sm)

    b, l, h, d = q_BxLxHxD.shape
    kh = k_BxSxKxD.shape[2]
    mask = sm.MultiHeadMask([sm.CausalMask((l, l)) for _ in range(h)])
    kernel = sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1)
    # the kernel wants [H, L, D] per example; repeat kv heads for grouped-query
    q = jnp.transpose(q_BxLxHxD * (d ** -0.5), (0, 2, 1, 3))
    k = jnp.repeat(jnp.transpose(k_BxSxKxD, (0, 2, 1, 3)), h // kh, axis=1)
    v = jnp.repeat(jnp.transpose(v_BxSxKxD, (0, 2, 1, 3)), h // kh, axis=1)
    seg = sk.SegmentIds(q=segment_ids_BxL, kv=segment_ids_BxL)
    out = jax.vmap(kernel)(q, k, v, segment_ids=seg)
    return jnp.transpose(out, (0, 2, 1, 3))


@functools.lru_cache(maxsize=None)
def choose_implementation(requested: str, dtype: str) -> str:
    """`auto` picks per backend: cuDNN flash on NVIDIA (half precision), splash on TPU, the
    blocked kernel of gptjax/model/flash_attention.py on the CPU (measured 1.4x faster than
    `xla` there, forward and backward, at the baby-GPT shape), else XLA."""
    if requested != "auto":
        return requested
    backend = jax.default_backend()
    if backend == "gpu" and dtype in ("bfloat16", "float16"):
        choice = "cudnn"
    elif backend == "tpu":
        choice = "splash"
    elif backend == "cpu":
        choice = "flash"
    else:
        choice = "xla"
    log.info("attention implementation: %s (backend %s, dtype %s)", choice, backend, dtype)
    return choice


# ------------------------------------------------------------------ layer

class Attention(nn.Module):
    """Multi-head / grouped-query self-attention with optional RoPE and a KV cache.

    With `decode=True` the layer keeps `cached_key`, `cached_value` in the
    `cache` collection: call it first with the whole prompt (prefill), then one
    token at a time; `positions` and `segment_ids` are those of the new tokens.
    """

    spec: "object"
    decode: bool = False

    @nn.compact
    def __call__(self, x_BxLxE, positions_BxL, segment_ids_BxL, prefix_BxL=None, deterministic=True,
                 branches_BxL=None):
        s = self.spec
        h, kh, d = s.n_head, s.kv_heads, s.head_dim
        dtype = jnp.dtype(s.dtype)
        x_BxLxE = x_BxLxE.astype(dtype)
        if kh == h:  # one fused matmul for q, k and v
            qkv = cpu_fence(self._project(x_BxLxE, "qkv", (3, h, d), ("stack", "heads", "kv")))
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        else:
            q = self._project(x_BxLxE, "q", (h, d), ("heads", "kv"))
            kv = self._project(x_BxLxE, "kv", (2, kh, d), ("stack", "kv_heads", "kv"))
            k, v = kv[:, :, 0], kv[:, :, 1]
        q = constrain(q, ("batch", "length", "heads", "kv"))
        if s.is_llama:
            q, k = rope(q, positions_BxL, s.rope_theta), rope(k, positions_BxL, s.rope_theta)

        b, l = x_BxLxE.shape[:2]
        q_idx = jnp.broadcast_to(jnp.arange(l), (b, l))
        k_idx, k_seg, k_prefix, k_branch = q_idx, segment_ids_BxL, prefix_BxL, branches_BxL
        if self.decode:
            k, v, k_idx, k_seg, q_idx, k_prefix, k_branch = self._update_cache(k, v, segment_ids_BxL, prefix_BxL,
                                                                              branches_BxL)

        impl = choose_implementation(s.attention, s.dtype)
        plain_causal = not self.decode and prefix_BxL is None and branches_BxL is None
        if impl == "splash" and plain_causal:
            out = splash_attention(q, k, v, segment_ids_BxL)
        elif impl == "flash":
            out = flash_attention(q, k, v, q_idx, k_idx, segment_ids_BxL, k_seg, k_prefix, branches_BxL,
                                  k_branch, block=s.attention_block, causal_skip=not self.decode)
        else:
            mask = attention_mask(q_idx, k_idx, segment_ids_BxL, k_seg, k_prefix, branches_BxL, k_branch)
            kernel = {"cudnn": cudnn_attention, "naive": naive_attention}.get(impl, xla_attention)
            out = kernel(q, k, v, mask)
        out = constrain(out, ("batch", "length", "heads", "kv"))
        w_out = self.param("out_kernel", nn.with_logical_partitioning(
            nn.initializers.normal(0.02 / (2 * s.n_layer) ** 0.5), ("heads", "kv", "embed")),
            (h, d, s.d_model), jnp.dtype(s.param_dtype))
        y = jnp.einsum("blhd,hde->ble", out, weight(w_out, s, (0, 1)))
        if s.use_bias:
            y = y + self.param("out_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                               (s.d_model,), jnp.dtype(s.param_dtype)).astype(dtype)
        return nn.Dropout(s.dropout)(y, deterministic=deterministic)

    def _project(self, x_BxLxE, name, shape, axes):
        """x @ W for W of shape (E, *shape), with a bias unless LLaMA."""
        s = self.spec
        w = self.param(f"{name}_kernel", nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                                        ("embed", *axes)),
                       (s.d_model, *shape), jnp.dtype(s.param_dtype))
        letters = "xyz"[:len(shape)]
        y = jnp.einsum(f"ble,e{letters}->bl{letters}", x_BxLxE, weight(w, s, (0,)))
        if s.use_bias:
            y = y + self.param(f"{name}_bias", nn.with_logical_partitioning(nn.initializers.zeros, axes),
                               shape, jnp.dtype(s.param_dtype)).astype(x_BxLxE.dtype)
        return y

    def _update_cache(self, k_BxLxKxD, v_BxLxKxD, seg_BxL, prefix_BxL=None, branch_BxL=None):
        """Write the new keys/values at the cache index; return the whole cache to attend over.

        Prefix flags matter only among the tokens written together (a prompt's prefill): every
        older key already lies before any new query, so the flags are not kept. Branch ids
        (`model.line_memory`) are kept with the keys: a later token must still not see an old line's words."""
        s = self.spec
        b, l, kh, d = k_BxLxKxD.shape
        shape = (b, s.max_seq_len, kh, d)
        ck = self.variable("cache", "cached_key", jnp.zeros, shape, k_BxLxKxD.dtype)
        cv = self.variable("cache", "cached_value", jnp.zeros, shape, v_BxLxKxD.dtype)
        cs = self.variable("cache", "cached_segment", jnp.zeros, (b, s.max_seq_len), jnp.int32)
        ci = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
        i = ci.value
        ck.value = jax.lax.dynamic_update_slice(ck.value, k_BxLxKxD, (0, i, 0, 0))
        cv.value = jax.lax.dynamic_update_slice(cv.value, v_BxLxKxD, (0, i, 0, 0))
        cs.value = jax.lax.dynamic_update_slice(cs.value, seg_BxL.astype(jnp.int32), (0, i))
        ci.value = i + l
        k_idx = jnp.broadcast_to(jnp.arange(s.max_seq_len), (b, s.max_seq_len))
        q_idx = jnp.broadcast_to(i + jnp.arange(l), (b, l))
        k_prefix = None if prefix_BxL is None else jax.lax.dynamic_update_slice(
            jnp.zeros((b, s.max_seq_len), bool), prefix_BxL.astype(bool), (0, i))
        k_branch = None
        if branch_BxL is not None:
            cb = self.variable("cache", "cached_branch", jnp.zeros, (b, s.max_seq_len), jnp.int32)
            cb.value = jax.lax.dynamic_update_slice(cb.value, branch_BxL.astype(jnp.int32), (0, i))
            k_branch = cb.value
        return ck.value, cv.value, k_idx, cs.value, q_idx, k_prefix, k_branch
