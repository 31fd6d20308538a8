"""The optimizer and the schedule: Optax AdamW, weight decay on matrices only, global-norm clipping,
freezing by regex, and the learning-rate schedule an experiment's `Schedule` describes."""
from __future__ import annotations

import re

import jax
import optax

from gptjax.errors import ConfigError
from gptjax.model.weights import path_text
from gptjax.train.ema import with_param_ema
from gptjax.train.lora import lora_trains


def decay_mask(params):
    """Decay weight matrices and embeddings; never biases or norm scales, of any rank."""
    def decays(path, p):
        # by name, not only by rank: scanned layers stack a norm's scale into [n_layer, E]
        name = str(getattr(path[-1], "key", path[-1]))
        return p.ndim >= 2 and "bias" not in name and name != "scale"
    return jax.tree_util.tree_map_with_path(decays, params)


def build_schedule(cfg, total_steps: int):
    """The Optax schedule of a `Schedule` config over `total_steps` updates."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    if cfg.kind == "constant":
        if warmup == 0:
            return optax.constant_schedule(cfg.peak_lr)
        return optax.join_schedules([optax.linear_schedule(0.0, cfg.peak_lr, warmup),
                                     optax.constant_schedule(cfg.peak_lr)], [warmup])
    if cfg.kind == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, cfg.peak_lr, warmup, max(total_steps, warmup + 1),
                                                  cfg.end_lr)
    if cfg.kind == "wsd":
        decay = max(1, int(round(cfg.decay_fraction * total_steps)))
        stable = max(total_steps - warmup - decay, 0)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, cfg.peak_lr, max(warmup, 1)), optax.constant_schedule(cfg.peak_lr),
             optax.linear_schedule(cfg.peak_lr, cfg.end_lr, decay)],
            [max(warmup, 1), max(warmup, 1) + stable])
    raise ConfigError(f"schedule.kind={cfg.kind!r}: expected one of warmup_cosine, wsd, constant")


def make_optimizer(opt_cfg, schedule_cfg, total_steps: int):
    """Return (optax transformation, learning-rate schedule) for an experiment."""
    schedule = build_schedule(schedule_cfg, total_steps)
    parts = []
    if opt_cfg.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt_cfg.clip_norm))
    parts.append(optax.adamw(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                             weight_decay=opt_cfg.weight_decay, mask=decay_mask))
    tx = optax.chain(*parts)
    if getattr(opt_cfg, "freeze", ""):
        tx = freeze(tx, opt_cfg.freeze)
    if getattr(opt_cfg, "lora_rank", 0):
        tx = train_only_adapters(tx, getattr(opt_cfg, "lora_also_train", ""))
    if getattr(opt_cfg, "ema_decay", 0.0):
        tx = with_param_ema(tx, opt_cfg.ema_decay)
    return tx, schedule


def param_path(path) -> str:
    """'llm/h_0/attn/qkv_kernel' for a pytree key path."""
    return path_text(path)


def freeze(tx, pattern: str):
    """Parameters whose path matches `pattern` (re.search) get zero updates; the rest get `tx`."""
    regex = re.compile(pattern)  # (validated with the experiment)
    return freeze_where(tx, lambda path: bool(regex.search(path)), f"optimizer.freeze={pattern!r}")


def train_only_adapters(tx, also: str = ""):
    """LoRA: the adapters (and the parameters `also` matches) get `tx`, every other one zero updates
    (gptjax/train/lora.py)."""
    return freeze_where(tx, lambda path: not lora_trains(path, also), "LoRA's frozen set (all but the adapters)")


def freeze_where(tx, frozen, what: str):
    """Parameters whose path `frozen(path)` accepts get zero updates; the rest get `tx`.

    `optax.multi_transform` with `set_to_zero` for the frozen group: clipping
    sees only the trained parameters' gradients, frozen ones keep no optimizer
    moments and stay bit-identical.
    """
    def labels(params):
        tree = jax.tree_util.tree_map_with_path(
            lambda path, _: "frozen" if frozen(param_path(path)) else "trained", params)
        if set(jax.tree.leaves(tree)) != {"frozen", "trained"}:
            none = "frozen" not in jax.tree.leaves(tree)
            raise ConfigError(f"{what} {'matches no' if none else 'matches every'} parameter; paths look like "
                              f"{param_path(jax.tree_util.tree_leaves_with_path(params)[0][0])!r}")
        return tree

    inner = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)
    seen = {}

    def init(params):
        if not jax.tree.leaves(params):
            # optax.tree_map_params' placeholder: its per-parameter mapping cannot
            # cross the masked groups' MaskedNode leaves, so answer with the real
            # state's structure holding no placeholder (its arrays stay replicated)
            if "structure" not in seen:
                raise ValueError("initialise the optimizer on real parameters before mapping over its state")
            return jax.tree.unflatten(seen["structure"], [0] * seen["structure"].num_leaves)
        state = inner.init(params)
        seen["structure"] = jax.tree.structure(state)
        return state

    return optax.GradientTransformationExtraArgs(init, inner.update)
