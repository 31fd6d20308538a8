"""The small layers every network here is built from, each with logical axis names on its parameters.

`dense` and `layer_norm` are Flax's own layers with logically partitioned
initialisers (what gptjax/parallel/rules.py maps onto the mesh); `Linear`
stores its weight [out, in] for the CPU's sake; `norm` picks the decoder's
LayerNorm (GPT-2) or RMSNorm (LLaMA). `kernel` is how every weight enters its
matmul: float, quantized, or fake-quantized for training.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from gptjax.model.quant import QuantizedArray, fake_quant, qat_dot_general

QUANT_BITS = {"int8": 8, "int4": 4}


def kernel(w, spec, input_axes: tuple[int, ...]):
    """A weight as its matmul uses it, in the compute dtype: dequantized when the tree holds integers
    (a quantized workdir), fake-quantized when the model trains with `model.quant`."""
    if isinstance(w, QuantizedArray):
        return w.dequantize(jnp.dtype(spec.dtype))
    if getattr(spec, "quant", "none") != "none":
        w = fake_quant(w, input_axes, QUANT_BITS[spec.quant])
    return w.astype(spec.dtype)


def dense(features: int, name: str, axes: tuple, dtype, param_dtype, use_bias: bool = True, std: float = 0.02,
          quant: str = "none"):
    """nn.Dense with a normal(std) kernel on logical `axes` (in, out) and a zero bias on `axes[-1]`;
    `quant` (int8, int4) fake-quantizes the kernel in its matmul."""
    extra = {} if quant == "none" else {"dot_general": qat_dot_general(QUANT_BITS[quant])}
    return nn.Dense(features, name=name, dtype=dtype, param_dtype=param_dtype, use_bias=use_bias,
                    kernel_init=nn.with_logical_partitioning(nn.initializers.normal(std), axes),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[-1],)), **extra)


def layer_norm(name: str, dtype, param_dtype, eps: float = 1e-5, use_bias: bool = True):
    """nn.LayerNorm whose scale and bias are split like the embedding they normalise."""
    return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=param_dtype, name=name, use_bias=use_bias,
                        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))


def norm(spec, name: str):
    """The decoder's normalisation: RMSNorm for LLaMA, LayerNorm (biases unless spec.bias=False) for GPT-2."""
    if spec.is_llama:
        return nn.RMSNorm(epsilon=spec.norm_eps, dtype=spec.dtype, param_dtype=spec.param_dtype, name=name,
                          scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)))
    return layer_norm(name, spec.dtype, spec.param_dtype, spec.norm_eps, spec.use_bias)


class Linear(nn.Module):
    """y = x @ weight.T + bias, with `weight` stored [out, in] (PyTorch's layout).

    On XLA's CPU backend this layout keeps the weight gradients of the MLP free of
    large transposes (measured: about 12% faster per MLP, forward and backward).
    """

    features: int
    spec: "object"
    axes: tuple
    std: float

    @nn.compact
    def __call__(self, x):
        s = self.spec
        w = self.param("weight", nn.with_logical_partitioning(nn.initializers.normal(self.std), self.axes),
                       (self.features, x.shape[-1]), s.param_dtype)
        y = jnp.einsum("...i,oi->...o", x.astype(s.dtype), kernel(w, s, (1,)))
        if s.use_bias:
            y = y + self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, self.axes[:1]),
                               (self.features,), s.param_dtype).astype(s.dtype)
        return y
