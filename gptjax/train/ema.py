"""An exponential moving average of the parameters, kept in the optimizer state (`optimizer.ema_decay`).

    ema <- d_t * ema + (1 - d_t) * new_params      after update t = 1, 2, ...; ema starts at the initial params
    d_t = min(decay, t / (9 + t))                      (TensorFlow's ExponentialMovingAverage with num_updates)

The warm-up keeps the random initial parameters out of the average: without it, decay 0.999 would
still give them 0.999 ** 2000 = 13.5% of the weight after 2000 steps; with it, their weight is 0.1
after the first update and under 0.1% after the fifth, and the average spans about the last t / 9
steps until d_t reaches `decay` (at t = 9 d / (1 - d): step 891 for 0.99, 8991 for 0.999).

Evaluation during training, the checkpoints' readers (evaluate.py, sample.py, export, quantize,
distillation teachers) and `train.init_from` use the average in place of the raw parameters; training
itself steps the raw ones. Optax has no parameter average (optax.ema averages updates) and linen
no EMA helper, so it is written here as an Optax wrapper: it lives in `opt_state`, so it is sharded
like the parameters (optax.tree_map_params sees it as parameter-shaped), saved and resumed with them.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ParamEmaState(NamedTuple):
    inner: Any  # the wrapped optimizer's state
    ema: Any  # the average, shaped and sharded like the parameters
    count: Any  # updates folded in so far (int32 scalar): the warm-up's t - 1


def warmed_decay(decay: float, count):
    """The decay of update `count` + 1: min(decay, t / (9 + t)) at t = count + 1."""
    t = count.astype(jnp.float32) + 1.0
    return jnp.minimum(decay, t / (9.0 + t))


def with_param_ema(tx, decay: float):
    """`tx`, followed by an update of the parameters' moving average at `decay` (a number in (0, 1))."""
    def init(params):
        # jax.tree.map calls nothing on optax.tree_map_params' placeholders, so the copy keeps them in place
        return ParamEmaState(tx.init(params), jax.tree.map(jnp.copy, params), jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError("optimizer.ema_decay needs the parameters in tx.update")
        updates, inner = tx.update(updates, state.inner, params, **extra)
        d = warmed_decay(decay, state.count)
        ema = jax.tree.map(lambda e, p, u: (d * e + (1.0 - d) * (p + u)).astype(e.dtype), state.ema, params, updates)
        return updates, ParamEmaState(inner, ema, optax.safe_int32_increment(state.count))

    return optax.GradientTransformationExtraArgs(init, update)


def restart(opt_state, params):
    """`opt_state` with the average reset to `params` (a run that starts from train.init_from's weights;
    its fresh count warms the average up again)."""
    if not isinstance(opt_state, ParamEmaState):
        return opt_state
    return opt_state._replace(ema=jax.jit(lambda p: jax.tree.map(jnp.copy, p))(params))  # new buffers, same layout


def eval_params(params, opt_state):
    """The weights to evaluate: the moving average when the run keeps one, else `params`."""
    return opt_state.ema if isinstance(opt_state, ParamEmaState) else params


def saved_eval_params(saved_state: dict):
    """The same for a state read as saved (gptjax/train/checkpoint.py: load_state), where the optimizer
    state's named tuples come back as dicts keyed by field name."""
    opt = saved_state.get("opt_state")
    if isinstance(opt, dict) and {"inner", "ema"} <= set(opt):  # "count" too since the warm-up
        return opt["ema"]
    return saved_state["params"]
