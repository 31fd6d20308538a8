"""Decoding with a KV cache: one loop for text and multimodal models, jit-compiled.

A prompt batch (right-padded rows; padding has segment id 0) is written into
the cache in one call (prefill, `model.from_batch`); then tokens come one at a
time inside `lax.scan` (`model.step`), row r continuing at position
prompt_len[r]. Text sequences longer than the model's context are continued
from their last half, as nanoGPT crops its context.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gptjax.errors import ConfigError
from gptjax.model.multimodal import MultimodalLM
from gptjax.model.transformer import Transformer

NEG = float(jnp.finfo(jnp.float32).min)


def sample_logits(logits_BxV, rng, temperature: float, top_k: int, top_p: float):
    """Next tokens from logits: greedy at temperature 0, else top-k / nucleus sampling."""
    if temperature <= 0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits = logits_BxV.astype(jnp.float32) / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, NEG, logits)
    if 0.0 < top_p < 1.0:
        sorted_desc = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the top token always stays)
        keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p
        cutoff = jnp.min(jnp.where(keep, sorted_desc, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, NEG, logits)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def empty_cache(model, prompt):
    """Zeros shaped like the model's KV cache for a prompt batch of this shape."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), prompt, method="from_batch"))["cache"]
    return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)


@functools.partial(jax.jit, static_argnames=("model", "n_new", "temperature", "top_k", "top_p"))
def decode(params, prompt: dict, rng, allowed_NxV=None, *, model, n_new: int, temperature: float = 0.0,
           top_k: int = 0, top_p: float = 1.0):
    """`n_new` tokens after each row of `prompt` [B, n_new]; `allowed_NxV` (bool) restricts step i's choice."""
    cache = empty_cache(model, prompt)
    logits, v = model.apply({"params": params, "cache": cache}, prompt, method="from_batch", mutable=["cache"])
    lengths = prompt["prompt_len"]
    last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]

    def pick(logits_BxV, i):
        if allowed_NxV is not None:
            logits_BxV = jnp.where(allowed_NxV[i], logits_BxV, NEG)
        return sample_logits(logits_BxV, jax.random.fold_in(rng, i), temperature, top_k, top_p)

    def body(carry, i):
        cache, token = carry
        logits, v = model.apply({"params": params, "cache": cache}, token[:, None], (lengths + i)[:, None],
                                method="step", mutable=["cache"])
        return (v["cache"], pick(logits[:, -1], i + 1)), token

    first = pick(last, 0)
    (_, final), tokens = jax.lax.scan(body, (v["cache"], first), jnp.arange(n_new - 1))
    return jnp.concatenate([tokens.T, final[:, None]], axis=1).reshape(prompt["inputs"].shape[0], n_new)


def text_prompt(tokens_BxP) -> dict:
    """A prompt batch of equal-length token rows."""
    b, p = tokens_BxP.shape
    return {"inputs": jnp.asarray(tokens_BxP, jnp.int32), "positions": jnp.broadcast_to(jnp.arange(p), (b, p)),
            "segment_ids": jnp.ones((b, p), jnp.int32), "prompt_len": jnp.full((b,), p, jnp.int32)}


def generate(params, spec, prompt_BxP, max_new_tokens: int, rng, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0):
    """Continue each row of a text model's `prompt_BxP` by `max_new_tokens` tokens; returns prompt + new.

    Past the context window, each window continues from the last half of the sequence.
    """
    model = Transformer(spec, decode=True)
    out = jnp.asarray(prompt_BxP, jnp.int32)
    remaining, window = max_new_tokens, 0
    while remaining > 0:
        # the context the cache holds: everything if it fits, else the last half window
        keep = out.shape[1] if out.shape[1] < spec.max_seq_len else spec.max_seq_len // 2
        n_new = min(remaining, spec.max_seq_len - keep)
        new = decode(params, text_prompt(out[:, -keep:]), jax.random.fold_in(rng, window), model=model,
                     n_new=n_new, temperature=float(temperature), top_k=int(top_k), top_p=float(top_p))
        out = jnp.concatenate([out, new], axis=1)
        remaining -= n_new
        window += 1
    return out


def generate_media(params, spec, media, prompt: dict, n_new: int, rng=None, temperature: float = 0.0,
                   top_k: int = 0, allowed_NxV=None):
    """Continue a multimodal model's right-padded prompts (gptjax/data/examples.py: prompt_batch) by `n_new`
    tokens, greedily at temperature 0. `allowed_NxV` (bool) restricts step i to some tokens (e.g. pixels)."""
    p = prompt["inputs"].shape[1]
    if p + n_new > spec.max_seq_len:
        raise ValueError(f"prompt of {p} tokens + {n_new} new exceeds model.max_seq_len={spec.max_seq_len}")
    rng = jax.random.key(0) if rng is None else rng
    allowed = None if allowed_NxV is None else jnp.asarray(allowed_NxV)
    return decode(params, {k: jnp.asarray(v) for k, v in prompt.items()}, rng, allowed,
                  model=MultimodalLM(spec, media, decode=True), n_new=n_new, temperature=float(temperature),
                  top_k=int(top_k))


def sample_text(params, spec, tokenizer, prompt: str = "\n", n_tokens: int = 200, num_samples: int = 1,
                temperature: float = 0.8, top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """`num_samples` continuations of `prompt`, decoded by `tokenizer` (prompt included)."""
    try:
        ids = tokenizer.encode(prompt) or [0]
    except ValueError as e:
        raise ConfigError(f"the prompt cannot be encoded by this run's tokenizer: {e}") from None
    prompt_BxP = np.tile(np.asarray(ids, np.int32)[None, -spec.max_seq_len:], (num_samples, 1))
    out = generate(params, spec, prompt_BxP, n_tokens, jax.random.key(seed), temperature, top_k, top_p)
    return [tokenizer.decode(row.tolist()) for row in np.asarray(out)]
