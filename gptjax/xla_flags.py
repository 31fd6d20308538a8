"""XLA flags chosen by measurement, added to XLA_FLAGS before JAX starts (scripts do it first thing).

Measured with `scripts/bench.py` on the baby-GPT training step (6 layers, 384
wide, context 256, batch 16, fp32) on a 2-core x86 CPU, jax 0.10:

- `--xla_cpu_experimental_ynn_fusion_type=` (empty: XLA's own Eigen dot
  emitter instead of YNNPACK fusions): the step runs about 10% faster on one
  core; YNNPACK's fused dots ran the MLP weight gradients at ~60 GFLOP/s
  against Eigen's ~100.
- Tried and not kept: oneDNN (`--xla_cpu_use_onednn`), XNNPACK dot fusions,
  YNNPACK element-wise and reduce fusions: each was equal or slower.

A flag the user already put in XLA_FLAGS wins; GPTJAX_XLA_DEFAULTS=0 adds none.
The flags only touch the CPU backend, so GPU and TPU runs are unaffected.

The scripts also turn on JAX's persistent compilation cache (in
`$GPTJAX_CACHE_DIR/jax` or `~/.cache/gptjax/jax`, unless JAX_COMPILATION_CACHE_DIR
is set): a rerun, a resume or the next point of a sweep with the same shapes
loads its compiled steps instead of compiling them again.
"""
from __future__ import annotations

import os

CPU_DEFAULTS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def with_defaults(xla_flags: str) -> str:
    """`xla_flags` plus every default whose flag it does not name."""
    named = {part.lstrip("-").split("=", 1)[0] for part in xla_flags.split()}
    extra = [f"--{k}={v}" for k, v in CPU_DEFAULTS.items() if k not in named]
    return " ".join([xla_flags.strip(), *extra]).strip()


def compilation_cache_dir(environ=os.environ) -> str:
    root = environ.get("GPTJAX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "gptjax")
    return os.path.join(root, "jax")


def apply_defaults(environ=os.environ) -> None:
    """Set XLA_FLAGS and the compilation cache in `environ` (before JAX starts, or they have no effect)."""
    if environ.get("GPTJAX_XLA_DEFAULTS", "1") != "0":
        environ["XLA_FLAGS"] = with_defaults(environ.get("XLA_FLAGS", ""))
        environ.setdefault("JAX_COMPILATION_CACHE_DIR", compilation_cache_dir(environ))
