"""One decoder for text, images and audio: encoders + projectors spliced into the token stream.

The data pipeline writes each image (audio clip) as a run of M `<image>`
(`<audio>`) placeholder tokens, M = the projector's tokens per item. The model
embeds the text, encodes and projects every media slot of the batch, and
replaces the k-th placeholder of a row by the k-th projected vector of that
row (a gather with cumsum indices, vmapped over rows: no Python loop over the
batch). Positions are those of the expanded sequence. The decoder then runs
with a causal mask, or a prefix-LM mask (bidirectional over media + prompt)
when `media.mask == "prefix"`.

Batch keys: inputs, targets, loss_mask, positions, segment_ids, prefix_len
[B] and, per modality present in the experiment, images [B, Ni, H, W] +
image_count [B], audio [B, Na, T] + audio_count [B]. Parameters live under
llm/, image_encoder/, image_projector/, audio_encoder/, audio_projector/ (what
`optimizer.freeze` regexes match).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gptjax.data.media_tokenizer import AUDIO_ID, IMAGE_ID
from gptjax.encoders import AudioEncoder, ImageEncoder
from gptjax.generate import sample_logits
from gptjax.projectors import make_projector
from gptjax.transformer import Transformer

MODALITIES = (("image", "images", IMAGE_ID), ("audio", "audio", AUDIO_ID))


def splice_row(embeds_LxE, tokens_L, media_KxE, placeholder_id: int):
    """Replace the k-th `placeholder_id` token's embedding by media_KxE[k], in order."""
    is_media = tokens_L == placeholder_id
    rank = jnp.cumsum(is_media) - 1
    gathered = jnp.take(media_KxE, jnp.clip(rank, 0, media_KxE.shape[0] - 1), axis=0)
    return jnp.where(is_media[:, None], gathered.astype(embeds_LxE.dtype), embeds_LxE)


splice = jax.vmap(splice_row, in_axes=(0, 0, 0, None))


def check_placeholders(batch: dict, media) -> None:
    """Host-side check: every row holds exactly count x M placeholders per modality (ValueError if not)."""
    tokens = np.asarray(batch["inputs"])
    for modality, key, token_id in MODALITIES:
        per_item = media.tokens_for(modality)
        counts = np.asarray(batch.get(f"{modality}_count", np.zeros(len(tokens), np.int32)))
        found = (tokens == token_id).sum(axis=1)
        bad = np.nonzero(found != counts * per_item)[0]
        if len(bad):
            r = int(bad[0])
            raise ValueError(f"row {r}: {int(found[r])} <{modality}> placeholder tokens, but {int(counts[r])} "
                             f"{modality} item(s) x {per_item} tokens each = {int(counts[r]) * per_item} expected")


