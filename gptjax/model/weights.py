"""Which parameters are weights of a matmul (kernels and the embedding), and which of their axes are
inputs: what per-channel quantization scales over (gptjax/model/quant.py) and what LoRA's low-rank
factors split (gptjax/train/lora.py). Parameters are named by their path, e.g. 'h_0/attn/qkv_kernel'.
"""
from __future__ import annotations

import jax


def path_text(path) -> str:
    """'h_0/attn/qkv_kernel' for a pytree key path."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def weight_axes(path: str, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(stacked axes, input axes) of the kernel or embedding at parameter `path`; None for other parameters.

    Input axes are those a matmul contracts (for the embedding: its width, contracted when it
    makes the logits); the remaining axes are output channels. Stacked axes are the layer axis
    of `model.scan_layers`, each layer a weight of its own.
    """
    parts = path.split("/")
    name, stacked = parts[-1], ("layers",) if "layers" in parts[:-1] else ()
    k, n = len(stacked), ndim - len(stacked)
    if name in ("weight", "embedding"):  # Linear [out, in]; nn.Embed [vocab, width]
        inputs = (n - 1,)
    elif name == "out_kernel":  # attention output [heads, head_dim, width]
        inputs = (0, 1)
    elif name.endswith("_kernel"):  # attention q / kv / qkv and LLaMA's fused MLP input: [width, ...]
        inputs = (0,)
    elif name == "kernel":  # nn.Dense, nn.DenseGeneral, nn.Conv: outputs last
        inputs = tuple(range(n - 1))
    else:
        return None
    return tuple(range(k)), tuple(i + k for i in inputs)


def weight_paths(params) -> dict[str, tuple]:
    """Path -> (stacked axes, input axes) of every kernel and embedding in a parameter tree."""
    found = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params, is_leaf=lambda x: hasattr(x, "qvalue")):
        axes = weight_axes(path_text(path), len(leaf.shape))
        if axes is not None:
            found[path_text(path)] = axes
    return found
