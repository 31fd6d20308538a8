"""The decoder: GPT-2 and LLaMA flavours from one code path.

GPT-2: LayerNorm, GELU MLP, learned positions, biases, tied embeddings.
LLaMA: RMSNorm, SwiGLU MLP, rotary positions, grouped-query attention, no biases.
Shapes in names: B batch, L length, E d_model, F MLP hidden, V vocab.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gptjax.model.attention import Attention
from gptjax.model.fusion_fence import cpu_fence
from gptjax.model.layers import QUANT_BITS, Linear, dense, kernel, norm
from gptjax.model.lines import LineSegments, line_memory_branches
from gptjax.model.quant import qat_dot_general
from gptjax.parallel.rules import constrain

REMAT_POLICIES = {
    "full": None,  # save nothing, recompute everything in the backward pass
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Mlp(nn.Module):
    spec: "object"
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BxLxE):
        s = self.spec
        out_std = 0.02 / (2 * s.n_layer) ** 0.5
        if s.is_llama:  # SwiGLU: gate and up projections fused in one matmul
            w = self.param("wi_kernel", nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                                      ("embed", "stack", "mlp")),
                           (s.d_model, 2, s.ff_dim), s.param_dtype)
            gate_up = jnp.einsum("ble,esf->blsf", x_BxLxE.astype(s.dtype), kernel(w, s, (0,)))
            h_BxLxF = nn.silu(gate_up[..., 0, :]) * gate_up[..., 1, :]
            h_BxLxF = constrain(h_BxLxF, ("batch", "length", "mlp"))
            y = dense(s.d_model, "wo", ("mlp", "embed"), s.dtype, s.param_dtype, use_bias=False,
                      std=out_std, quant=s.quant)(h_BxLxF)
        else:  # GELU MLP, weights [out, in]
            h_BxLxF = nn.gelu(cpu_fence(Linear(s.ff_dim, s, ("mlp", "embed"), 0.02, name="wi")(x_BxLxE)),
                              approximate=True)
            h_BxLxF = constrain(h_BxLxF, ("batch", "length", "mlp"))
            y = Linear(s.d_model, s, ("embed", "mlp"), out_std, name="wo")(h_BxLxF)
        return nn.Dropout(s.dropout)(y, deterministic=self.deterministic)


class Block(nn.Module):
    """Pre-norm residual block. Returns (x, None) so that it can be scanned."""

    spec: "object"
    decode: bool = False
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BxLxE, positions_BxL, segment_ids_BxL, prefix_BxL, branches_BxL=None):
        s = self.spec
        h = norm(s, "ln_attn")(x_BxLxE)
        x_BxLxE = x_BxLxE + Attention(s, self.decode, name="attn")(
            h, positions_BxL, segment_ids_BxL, prefix_BxL, self.deterministic, branches_BxL)
        h = norm(s, "ln_mlp")(x_BxLxE)
        x_BxLxE = x_BxLxE + Mlp(s, self.deterministic, name="mlp")(h)
        return constrain(x_BxLxE, ("batch", "length", "act_embed")), None


class Transformer(nn.Module):
    """A decoder-only language model: tokens (or ready embeddings) in, logits out."""

    spec: "object"
    decode: bool = False
    deterministic: bool = True

    def setup(self):
        s = self.spec
        self.wte = nn.Embed(s.vocab_size, s.d_model, dtype=s.dtype, param_dtype=s.param_dtype,
                            embedding_init=nn.with_logical_partitioning(
                                nn.initializers.normal(0.02), ("vocab", "embed")))
        if not s.is_llama:
            self.wpe = self.param("wpe", nn.with_logical_partitioning(
                nn.initializers.normal(0.02), (None, "embed")), (s.max_seq_len, s.d_model), s.param_dtype)
        block = Block
        if s.remat != "none":
            block = nn.remat(Block, policy=REMAT_POLICIES[s.remat], prevent_cse=not s.scan_layers)
        if s.scan_layers:
            self.layers = nn.scan(block, variable_axes={"params": 0, "cache": 0},
                                  split_rngs={"params": True, "dropout": True},
                                  in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
                                  length=s.n_layer, metadata_params={nn.PARTITION_NAME: "layers"})(
                s, self.decode, self.deterministic)
        else:
            self.layers = [block(s, self.decode, self.deterministic, name=f"h_{i}") for i in range(s.n_layer)]
        if s.line_local_layers:
            if s.line_break_id < 0:
                raise ValueError("model.line_local_layers needs model.line_break_id (resolved from the tokenizer)")
            self.lines = LineSegments(s.line_break_id, self.decode)
        self.ln_f = norm(s, "ln_f")
        if not s.tie_embeddings:
            qat = {} if s.quant == "none" else {"dot_general": qat_dot_general(QUANT_BITS[s.quant])}
            self.lm_head = nn.Dense(s.vocab_size, use_bias=False, dtype=s.dtype, param_dtype=s.param_dtype,
                                    kernel_init=nn.with_logical_partitioning(
                                        nn.initializers.normal(0.02), ("embed", "vocab")), **qat)
        self.drop = nn.Dropout(s.dropout)

    def embed(self, tokens_BxL):
        """Token embeddings (before positions); multimodal models splice media in here."""
        if self.spec.quant != "none":  # training with quantization: look up the rounded rows
            return jnp.take(self._qat_embedding(), tokens_BxL, axis=0)
        return self.wte(tokens_BxL)

    def _qat_embedding(self):
        """The embedding as quantization-aware training sees it (per row, like every other weight)."""
        return kernel(self.wte.embedding, self.spec, (1,))

    def features_from_batch(self, batch):
        """Final hidden states and the output projection [E, V], for a loss that makes its own logits."""
        x_BxLxE = self(batch["inputs"], batch.get("positions"), batch.get("segment_ids"), batch.get("prefix"),
                       features_only=True, branches_BxL=batch.get("branches"))
        if self.spec.tie_embeddings:
            w_ExV = kernel(self.wte.embedding, self.spec, (1,)).T
        else:
            w_ExV = kernel(nn.meta.unbox(self.lm_head.variables["params"]["kernel"]), self.spec, (0,))
        return x_BxLxE, w_ExV

    def from_batch(self, batch):
        """Logits for a training batch (inputs, positions, segment_ids; prefix and branches if there)."""
        return self(batch["inputs"], batch.get("positions"), batch.get("segment_ids"), batch.get("prefix"),
                    branches_BxL=batch.get("branches"))

    def step(self, tokens_BxL, positions_BxL):
        """Logits of new tokens at `positions` (decoding, after the prompt filled the cache)."""
        return self(tokens_BxL, positions_BxL)

    def __call__(self, tokens_BxL=None, positions_BxL=None, segment_ids_BxL=None, prefix_BxL=None,
                 embeds_BxLxE=None, features_only=False, branches_BxL=None):
        s = self.spec
        x_BxLxE = self.embed(tokens_BxL) if embeds_BxLxE is None else embeds_BxLxE.astype(s.dtype)
        b, l = x_BxLxE.shape[:2]
        if positions_BxL is None:
            positions_BxL = jnp.broadcast_to(jnp.arange(l), (b, l))
        if segment_ids_BxL is None:
            segment_ids_BxL = jnp.ones((b, l), jnp.int32)
        if not s.is_llama:
            x_BxLxE = x_BxLxE + jnp.take(self.wpe, positions_BxL, axis=0).astype(s.dtype)
        x_BxLxE = self.drop(x_BxLxE, deterministic=self.deterministic)
        x_BxLxE = constrain(x_BxLxE, ("batch", "length", "act_embed"))
        if s.scan_layers:
            x_BxLxE, _ = self.layers(x_BxLxE, positions_BxL, segment_ids_BxL, prefix_BxL, branches_BxL)
        else:
            # the first line_local_layers layers see their own line only (gptjax/model/lines.py)
            line_ids_BxL = self.lines(tokens_BxL, segment_ids_BxL) if s.line_local_layers else None
            later_branches_BxL = branches_BxL
            if s.line_memory:  # the later layers see earlier lines by their ends only
                if branches_BxL is not None:
                    raise ValueError("model.line_memory cannot be combined with branch ids (data.share_prompts)")
                later_branches_BxL = line_memory_branches(tokens_BxL, line_ids_BxL, s.line_break_id)
            for i, layer in enumerate(self.layers):
                local = i < s.line_local_layers
                seg_BxL = line_ids_BxL if local else segment_ids_BxL
                x_BxLxE, _ = layer(x_BxLxE, positions_BxL, seg_BxL, prefix_BxL,
                                   branches_BxL if local else later_branches_BxL)
        x_BxLxE = self.ln_f(x_BxLxE)
        if features_only:
            return x_BxLxE
        if s.tie_embeddings and s.quant != "none":
            logits_BxLxV = jnp.einsum("ble,ve->blv", x_BxLxE, self._qat_embedding())
        elif s.tie_embeddings:
            logits_BxLxV = self.wte.attend(x_BxLxE)
        else:
            logits_BxLxV = self.lm_head(x_BxLxE)
        return constrain(logits_BxLxV.astype(jnp.float32), ("batch", "length", "act_vocab"))
