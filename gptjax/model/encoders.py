"""Media encoders: a ViT for images and a log-mel / conv / Transformer encoder for audio.

Both reuse the decoder's `Block` with every key visible (every token marked as
prefix makes the prefix-LM mask bidirectional), so attention kernels, logical
sharding names and parameter layout are the decoder's. Shapes: B batch,
N tokens, E encoder width, H/W image height/width, T samples, F frames, M mels.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from gptjax.config import ModelSpec
from gptjax.model.audio_frontend import audio_features
from gptjax.model.layers import dense, layer_norm
from gptjax.model.transformer import Block
from gptjax.parallel.rules import constrain


def block_spec(width: int, depth: int, heads: int, mlp_ratio: int, n_tokens: int, dtype: str,
               param_dtype: str, dropout: float = 0.0) -> ModelSpec:
    """The ModelSpec an encoder's blocks are built from (GPT-2 style: LayerNorm, GELU, biases)."""
    return ModelSpec(flavour="gpt2", n_layer=depth, n_head=heads, d_model=width, d_ff=mlp_ratio * width,
                     vocab_size=1, max_seq_len=n_tokens, attention="xla", dtype=dtype, param_dtype=param_dtype,
                     dropout=dropout)


def sincos_1d(n: int, dim: int) -> np.ndarray:
    """Fixed sinusoidal positions [n, dim] (Transformer paper layout: sines then cosines)."""
    freqs = 1.0 / 10000 ** (np.arange(dim // 2) / (dim // 2))
    angles = np.arange(n)[:, None] * freqs[None]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def sincos_2d(rows: int, cols: int, dim: int) -> np.ndarray:
    """Fixed 2-D positions [rows * cols, dim]: half the channels encode the row, half the column."""
    r = np.repeat(sincos_1d(rows, dim // 2), cols, axis=0)
    c = np.tile(sincos_1d(cols, dim // 2), (rows, 1))
    return np.concatenate([r, c], axis=1)


class BidirectionalStack(nn.Module):
    """`depth` decoder blocks where every token sees every token, then a final LayerNorm."""

    spec: ModelSpec
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BxNxE):
        b, n = x_BxNxE.shape[:2]
        positions = jnp.broadcast_to(jnp.arange(n), (b, n))
        segments = jnp.ones((b, n), jnp.int32)
        everything = jnp.ones((b, n), bool)  # every token a prefix: no causal mask
        for i in range(self.spec.n_layer):
            x_BxNxE, _ = Block(self.spec, False, self.deterministic, name=f"h_{i}")(
                x_BxNxE, positions, segments, everything)
        return layer_norm("ln_f", self.spec.dtype, self.spec.param_dtype)(x_BxNxE)


class ImageEncoder(nn.Module):
    """ViT: [B, H, W] grey images in [0, 1] -> [B, N, E] (N patches, or 1 with mean pooling)."""

    cfg: object  # ImageEncoderSpec
    dtype: str = "float32"
    param_dtype: str = "float32"
    deterministic: bool = True

    @nn.compact
    def __call__(self, images_BxHxW):
        c = self.cfg
        b, h, w = images_BxHxW.shape
        if h != c.image_size or w != c.image_size:
            raise ValueError(f"images are {h}x{w}; the encoder expects {c.image_size}x{c.image_size}")
        p, g = c.patch_size, c.grid
        patches = images_BxHxW.reshape(b, g, p, g, p).transpose(0, 1, 3, 2, 4).reshape(b, g * g, p * p)
        x = dense(c.width, "patch_embed", (None, "embed"), self.dtype, self.param_dtype)(
            patches.astype(self.dtype))
        if c.pos_emb == "learned":
            init = nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed"))
            row = self.param("row_embed", init, (g, c.width), self.param_dtype)
            col = self.param("col_embed", init, (g, c.width), self.param_dtype)
            pos = (row[:, None, :] + col[None, :, :]).reshape(g * g, c.width)
        else:
            pos = jnp.asarray(sincos_2d(g, g, c.width))
        x = constrain(x + pos.astype(self.dtype), ("batch", "length", "act_embed"))
        spec = block_spec(c.width, c.depth, c.heads, c.mlp_ratio, g * g, self.dtype, self.param_dtype, c.dropout)
        x = BidirectionalStack(spec, self.deterministic, name="blocks")(x)
        return x.mean(axis=1, keepdims=True) if c.pooling == "mean" else x


class AudioEncoder(nn.Module):
    """[B, T] waveforms at the model rate -> [B, N, E * frame_stack] (or [B, 1, E] with mean pooling)."""

    cfg: object  # AudioEncoderSpec
    dtype: str = "float32"
    param_dtype: str = "float32"
    deterministic: bool = True

    def _conv(self, features, kernel, name, axes):
        return nn.Conv(features, kernel, strides=(2,) * len(kernel), padding=((1, 1),) * len(kernel), name=name,
                       dtype=self.dtype, param_dtype=self.param_dtype,
                       kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
                       bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[-1],)))

    def _stem_1d(self, x_BxFxM):
        """Two stride-2 convolutions over time, mels as channels: [B, F/4, E]."""
        for i in range(2):
            x_BxFxM = nn.gelu(self._conv(self.cfg.width, (3,), f"conv_{i}", (None, None, "embed"))(x_BxFxM))
        return x_BxFxM

    def _stem_2d(self, x_BxFxM):
        """Two stride-2 3x3 convolutions over (time, mel), then a linear map of each frame's
        channels x mels to the width: [B, F/4, E]. Sharing filters across frequency makes
        the features shift-tolerant along the mel axis (a speaker's formants move there)."""
        x = x_BxFxM[..., None]
        for i in range(2):
            x = nn.gelu(self._conv(self.cfg.stem_channels, (3, 3), f"conv2d_{i}", (None, None, None, None))(x))
        b, f = x.shape[:2]
        return dense(self.cfg.width, "stem_proj", (None, "embed"), self.dtype, self.param_dtype)(
            x.reshape(b, f, -1))

    @nn.compact
    def __call__(self, wave_BxT):
        c = self.cfg
        if wave_BxT.shape[-1] != c.clip_samples:
            raise ValueError(f"clips hold {wave_BxT.shape[-1]} samples; the encoder expects {c.clip_samples} "
                             f"({c.clip_seconds} s at {c.sample_rate} Hz)")
        x = audio_features(c, wave_BxT).astype(self.dtype)
        x = self._stem_2d(x) if c.stem == "conv2d" else self._stem_1d(x)
        n = x.shape[1]
        if c.pos_emb == "learned":
            pos = self.param("pos_embed", nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                                       (None, "embed")), (n, c.width),
                             self.param_dtype)
        else:
            pos = jnp.asarray(sincos_1d(n, c.width))
        x = constrain(x + pos.astype(self.dtype), ("batch", "length", "act_embed"))
        x = nn.Dropout(c.dropout)(x, deterministic=self.deterministic)
        spec = block_spec(c.width, c.depth, c.heads, c.mlp_ratio, n, self.dtype, self.param_dtype, c.dropout)
        x = BidirectionalStack(spec, self.deterministic, name="blocks")(x)
        if c.pooling == "mean":
            return x.mean(axis=1, keepdims=True)
        k = c.frame_stack
        if k > 1:  # stack k consecutive frames into one wider token (zero-padded at the end)
            pad = -n % k
            x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)))
            x = x.reshape(x.shape[0], (n + pad) // k, k * c.width)
        return x
