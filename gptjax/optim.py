"""The optimizer: Optax AdamW, weight decay on matrices only, global-norm clipping."""
from __future__ import annotations

import jax
import optax


def decay_mask(params):
    """Decay weight matrices and embeddings (ndim >= 2); never biases or norm scales."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(opt_cfg, schedule_cfg, total_steps: int):
    """Return (optax transformation, learning-rate schedule) for an experiment."""
    schedule = schedule_cfg.build(total_steps)
    parts = []
    if opt_cfg.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt_cfg.clip_norm))
    parts.append(optax.adamw(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                             weight_decay=opt_cfg.weight_decay, mask=decay_mask))
    return optax.chain(*parts), schedule
