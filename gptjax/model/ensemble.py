"""Several trained runs of one shape read as one model: their next-token probabilities averaged.

An ensemble predicts, at every step, the mean of its members' distributions, as fairseq's
`--path a.pt:b.pt` and Vaswani et al.'s ensembles do: log (1/M) sum_m p_m(token | prefix). The
members' parameters are stacked on a leading axis and the model runs under `jax.vmap`, so M
members cost one compiled program, and their KV caches stack the same way. `Ensemble` answers
`init` and `apply` as a Flax module does, returning the mixture's log probabilities where the
module returns logits (a softmax of them is the mixture), so greedy decoding, beam search and
log-likelihood scoring take it in place of the model.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from gptjax.errors import ConfigError


def mix(logits_MxV):
    """Log of the members' mean probability (members on axis 0, the vocabulary last)."""
    logp = jax.nn.log_softmax(logits_MxV.astype(jnp.float32), axis=-1)
    return jax.scipy.special.logsumexp(logp, axis=0) - math.log(logits_MxV.shape[0])


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """`members` copies of `model` with parameters (and caches) stacked on axis 0. Hashable, so jitted
    decoders take it as their static `model`."""

    model: object
    members: int

    def init(self, rng, *args, method=None, **kwargs):
        one = lambda key: self.model.init(key, *args, method=method, **kwargs)  # noqa: E731
        return jax.vmap(one)(jax.random.split(rng, self.members))

    def apply(self, variables, *args, method=None, mutable=False, **kwargs):
        one = lambda v: self.model.apply(v, *args, method=method, mutable=mutable, **kwargs)  # noqa: E731
        out = jax.vmap(one)(variables)
        if mutable:
            logits, state = out
            return mix(logits), state
        return mix(out)


def stack(params_list: list, names: list[str]):
    """The members' parameters on one leading axis; ConfigError naming the member whose shapes differ."""
    first = jax.tree.structure(params_list[0])
    shapes = [jnp.shape(x) for x in jax.tree.leaves(params_list[0])]
    for params, name in zip(params_list[1:], names[1:]):
        if jax.tree.structure(params) != first or [jnp.shape(x) for x in jax.tree.leaves(params)] != shapes:
            raise ConfigError(f"{name}'s parameters are not shaped like {names[0]}'s: an ensemble's members "
                              "share one model shape")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *params_list)
