"""A fence against one fusion of XLA's CPU backend that costs a fifth of a training step.

For a weight gradient dW = dY^T X, XLA's CPU backend transposes dY and fuses
the computation of dY (a GELU's backward, attention's backward) into that
transposed copy. The fused, transposed loop is slow (50-90 ms per baby-GPT
layer on two cores against 8 ms for the same arithmetic in row order) and
parallelises badly. Routing the gradient through a conditional materialises dY
in row order first; the transpose that follows is a plain copy.
"""
from __future__ import annotations

import jax


@jax.custom_vjp
def fusion_fence(x):
    """Identity whose gradient passes through a conditional, so XLA's CPU backend cannot fuse the
    GELU's backward into the transposed copy it makes for the weight gradient (measured on 2 cores:
    baby-GPT MLP forward + backward 297 -> 197 ms; the fused transpose alone took 50-90 ms a layer)."""
    return x


def _fence_bwd(_, g):
    # both branches return g; the predicate is data-dependent so it cannot be folded away
    probe = g.reshape(-1)[0]
    return (jax.lax.cond(probe == probe, lambda g: g * 1.0, lambda g: g, g),)


fusion_fence.defvjp(lambda x: (x, None), _fence_bwd)


def cpu_fence(x):
    """`fusion_fence` on the CPU only (a conditional costs a host round trip on accelerators)."""
    return fusion_fence(x) if jax.default_backend() == "cpu" else x
