"""Weight-only quantization: per-channel symmetric int8 / int4 for every kernel and the embedding.

Post-training (a quantized workdir, gptjax/convert/quantize.py) and quantization-aware training
(`model.quant`) share one rule: each output channel of a weight gets the scale absmax / (qmax + 0.5),
the values are rounded to integers in [-2^(bits-1), 2^(bits-1) - 1] (qwix's `absmax` calibration),
and the matmul sees `q * scale`. Which axes are a weight's inputs (reduced for the scale) and which
are its channels comes from gptjax/model/weights.py: weight_axes.

qwix computes the integers and scales. Its model-level providers are not used: PTQ quantizes a
weight where a matmul takes it, so nn.Embed's lookup stays float, and both PTQ and QT find
weights by tracing a matmul's operand back to a module parameter, which fails on our attention
(qwix 0.1.8 asserts 'lhs and rhs cannot be both weights' on the qkv projection). So the model
calls `kernel` (gptjax/model/layers.py) at each weight's one place of use, and the quantized
tree holds `QuantizedArray`s.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

QTYPES = {8: jnp.int8, 4: jnp.int4}


@flax.struct.dataclass
class QuantizedArray:
    """int8 values (4-bit values in int8 for bits=4) with float scales broadcastable against them.

    It stands where a float weight stood in a parameter tree. Our layers call `dequantize`; Flax's
    own (nn.Dense, nn.Embed) convert it through `__jax_array__`, so either way the integers stay
    what the tree holds and the float weight exists only inside the computation that uses it.
    `qvalue` comes first and has the weight's shape: Flax compares the first leaf of a parameter
    with the shape its initialiser gives.
    """

    qvalue: jax.Array
    scale: jax.Array
    bits: int = flax.struct.field(pytree_node=False, default=8)

    def dequantize(self, dtype=jnp.float32):
        return self.qvalue.astype(dtype) * self.scale.astype(dtype)

    def astype(self, dtype):
        return self.dequantize(dtype)

    def __jax_array__(self):
        return self.dequantize(self.scale.dtype)

    @property
    def shape(self):
        return self.qvalue.shape

    @property
    def ndim(self):
        return self.qvalue.ndim

    @property
    def dtype(self):
        return self.scale.dtype


def channel_axes(ndim: int, input_axes) -> tuple[int, ...]:
    return tuple(i for i in range(ndim) if i not in input_axes)


def quantize(w, input_axes, bits: int = 8) -> QuantizedArray:
    """`w` as integers and one scale per channel (every axis not in `input_axes`)."""
    import qwix  # only quantizing needs it; a quantized tree is used without it

    q = qwix.quantize(jnp.asarray(w, jnp.float32), QTYPES[bits], channelwise_axes=channel_axes(np.ndim(w),
                                                                                               input_axes))
    return QuantizedArray(q.qvalue.astype(jnp.int8), q.scale.astype(jnp.float32), bits)


def fake_quant(w, input_axes, bits: int):
    """`w` rounded as `quantize` would round it, with the gradient of the identity (straight-through),
    so quantization-aware training updates the float weights the integers are taken from."""
    q = quantize(jax.lax.stop_gradient(w), input_axes, bits).dequantize(w.dtype)
    return w + jax.lax.stop_gradient(q - w)


def qat_dot_general(bits: int):
    """A `dot_general` for nn.Dense that fake-quantizes its kernel (the right operand) per output channel."""
    def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
        (_, rhs_contract), _ = dimension_numbers
        return jax.lax.dot_general(lhs, fake_quant(rhs, tuple(rhs_contract), bits), dimension_numbers,
                                   precision=precision, preferred_element_type=preferred_element_type, **kwargs)
    return dot_general


# ------------------------------------------------------------------ int4 on disk

def pack_int4(q_int8) -> np.ndarray:
    """Two 4-bit values per byte (low nibble first) of the flattened array, padded to an even count."""
    flat = np.asarray(q_int8, np.int8).reshape(-1)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.int8)])
    nibbles = (flat.astype(np.uint8) & 0xF)
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed, shape) -> np.ndarray:
    """The int8 array of `shape` that `pack_int4` packed (sign-extended from 4 bits)."""
    packed = np.asarray(packed, np.uint8)
    nibbles = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(-1)[:int(np.prod(shape))]
    return ((nibbles.astype(np.int8) ^ 8) - 8).astype(np.int8).reshape(shape)


# ------------------------------------------------------------------ parameter trees

def _is_q(x) -> bool:
    return isinstance(x, QuantizedArray)


def quantize_params(params, bits: int = 8):
    """Every kernel and embedding of `params` as a QuantizedArray; norms, biases and positions stay float."""
    from gptjax.model.weights import path_text, weight_axes

    def one(path, w):
        axes = weight_axes(path_text(path), np.ndim(w))
        return w if axes is None else quantize(w, axes[1], bits)
    return jax.tree_util.tree_map_with_path(one, params)


def dequantize_params(params, dtype=jnp.float32):
    """A float tree with each QuantizedArray replaced by `q * scale`."""
    return jax.tree.map(lambda x: x.dequantize(dtype) if _is_q(x) else x, params, is_leaf=_is_q)


def is_quantized(params) -> bool:
    return any(_is_q(x) for x in jax.tree.leaves(params, is_leaf=_is_q))


def tree_bytes(params) -> int:
    """Bytes the arrays of a tree hold (integers and scales for a quantized one)."""
    return int(sum(x.nbytes for x in jax.tree.leaves(params)))


def to_saved(params):
    """The tree as a checkpoint stores it: {'qvalue', 'scale'} dicts; 4-bit values two to a byte."""
    def one(x):
        if not _is_q(x):
            return x
        q = pack_int4(x.qvalue) if x.bits == 4 else x.qvalue
        return {"qvalue": q, "scale": x.scale}
    return jax.tree.map(one, params, is_leaf=_is_q)


def from_saved(saved, abstract, bits: int):
    """`to_saved`'s tree back as QuantizedArrays, shaped like the float tree `abstract` (shapes only)."""
    def walk(s, a):
        if isinstance(s, dict) and set(s) == {"qvalue", "scale"} and not isinstance(a, dict):
            q = unpack_int4(s["qvalue"], a.shape) if bits == 4 else s["qvalue"]
            return QuantizedArray(jnp.asarray(q, jnp.int8), jnp.asarray(s["scale"], jnp.float32), bits)
        if isinstance(a, dict):
            if not isinstance(s, dict) or set(s) != set(a):
                raise ValueError(f"saved parameters do not fit the model: {sorted(s) if isinstance(s, dict) else s}")
            return {k: walk(s[k], a[k]) for k in a}
        return jnp.asarray(s)
    return walk(saved, abstract)
