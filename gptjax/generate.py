"""Sampling: batched decoding with a KV cache, jit-compiled.

The prompt is written into the cache in one call (prefill), then tokens come
one at a time inside `lax.scan`. A sequence longer than the model's context is
continued from its last half, as nanoGPT crops its context.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gptjax.transformer import Transformer


def sample_logits(logits_BxV, rng, temperature: float, top_k: int, top_p: float):
    """Next tokens from logits: greedy at temperature 0, else top-k / nucleus sampling."""
    if temperature <= 0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits = logits_BxV.astype(jnp.float32) / temperature
    neg = jnp.finfo(jnp.float32).min
    if top_k and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, neg, logits)
    if 0.0 < top_p < 1.0:
        sorted_desc = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the top token always stays)
        keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p
        cutoff = jnp.min(jnp.where(keep, sorted_desc, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, neg, logits)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("spec", "n_new", "temperature", "top_k", "top_p"))
def _decode_window(params, context_BxP, rng, *, spec, n_new, temperature, top_k, top_p):
    """Prefill `context`, then sample `n_new` tokens with the cache."""
    model = Transformer(spec, decode=True)
    b, p = context_BxP.shape
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((b, 1), jnp.int32)))["cache"]
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    positions = jnp.broadcast_to(jnp.arange(p), (b, p))
    logits, vars_ = model.apply({"params": params, "cache": cache}, context_BxP, positions, mutable=["cache"])
    first = sample_logits(logits[:, -1], jax.random.fold_in(rng, p), temperature, top_k, top_p)

    def body(carry, i):
        cache, token = carry
        pos = jnp.full((b, 1), p + i, jnp.int32)
        logits, v = model.apply({"params": params, "cache": cache}, token[:, None], pos, mutable=["cache"])
        nxt = sample_logits(logits[:, -1], jax.random.fold_in(rng, p + i + 1), temperature, top_k, top_p)
        return (v["cache"], nxt), token

    (_, last), tokens = jax.lax.scan(body, (vars_["cache"], first), jnp.arange(n_new - 1))
    return jnp.concatenate([tokens.T, last[:, None]], axis=1)


def generate(params, spec, prompt_BxP, max_new_tokens: int, rng, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0):
    """Continue each row of `prompt_BxP` by `max_new_tokens` tokens; returns prompt + new."""
    out = jnp.asarray(prompt_BxP, jnp.int32)
    remaining, window = max_new_tokens, 0
    while remaining > 0:
        # the context the cache holds: everything if it fits, else the last half window
        keep = out.shape[1] if out.shape[1] < spec.max_seq_len else spec.max_seq_len // 2
        context = out[:, -keep:]
        n_new = min(remaining, spec.max_seq_len - keep)
        new = _decode_window(params, context, jax.random.fold_in(rng, window), spec=spec, n_new=n_new,
                             temperature=float(temperature), top_k=int(top_k), top_p=float(top_p))
        out = jnp.concatenate([out, new], axis=1)
        remaining -= n_new
        window += 1
    return out


def generate_without_cache(params, spec, prompt_BxP, max_new_tokens: int, rng, temperature: float = 1.0,
                           top_k: int = 0, top_p: float = 1.0):
    """Reference: rerun the whole sequence for every token (same random stream as `generate`).

    The sequence lives in a fixed max_seq_len buffer; causality makes the unused
    tail irrelevant, and one compiled forward serves every step.
    """
    model = Transformer(spec)
    b, p = prompt_BxP.shape
    assert p + max_new_tokens <= spec.max_seq_len, "the reference decodes within one window"
    forward = jax.jit(lambda buf: model.apply({"params": params}, buf))
    buf = jnp.zeros((b, spec.max_seq_len), jnp.int32).at[:, :p].set(jnp.asarray(prompt_BxP, jnp.int32))
    rng = jax.random.fold_in(rng, 0)
    for i in range(max_new_tokens):
        logits = forward(buf)[:, p + i - 1]
        nxt = sample_logits(logits, jax.random.fold_in(rng, p + i), temperature, top_k, top_p)
        buf = buf.at[:, p + i].set(nxt)
    return buf[:, : p + max_new_tokens]
