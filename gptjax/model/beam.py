"""Beam search with the KV cache, batched and jit-compiled.

Every prompt keeps `beam` hypotheses; the cache holds B x beam rows and is reordered
by each step's surviving parents. A hypothesis that emits <eos> is finished: from
then on its only continuation is <eos> at no cost, so its score stays as it was and
it keeps competing with the live ones. At the end each hypothesis is ranked by its
log probability over GNMT's length penalty ((5 + length) / 6) ** alpha, with length
counted up to and including <eos> (alpha 0: raw log probability).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gptjax.model.decode import empty_cache

NEG = -1e30  # a score no hypothesis can reach; finite, so that sums and ratios stay finite


def length_penalty(lengths, alpha: float):
    return ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** alpha


@functools.partial(jax.jit, static_argnames=("model", "n_new", "beam", "eos_id", "alpha", "batch_axis"))
def beam_search(params, prompt: dict, *, model, n_new: int, beam: int, eos_id: int, alpha: float = 0.6,
                batch_axis: int = 0):
    """(tokens [B, n_new] of each prompt's best hypothesis, <eos> after its end; their scores [B]).

    `prompt` is a right-padded prompt batch (inputs, positions, segment_ids, prompt_len);
    `batch_axis` is the batch axis of the cache's arrays (1 when the layers are scanned).
    """
    b, k = prompt["inputs"].shape[0], beam
    cache = empty_cache(model, prompt)
    logits, v = model.apply({"params": params, "cache": cache}, prompt, method="from_batch", mutable=["cache"])
    lengths = prompt["prompt_len"]
    last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]  # [B, V]
    grow = lambda x: jnp.repeat(x, k, axis=batch_axis) if x.ndim > batch_axis else x  # noqa: E731
    cache = jax.tree.map(grow, v["cache"])
    positions = jnp.repeat(lengths, k)  # of each row's next token
    vocab = last.shape[-1]
    eos_only = jnp.where(jnp.arange(vocab) == eos_id, 0.0, NEG)

    def step(carry, i):
        cache, logits_BKxV, scores, tokens, finished, lens = carry
        logp = jax.nn.log_softmax(logits_BKxV.astype(jnp.float32), axis=-1).reshape(b, k, vocab)
        logp = jnp.where(finished[..., None], eos_only, logp)
        scores, flat = jax.lax.top_k((scores[..., None] + logp).reshape(b, k * vocab), k)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        pick = lambda x: jnp.take_along_axis(x, parent, axis=1)  # noqa: E731
        lens = pick(lens) + ~pick(finished)
        finished = pick(finished) | (token == eos_id)
        tokens = jnp.take_along_axis(tokens, parent[..., None], axis=1).at[:, :, i].set(token)
        rows = (jnp.arange(b)[:, None] * k + parent).reshape(-1)
        cache = jax.tree.map(lambda x: jnp.take(x, rows, axis=batch_axis) if x.ndim > batch_axis else x, cache)
        logits, v = model.apply({"params": params, "cache": cache}, token.reshape(-1, 1),
                                (positions + i)[:, None], method="step", mutable=["cache"])
        return (v["cache"], logits[:, -1], scores, tokens, finished, lens), None

    first = jnp.repeat(last, k, axis=0)
    scores = jnp.where(jnp.arange(k) == 0, 0.0, NEG)[None].repeat(b, axis=0)  # one live hypothesis to start
    init = (cache, first, scores, jnp.zeros((b, k, n_new), jnp.int32), jnp.zeros((b, k), bool),
            jnp.zeros((b, k), jnp.int32))
    (_, _, scores, tokens, _, lens), _ = jax.lax.scan(step, init, jnp.arange(n_new))
    ranked = scores / length_penalty(lens, alpha)
    best = jnp.argmax(ranked, axis=1)
    out = jnp.take_along_axis(tokens, best[:, None, None], axis=1)[:, 0]
    return out, jnp.take_along_axis(ranked, best[:, None], axis=1)[:, 0]
