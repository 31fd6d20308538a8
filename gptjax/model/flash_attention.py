"""Blocked (flash-style) attention in plain JAX: fast on the CPU, small in memory for long sequences.

The queries are cut into blocks. Each block attends only to the keys it can see
(under a causal mask, those up to the block's last position: about half the
work of full attention is skipped) with an exact softmax in f32. The forward
pass keeps only the output and the per-row log-sum-exp; the backward pass
recomputes each block's probabilities (a custom VJP), so the L x S attention
matrix is never stored, only one block of it at a time.

Shapes in names: B batch, L query length, S key length, H query heads, K
key/value heads, G = H / K query heads per key head, D head dim, Q query block.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gptjax.model.masks import attention_mask

NEG = float(jnp.finfo(jnp.float32).min)


def _blocks(l: int, s: int, block: int, causal: bool):
    """Static (query start, query end, visible key end) triples."""
    out = []
    for start in range(0, l, block):
        end = min(start + block, l)
        # with causal keys at absolute positions 0..S-1 and queries at S-L..S-1
        out.append((start, end, min(s, s - l + end) if causal else s))
    return tuple(out)


def _scores(q_BxKxRxD, k_BxKxSxD, scale):
    """Scores of R = Q*G query rows (query-major, then the heads sharing a key head)."""
    return jnp.einsum("bkrd,bksd->bkrs", q_BxKxRxD, k_BxKxSxD, preferred_element_type=jnp.float32) * scale


def _mask(mask_parts, qs, qe, ke, g):
    """The block's mask as B x 1 x (Q*G) x S, rows in the order of `_scores`."""
    q_idx, k_idx, q_seg, k_seg, prefix, q_branch, k_branch = mask_parts
    rows = lambda x: None if x is None else x[:, qs:qe]  # noqa: E731
    keys = lambda x: None if x is None else x[:, :ke]  # noqa: E731
    m = attention_mask(rows(q_idx), keys(k_idx), rows(q_seg), keys(k_seg), keys(prefix), rows(q_branch),
                       keys(k_branch))
    b, _, q, s = m.shape
    return jnp.broadcast_to(m[:, :, :, None], (b, 1, q, g, s)).reshape(b, 1, q * g, s)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _flash(q, k, v, mask_parts, blocks, g):
    return _flash_fwd(q, k, v, mask_parts, blocks, g)[0]


def _flash_fwd(q, k, v, mask_parts, blocks, g):
    scale = q.shape[-1] ** -0.5
    outs, lses = [], []
    for qs, qe, ke in blocks:
        q_rows = q[:, :, qs * g:qe * g]
        if outs:  # one block at a time: its scores are freed before the next block's exist (the CPU
            # compiler drops such barriers and schedules freely; measured there, the forward pass still
            # holds under half of plain attention's temporaries, the backward about 80%)
            q_rows, _ = jax.lax.optimization_barrier((q_rows, outs[-1]))
        mask = _mask(mask_parts, qs, qe, ke, g)
        s = jnp.where(mask, _scores(q_rows, k[:, :, :ke], scale), NEG)
        m = jnp.max(s, axis=-1, keepdims=True)
        e = jnp.where(mask, jnp.exp(s - m), 0.0)  # a row that sees no key gets zeros, not NaN
        z = jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), 1e-30)
        outs.append(jnp.einsum("bkrs,bksd->bkrd", (e / z).astype(v.dtype), v[:, :, :ke],
                               preferred_element_type=jnp.float32).astype(q.dtype))
        lses.append(m + jnp.log(z))
    out = jnp.concatenate(outs, axis=2)
    return out, (q, k, v, mask_parts, out, lses)


def _flash_bwd(blocks, g, res, dout):
    q, k, v, mask_parts, out, lses = res
    scale = q.shape[-1] ** -0.5
    dq_parts = []
    dk = jnp.zeros(k.shape, jnp.float32)
    dv = jnp.zeros(v.shape, jnp.float32)
    # rowsum(dO * O): the softmax backward's correction term
    delta = jnp.sum(dout.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)
    for (qs, qe, ke), lse in zip(blocks, lses):
        rows = slice(qs * g, qe * g)
        q_rows, dk, dv = jax.lax.optimization_barrier((q[:, :, rows], dk, dv))  # one block at a time
        mask = _mask(mask_parts, qs, qe, ke, g)
        p = jnp.where(mask, jnp.exp(_scores(q_rows, k[:, :, :ke], scale) - lse), 0.0)
        do = dout[:, :, rows]
        dv = dv.at[:, :, :ke].add(jnp.einsum("bkrs,bkrd->bksd", p.astype(do.dtype), do,
                                             preferred_element_type=jnp.float32))
        dp = jnp.einsum("bkrd,bksd->bkrs", do, v[:, :, :ke], preferred_element_type=jnp.float32)
        ds = (p * (dp - delta[:, :, rows]) * scale).astype(q.dtype)
        dq_parts.append(jnp.einsum("bkrs,bksd->bkrd", ds, k[:, :, :ke], preferred_element_type=jnp.float32))
        dk = dk.at[:, :, :ke].add(jnp.einsum("bkrs,bkrd->bksd", ds, q_rows,
                                             preferred_element_type=jnp.float32))
    dq = jnp.concatenate(dq_parts, axis=2).astype(q.dtype)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jax.dtypes.float0), mask_parts)
    return dq, dk.astype(k.dtype), dv.astype(v.dtype), zeros


_flash.defvjp(_flash_fwd, _flash_bwd)


def flash_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, q_idx_BxL, k_idx_BxS, q_seg_BxL, k_seg_BxS,
                    k_prefix_BxS=None, q_branch_BxL=None, k_branch_BxS=None, *, block: int = 128,
                    causal_skip: bool = True):
    """Attention with the mask of `attention_mask`, computed one query block at a time.

    `causal_skip` drops the keys after each block's last query; it is exact only
    when queries and keys sit at increasing positions 0..S-1 (training, prefill)
    and no prefix is bidirectional, so the caller passes False otherwise.
    """
    b, l, h, d = q_BxLxHxD.shape
    s, kh = k_BxSxKxD.shape[1], k_BxSxKxD.shape[2]
    blocks = _blocks(l, s, max(1, block), causal_skip and k_prefix_BxS is None)
    g = h // kh
    # heads-major layout once, so that every block is a plain batched matmul over (B, K)
    q = jnp.transpose(q_BxLxHxD.reshape(b, l, kh, g, d), (0, 2, 1, 3, 4)).reshape(b, kh, l * g, d)
    k = jnp.transpose(k_BxSxKxD, (0, 2, 1, 3))
    v = jnp.transpose(v_BxSxKxD, (0, 2, 1, 3))
    mask_parts = (q_idx_BxL, k_idx_BxS, q_seg_BxL, k_seg_BxS, k_prefix_BxS, q_branch_BxL, k_branch_BxS)
    out = _flash(q, k, v, mask_parts, blocks, g)
    return jnp.transpose(out.reshape(b, kh, l, g, d), (0, 2, 1, 3, 4)).reshape(b, l, h, d)
