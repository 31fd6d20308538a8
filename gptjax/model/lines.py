"""Line segments: which line of its row each token is on, for layers that attend within a line.

A line ends with the newline token (`model.line_break_id`), which belongs to the line it ends; a
new packed example (segment) also starts a line. The ids come back in the form of segment ids
(0 for padding, unique per line in a row), so the attention kernels' segment masking keeps a
query to the keys of its own line. With a KV cache the count carries on from the last real
token of the previous call (prompts are right-padded), so decoding numbers lines as training did.

`line_memory_branches` turns the ids into branch ids for the layers after the line-local ones
(`model.line_memory`): a line's newline is on branch 0, which every later token sees, and the rest of
a line on a branch of its own, seen by that line alone (gptjax/model/masks.py). A newline, having read
its line in the line-local layers, stands for it; such a layer attends over the lines before as End-To-End
Memory Networks attend over sentences, one hop per layer, and can no longer pick single words out of them.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class LineSegments(nn.Module):
    break_id: int
    decode: bool = False

    @nn.compact
    def __call__(self, tokens_BxL, segment_ids_BxL):
        b, l = tokens_BxL.shape
        breaks = tokens_BxL == self.break_id
        if self.decode:
            prev_break = self.variable("cache", "prev_break", jnp.zeros, (b,), jnp.bool_)
            prev_seg = self.variable("cache", "prev_segment", jnp.zeros, (b,), jnp.int32)
            prev_line = self.variable("cache", "prev_line", jnp.zeros, (b,), jnp.int32)
            first = (prev_break.value, prev_seg.value, prev_line.value)
        else:
            first = (jnp.zeros((b,), bool), jnp.zeros((b,), jnp.int32), jnp.zeros((b,), jnp.int32))
        before_break = jnp.concatenate([first[0][:, None], breaks[:, :-1]], axis=1)
        before_seg = jnp.concatenate([first[1][:, None], segment_ids_BxL[:, :-1]], axis=1)
        starts = before_break | (segment_ids_BxL != before_seg)
        line_BxL = first[2][:, None] + jnp.cumsum(starts, axis=1, dtype=jnp.int32)
        if self.decode:  # carry on from the last real (non-padding) token of this call
            real = segment_ids_BxL != 0
            last = jnp.max(jnp.where(real, jnp.arange(l), -1), axis=1)
            has = last >= 0
            at = jnp.maximum(last, 0)[:, None]
            take = lambda x: jnp.take_along_axis(x, at, axis=1)[:, 0]  # noqa: E731
            prev_break.value = jnp.where(has, take(breaks), prev_break.value)
            prev_seg.value = jnp.where(has, take(segment_ids_BxL), prev_seg.value)
            prev_line.value = jnp.where(has, take(line_BxL), prev_line.value)
        return jnp.where(segment_ids_BxL != 0, line_BxL, 0).astype(jnp.int32)


def line_memory_branches(tokens_BxL, line_ids_BxL, break_id: int):
    """Branch ids: 0 for the newline that ends a line, the line's own id for the rest of it."""
    return jnp.where(tokens_BxL == break_id, 0, line_ids_BxL).astype(jnp.int32)
