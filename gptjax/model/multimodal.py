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

import flax.linen as nn
import jax
import jax.numpy as jnp

from gptjax.model.encoders import AudioEncoder, ImageEncoder
from gptjax.model.projectors import make_projector
from gptjax.model.transformer import Transformer
from gptjax.special_tokens import AUDIO_ID, IMAGE_ID

MODALITIES = (("image", "images", IMAGE_ID), ("audio", "audio", AUDIO_ID))


def splice_row(embeds_LxE, tokens_L, media_KxE, placeholder_id: int):
    """Replace the k-th `placeholder_id` token's embedding by media_KxE[k], in order."""
    is_media = tokens_L == placeholder_id
    rank = jnp.cumsum(is_media) - 1
    gathered = jnp.take(media_KxE, jnp.clip(rank, 0, media_KxE.shape[0] - 1), axis=0)
    return jnp.where(is_media[:, None], gathered.astype(embeds_LxE.dtype), embeds_LxE)


splice = jax.vmap(splice_row, in_axes=(0, 0, 0, None))


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
        prefix = None
        if self.media.mask == "prefix":  # media + prompt: the first prefix_len tokens of each row
            length = batch["inputs"].shape[1]
            prefix = jnp.arange(length)[None, :] < batch["prefix_len"][:, None]
        return self.llm(positions_BxL=batch.get("positions"), segment_ids_BxL=batch.get("segment_ids"),
                        prefix_BxL=prefix, embeds_BxLxE=self.embed_batch(batch))

    def step(self, tokens_BxL, positions_BxL):
        """Text tokens only (decoding after the prefill; the cache holds the media)."""
        return self.llm(tokens_BxL, positions_BxL)
