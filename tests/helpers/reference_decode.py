"""Decoding without a KV cache: the references the cached decoders are tested against.

Each re-runs the whole sequence for every new token, so nothing is cached and
nothing can go stale; slow, and only for tests.
"""
import jax
import jax.numpy as jnp
import numpy as np

from gptjax.model.decode import sample_logits
from gptjax.model.multimodal import MultimodalLM
from gptjax.model.transformer import Transformer


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
        nxt = sample_logits(logits, jax.random.fold_in(rng, i), temperature, top_k, top_p)
        buf = buf.at[:, p + i].set(nxt)
    return buf[:, : p + max_new_tokens]


def greedy_without_cache(params, spec, media, prompt: dict, n_new: int):
    """Reference for tests: re-run the whole sequence for every new token (no cache)."""
    model = MultimodalLM(spec, media)
    batch = {k: np.asarray(v) for k, v in prompt.items() if k != "prompt_len"}
    lengths = np.asarray(prompt["prompt_len"])
    b, p = batch["inputs"].shape
    width = p + n_new
    for key in ("inputs", "positions", "segment_ids"):
        batch[key] = np.pad(batch[key], ((0, 0), (0, n_new)))
    forward = jax.jit(lambda bt: model.apply({"params": params}, bt, method="from_batch"))
    out = np.zeros((b, n_new), np.int32)
    for i in range(n_new):
        logits = np.asarray(forward(batch))
        rows = np.arange(b)
        nxt = logits[rows, lengths - 1 + i].argmax(-1)
        out[:, i] = nxt
        # the new token goes right after each row's real tokens (rows' prompts differ in length)
        batch["inputs"][rows, lengths + i] = nxt
        batch["positions"][rows, lengths + i] = lengths + i
        batch["segment_ids"][rows, lengths + i] = 1
        assert (lengths + i < width).all()
    return out


def greedy_past_the_window(params, spec, prompt_BxP, max_new_tokens: int):
    """Reference for text generation longer than the context: greedy, re-running the model on the
    current context for every token. The context is the whole sequence until it fills max_seq_len;
    then it restarts from the sequence's last half (positions from 0 again), as nanoGPT crops.
    Returns prompt + new tokens, and the gap between the best and second-best logit at each step."""
    model = Transformer(spec)
    window = spec.max_seq_len
    forward = jax.jit(lambda buf: model.apply({"params": params}, buf))
    out = np.asarray(prompt_BxP, np.int32)
    start, gaps = 0, []
    for _ in range(max_new_tokens):
        if out.shape[1] - start >= window:
            start = out.shape[1] - window // 2
        context = out[:, start:]
        buf = np.zeros((out.shape[0], window), np.int32)  # one shape: one compilation; causality hides the tail
        buf[:, :context.shape[1]] = context
        logits = np.asarray(forward(buf))[:, context.shape[1] - 1]
        top2 = np.sort(logits, axis=-1)[:, -2:]
        gaps.append(top2[:, 1] - top2[:, 0])
        out = np.concatenate([out, logits.argmax(-1).astype(np.int32)[:, None]], axis=1)
    return out, np.min(gaps)


def cached_logits(params, spec, tokens_BxL, prefill: int):
    """Logits of a cached text decoder: the first `prefill` tokens in one call, then one at a time;
    equal to one full forward when the cache is right."""
    model = Transformer(spec, decode=True)
    b = tokens_BxL.shape[0]
    cache = jax.tree.map(jnp.zeros_like, model.init(jax.random.key(0), tokens_BxL[:, :1])["cache"])
    logits, v = model.apply({"params": params, "cache": cache}, tokens_BxL[:, :prefill],
                            jnp.broadcast_to(jnp.arange(prefill), (b, prefill)), mutable=["cache"])
    steps = [logits]
    for i in range(prefill, tokens_BxL.shape[1]):
        logits, v = model.apply({"params": params, "cache": v["cache"]}, tokens_BxL[:, i:i + 1], jnp.full((b, 1), i),
                                mutable=["cache"])
        steps.append(logits)
    return jnp.concatenate(steps, axis=1)
