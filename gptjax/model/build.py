"""Which network an experiment trains: the text decoder, or a multimodal model around it."""
from __future__ import annotations

from gptjax.model.multimodal import MultimodalLM
from gptjax.model.transformer import Transformer


def build_model(exp, spec, *, decode: bool = False, deterministic: bool = True):
    """A flax module with `from_batch(batch) -> logits_BxLxV` (what the train step calls) and
    `step(tokens, positions)` (what decoding calls after the prompt)."""
    if exp.media is not None:
        return MultimodalLM(spec, exp.media, decode=decode, deterministic=deterministic)
    return Transformer(spec, decode=decode, deterministic=deterministic)