class MultimodalLM(nn.Module):
    """Encoders and projectors around the decoder `Transformer`; see the module docstring."""

    spec: object  # the decoder's ModelSpec
    media: object  # MediaSpec
    decode: bool = False
    deterministic: bool = True

    def setup(self):
        s, m = self.spec, self.media
        self.llm = Transformer(s, self.decode, self.deterministic)
        kw = dict(dtype=s.dtype, param_dtype=s.param_dtype)
        if m.image is not None:
            self.image_encoder = ImageEncoder(m.image, deterministic=self.deterministic, **kw)
            self.image_projector = make_projector(m.image_projector, s.d_model, m.image_tokens,
                                                  heads=m.resampler_heads, depth=m.resampler_depth, **kw)
        if m.audio is not None:
            self.audio_encoder = AudioEncoder(m.audio, deterministic=self.deterministic, **kw)
            self.audio_projector = make_projector(m.audio_projector, s.d_model, m.audio_tokens,
                                                  heads=m.resampler_heads, depth=m.resampler_depth, **kw)

    def media_tokens(self, modality: str, items_BxNx):
        """Projected tokens [B, N * M, E] of every media slot (empty slots included)."""
        b, n = items_BxNx.shape[:2]
        flat = items_BxNx.reshape(b * n, *items_BxNx.shape[2:])
        encoder = self.image_encoder if modality == "image" else self.audio_encoder
        projector = self.image_projector if modality == "image" else self.audio_projector
        tokens = projector(encoder(flat))
        return tokens.reshape(b, n * tokens.shape[1], tokens.shape[2])

    def embed_batch(self, batch):
        """Token embeddings of `inputs` with every placeholder replaced by its media vector."""
        tokens = batch["inputs"]
        x_BxLxE = self.llm.embed(tokens)
        for modality, key, token_id in MODALITIES:
            if getattr(self.media, modality) is not None and key in batch:
                x_BxLxE = splice(x_BxLxE, tokens, self.media_tokens(modality, batch[key]), token_id)
        return x_BxLxE

    def from_batch(self, batch):
        """Logits [B, L, V] of a batch (training, evaluation, and the prefill when decoding)."""
        prefix = batch.get("prefix_len") if self.media.mask == "prefix" else None
        return self.llm(positions_BxL=batch.get("positions"), segment_ids_BxL=batch.get("segment_ids"),
                        prefix_len_B=prefix, embeds_BxLxE=self.embed_batch(batch))

    def step(self, tokens_BxL, positions_BxL):
        """Text tokens only (decoding after the prefill; the cache holds the media)."""
        return self.llm(tokens_BxL, positions_BxL)


# ------------------------------------------------------------------ decoding

@functools.partial(jax.jit, static_argnames=("model", "n_new", "temperature", "top_k"))
def _decode(params, prompt, allowed_NxV, rng, *, model, n_new, temperature, top_k):
    b = prompt["inputs"].shape[0]
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), prompt, method="from_batch"))["cache"]
    cache = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
    logits, v = model.apply({"params": params, "cache": cache}, prompt, method="from_batch", mutable=["cache"])
    lengths = prompt["prompt_len"]
    last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]
    neg = jnp.finfo(jnp.float32).min

    def pick(logits_BxV, i):
        return sample_logits(jnp.where(allowed_NxV[i], logits_BxV, neg), jax.random.fold_in(rng, i),
                             temperature, top_k, 1.0)

    def body(carry, i):
        cache, token = carry
        logits, v = model.apply({"params": params, "cache": cache}, token[:, None], (lengths + i)[:, None],
                                method="step", mutable=["cache"])
        return (v["cache"], pick(logits[:, -1], i + 1)), token

    first = pick(last, 0)
    (_, final), tokens = jax.lax.scan(body, (v["cache"], first), jnp.arange(n_new - 1))
    return jnp.concatenate([tokens.T, final[:, None]], axis=1).reshape(b, n_new)


def generate(params, spec, media, prompt: dict, n_new: int, rng=None, temperature: float = 0.0,
             top_k: int = 0, allowed_NxV=None):
    """Continue right-padded prompts by `n_new` tokens with the KV cache (greedy at temperature 0).

    `prompt` is a batch without targets: inputs [B, P] (padding: segment id 0),
    positions, segment_ids, prefix_len, prompt_len [B] and the media keys. The
    prompt fills the cache in one call (embeddings with media spliced in);
    then tokens come one at a time, row r continuing at position prompt_len[r].
    `allowed_NxV` (bool) restricts step i to some tokens (e.g. pixel tokens).
    """
    p = prompt["inputs"].shape[1]
    if p + n_new > spec.max_seq_len:
        raise ValueError(f"prompt of {p} tokens + {n_new} new exceeds model.max_seq_len={spec.max_seq_len}")
    if allowed_NxV is None:
        allowed_NxV = np.ones((n_new, spec.vocab_size), bool)
    model = MultimodalLM(spec, media, decode=True)
    rng = jax.random.key(0) if rng is None else rng
    return _decode(params, {k: jnp.asarray(v) for k, v in prompt.items()}, jnp.asarray(allowed_NxV), rng,
                   model=model, n_new=n_new, temperature=float(temperature), top_k=int(top_k))


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
