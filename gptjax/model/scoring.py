"""Log-likelihoods of continuations under a text model: what choosing among answers, and
lm-evaluation-harness's `loglikelihood`, ask of a model.

Each request is (context ids, continuation ids); its answer is the summed log
probability of the continuation after the context, and whether greedy decoding
would have produced exactly that continuation. Requests are batched right-padded
(padding has segment id 0, so it is never attended to); a context longer than the
model's window keeps its latest tokens.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gptjax.model.ensemble import Ensemble
from gptjax.model.transformer import Transformer


@functools.partial(jax.jit, static_argnames=("spec", "members"))
def _token_logprobs(params, inputs_BxL, targets_BxL, segments_BxL, prefix_BxL, *, spec, members=0):
    model = Ensemble(Transformer(spec), members) if members else Transformer(spec)  # an ensemble gives log probs
    logits = model.apply({"params": params}, inputs_BxL, None, segments_BxL, prefix_BxL)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(logp, targets_BxL[..., None], axis=-1)[..., 0]
    greedy = jnp.argmax(logits, axis=-1) == targets_BxL
    return picked, greedy


def width_bucket(n: int, cap: int, step: int = 32) -> int:
    """`n` rounded up to a multiple of `step`, at most `cap`: few distinct shapes, few compilations."""
    return min(cap, -(-n // step) * step)


def loglikelihood(params, spec, requests, batch_size: int = 32, prefix_context: bool = False, members: int = 0
                  ) -> list[tuple[float, bool]]:
    """(log P(continuation | context), continuation is the greedy one) for each (context, continuation).
    With `prefix_context` the context is a bidirectional prefix (a model trained with prefix attention); with
    `members`, `params` are that many runs' stacked and P is their ensemble's (gptjax/model/ensemble.py)."""
    out: list[tuple[float, bool]] = [None] * len(requests)
    order = sorted(range(len(requests)), key=lambda i: len(requests[i][0]) + len(requests[i][1]))
    for lo in range(0, len(order), batch_size):
        chunk = order[lo:lo + batch_size]
        seqs = []
        for i in chunk:
            context, continuation = list(requests[i][0]), list(requests[i][1])
            if not continuation:
                raise ValueError("a continuation needs at least one token")
            seq = (context + continuation)[-(spec.max_seq_len + 1):]
            seqs.append((seq, len(continuation)))
        width = width_bucket(max(len(s) - 1 for s, _ in seqs), spec.max_seq_len)
        inputs, targets = np.zeros((batch_size, width), np.int32), np.zeros((batch_size, width), np.int32)
        segments, mask = np.zeros((batch_size, width), np.int32), np.zeros((batch_size, width), bool)
        prefix = np.zeros((batch_size, width), bool)
        for r, (seq, n_cont) in enumerate(seqs):
            n = len(seq) - 1
            inputs[r, :n], targets[r, :n], segments[r, :n] = seq[:-1], seq[1:], 1
            mask[r, n - min(n_cont, n):n] = True
            prefix[r, :n - min(n_cont, n) + 1] = prefix_context  # the context's inputs (its last one included)
        picked, greedy = (np.asarray(x) for x in _token_logprobs(params, inputs, targets, segments,
                                                                  prefix if prefix_context else None, spec=spec,
                                                                  members=members))
        for r, i in enumerate(chunk):
            out[i] = (float(picked[r][mask[r]].sum()), bool(greedy[r][mask[r]].all()))
    return out
