"""XLA flags chosen by measurement, added to XLA_FLAGS before JAX starts (scripts do it first thing).

Measured with `scripts/bench.py --experiment experiments/shakespeare_char.py --vocab_size 65
--steps 4 --repeats 3 --set model.dropout=0 --set train.batch_size=16 [--torch]` (the baby-GPT
training step `scripts/train.py` runs: 6 layers, 384 wide, context 256, batch 16), one sitting,
jax 0.10, torch 2.13 CPU, on a 2-core AMD EPYC (Zen 4: AVX-512 with bf16 and VNNI, no AMX):

| setting                                                | tokens/s | vs torch |
|--------------------------------------------------------|---------:|---------:|
| PyTorch (nanoGPT's step, 2 threads)                    |    2,293 |    1     |
| defaults below (YNNPACK dot fusions off), fp32         |    2,010 |    0.88  |
| XLA's own defaults (YNNPACK fusions on), fp32          |    1,856 |    0.81  |
| YNNPACK on, `model.dtype=bfloat16`                     |    1,736 |    0.76  |
| YNNPACK off, `model.dtype=bfloat16`                    |    1,828 |    0.80  |
| defaults, fp32, `mesh.cpu_devices=2`                   |    1,975 |    0.86  |

At experiments/shakespeare_char_cpu.py's shape (4 layers, 128 wide, context 64, batch 12, two CPU
devices) the same bench gives 19,220 tokens/s against torch's 16,763 (1.15x).

- `--xla_cpu_experimental_ynn_fusion_type=` (empty: XLA's own Eigen dot emitter instead of
  YNNPACK fusions): +8% on this step; YNNPACK's fused dots ran the MLP weight gradients slower.
- bf16 compute: a bf16 matmul alone runs ~2x fp32 under YNNPACK here, but the whole step is
  slower (casts, fp32 layer norms and softmax); fp32 stays the CPU default.
- Where the time goes (`scripts/bench.py --profile`, op time of the baby-GPT step): matmuls
  36%, element-wise fusions 29%, copies and transposes 21%, reductions 7%, gelu 4%, softmax 3%,
  the non-finite guard 0.1-0.3%.
- Tried and not kept: oneDNN (`--xla_cpu_use_onednn`), XNNPACK dot fusions, YNNPACK
  element-wise and reduce fusions: each was equal or slower.

- `--xla_cpu_collective_call_terminate_timeout_seconds=600`: XLA aborts the process when one CPU
  device waits more than 40 s (its default) for the others at a collective. On a busy machine that
  is not a hang: a run sharing its cores with another (here a niced `scripts/run.sh` beside a
  training run) had one device thread starved for 40 s at an all-reduce and died with SIGABRT at
  step 1750 of 2000. Ten minutes keeps such runs alive; a real deadlock still ends.

A flag the user already put in XLA_FLAGS wins; GPTJAX_XLA_DEFAULTS=0 adds none.
The flags only touch the CPU backend, so GPU and TPU runs are unaffected.

The scripts also turn on JAX's persistent compilation cache (in
`$GPTJAX_CACHE_DIR/jax` or `~/.cache/gptjax/jax`, unless JAX_COMPILATION_CACHE_DIR
is set): a rerun, a resume or the next point of a sweep with the same shapes
loads its compiled steps instead of compiling them again.
"""
from __future__ import annotations

import os

CPU_DEFAULTS = {"xla_cpu_experimental_ynn_fusion_type": "",
                "xla_cpu_collective_call_terminate_timeout_seconds": "600"}


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
