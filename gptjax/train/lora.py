"""LoRA (Hu et al. 2021): low-rank adapters beside chosen kernels; only the adapters train.

With `optimizer.lora_rank` r > 0, every kernel whose path matches `optimizer.lora_targets`
(re.search; e.g. 'h_0/attn/qkv_kernel') gets two parameters beside it, `<name>_lora_a` over
the kernel's input axes and `<name>_lora_b` over its output axes, and the model computes with
W + (lora_alpha / r) * A @ B, arranged in W's own layout (gptjax/model/weights.py says which
axes are inputs). B starts at zero, so step 0 is the base model exactly. The optimizer trains
the adapters alone (gptjax/train/optim.py: optax.multi_transform), so its state holds no
moments of the base weights, and those stay bit-identical; `optimizer.lora_also_train` (a regex,
as PEFT's modules_to_save) names base parameters that train in full beside them, e.g. every bias
and norm. `merge` folds the adapters in.

Written here rather than with qwix's LoraProvider: that one attaches adapters by module path
to each matmul it intercepts, and it cannot tell our weights from activations (see
gptjax/model/quant.py); here the adapters are plain parameters, merged before the model runs,
so the model code and the parameter paths of runs without LoRA are unchanged.
"""
from __future__ import annotations

import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gptjax.errors import ConfigError
from gptjax.model.weights import path_text, weight_axes

ADAPTER = re.compile(r"_lora_[ab]\W*$")


def is_adapter(path: str) -> bool:
    """Whether a parameter path (or jax keystr) names a LoRA factor."""
    return bool(ADAPTER.search(path))


def lora_trains(path: str, also: str = "") -> bool:
    """Whether a LoRA run trains the parameter at `path`: an adapter, or one `also`
    (optimizer.lora_also_train) matches."""
    return is_adapter(path) or bool(also and re.search(also, path))


def _split(shape, stacked, inputs):
    outs = [i for i in range(len(shape)) if i not in stacked and i not in inputs]
    return [shape[i] for i in stacked], [shape[i] for i in inputs], [shape[i] for i in outs], outs


def adapter_shapes(shape, stacked, inputs, rank: int):
    """Shapes of A (stacked..., inputs..., r) and B (stacked..., r, outputs...) for a kernel of `shape`."""
    s, i, o, _ = _split(shape, stacked, inputs)
    return (*s, *i, rank), (*s, rank, *o)


def delta(a, b, shape, stacked, inputs):
    """A @ B laid out like the kernel: stacked axes apart, inputs contracted against outputs."""
    s, i, o, outs = _split(shape, stacked, inputs)
    rank = a.shape[-1]
    d = jnp.matmul(a.reshape(*s, math.prod(i), rank).astype(jnp.float32),
                   b.reshape(*s, rank, math.prod(o)).astype(jnp.float32)).reshape(*s, *i, *o)
    return jnp.transpose(d, np.argsort([*stacked, *inputs, *outs]))


def _walk(tree, fn, prefix=()):
    """Rebuild a nested dict of parameters, calling fn(path, name, parent, out) for each entry."""
    out = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            out[name] = _walk(value, fn, (*prefix, name))
        else:
            fn("/".join((*prefix, name)), name, tree, out)
    return out


def targets(params, pattern: str) -> dict[str, tuple]:
    """Path -> (stacked axes, input axes) of the kernels LoRA adapts."""
    regex = re.compile(pattern)
    found = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params, is_leaf=lambda x: isinstance(x, nn.Partitioned)):
        p = path_text(path)
        axes = weight_axes(p, len(nn.meta.unbox(leaf).shape))
        if axes is not None and not is_adapter(p) and regex.search(p):
            found[p] = axes
    return found


def add_adapters(params, cfg, rng):
    """`params` (boxed with logical axis names, or plain) with A (uniform +-1/sqrt(fan-in), as PEFT)
    and B (zeros) beside each targeted kernel; the factors take the kernel's logical axis names."""
    chosen = targets(params, cfg.lora_targets)
    if not chosen:
        kernels = sorted(p for p, leaf in ((path_text(k), v) for k, v in jax.tree_util.tree_leaves_with_path(
            params, is_leaf=lambda x: isinstance(x, nn.Partitioned))) if weight_axes(p, len(nn.meta.unbox(leaf).shape)))
        raise ConfigError(f"optimizer.lora_targets={cfg.lora_targets!r} matches no kernel; kernel paths here: "
                          f"{', '.join(kernels[:6])}{' ...' if len(kernels) > 6 else ''}")
    also = getattr(cfg, "lora_also_train", "")
    if also:
        paths = [path_text(k) for k, _ in jax.tree_util.tree_leaves_with_path(
            params, is_leaf=lambda x: isinstance(x, nn.Partitioned))]
        if not any(re.search(also, p) for p in paths):
            raise ConfigError(f"optimizer.lora_also_train={also!r} matches no parameter; paths here: "
                              f"{', '.join(paths[:6])} ...")
    keys = dict(zip(sorted(chosen), jax.random.split(jax.random.fold_in(rng, 0x10A), len(chosen))))

    def fn(path, name, parent, out):
        out[name] = parent[name]
        if path not in chosen:
            return
        box, (stacked, inputs) = parent[name], chosen[path]
        w = nn.meta.unbox(box)
        a_shape, b_shape = adapter_shapes(w.shape, stacked, inputs, cfg.lora_rank)
        bound = 1.0 / math.sqrt(math.prod(w.shape[i] for i in inputs))
        a = jax.random.uniform(keys[path], a_shape, w.dtype, -bound, bound)
        b = jnp.zeros(b_shape, w.dtype)
        if isinstance(box, nn.LogicallyPartitioned):
            s, i, o, _ = _split(box.names, stacked, inputs)
            a, b = box.replace(value=a, names=(*s, *i, None)), box.replace(value=b, names=(*s, None, *o))
        out[f"{name}_lora_a"], out[f"{name}_lora_b"] = a, b

    return _walk(params, fn)


def merge(params, cfg):
    """A plain parameter tree: each adapted kernel W replaced by W + (alpha / r) * A @ B, adapters dropped."""
    scale = cfg.lora_alpha / cfg.lora_rank

    def fn(path, name, parent, out):
        if is_adapter(name):
            return
        w = parent[name]
        if f"{name}_lora_a" not in parent:
            out[name] = w
            return
        stacked, inputs = weight_axes(path, w.ndim)
        d = delta(parent[f"{name}_lora_a"], parent[f"{name}_lora_b"], w.shape, stacked, inputs)
        out[name] = (w.astype(jnp.float32) + scale * d).astype(w.dtype)

    return _walk(params, fn)


def has_adapters(params) -> bool:
    return any(is_adapter(path_text(p)) for p, _ in jax.tree_util.tree_leaves_with_path(params))
