"""Benchmark the training step `scripts/train.py` runs: throughput, FLOP/s, MFU, memory, compile time."""
from __future__ import annotations

import time

import jax
import numpy as np

from gptjax.model import flops
from gptjax.train.setup import assemble


def synthetic_batch(batch: int, seq_len: int, vocab: int, seed: int = 0, loss_share: float = 1.0) -> dict:
    """A language-modelling batch of random tokens (the step's cost does not depend on values); with
    `loss_share` < 1 the loss covers only the last that share of each row, as a task's target does."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, (batch, seq_len + 1)).astype(np.int32)
    mask = np.zeros((batch, seq_len), np.float32)
    mask[:, seq_len - max(1, round(loss_share * seq_len)):] = 1.0
    return {"inputs": x[:, :-1], "targets": x[:, 1:], "segment_ids": np.ones((batch, seq_len), np.int32),
            "positions": np.tile(np.arange(seq_len, dtype=np.int32), (batch, 1)), "loss_mask": mask}


def bench_step(exp, steps: int = 50, warmup: int = 5, repeats: int = 5, vocab_size: int = 0,
               profile: bool = False, loss_share: float = 1.0) -> dict:
    """Compile once, warm up, then time `repeats` blocks of `steps` training steps; with `profile`,
    also trace two more steps and report where the op time goes (gptjax/science/op_profile.py)."""
    vocab = exp.model.vocab_size or vocab_size or 65
    example = synthetic_batch(exp.train.batch_size, exp.model.max_seq_len, vocab, loss_share=loss_share)
    t0 = time.perf_counter()
    run = assemble(exp, example, vocab, line_break=0)  # synthetic tokens: any newline id times the same
    compiled, spec = run.compiled, run.spec
    state = compiled.init(jax.random.key(0))
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    batch = {k: jax.device_put(v, compiled.batch_sharding[k]) for k, v in example.items()}
    for _ in range(warmup):
        state, m = compiled.train_step(state, batch)
    jax.block_until_ready(m)
    per_step = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            state, m = compiled.train_step(state, batch)
        jax.block_until_ready(m)
        per_step.append((time.perf_counter() - t) / steps)
    step_s = float(np.median(per_step))
    tokens = exp.train.batch_size * spec.max_seq_len
    fpt = flops.flops_per_token(spec, spec.max_seq_len, "6N+attn")
    device = jax.devices()[0]
    peak = flops.matmul_peak_per_device(device.device_kind, spec.dtype, jax.config.jax_default_matmul_precision)
    tok_s = tokens / step_s
    memory = _peak_memory(compiled, device)
    extra = {}
    if profile:
        from gptjax.science.op_profile import profile_calls

        box = [state]

        def step(s, b):
            box[0], metrics = compiled.train_step(s, b)
            return metrics
        extra = {"profile": profile_calls(step, lambda: (box[0], batch))}
    return {"experiment": exp.name, "device": device.device_kind, "n_devices": jax.device_count(),
            "attention": spec.attention, "batch": exp.train.batch_size, "seq_len": spec.max_seq_len,
            "loss_share": loss_share,
            "params": flops.param_counts(spec)["total"], "tokens_per_sec": round(tok_s, 1),
            "step_ms_median": round(step_s * 1e3, 3), "step_ms_min": round(min(per_step) * 1e3, 3),
            "step_ms_max": round(max(per_step) * 1e3, 3), "flops_per_token": fpt,
            "flops_convention": "6N+attn", "achieved_tflops": round(tok_s * fpt / 1e12, 4),
            "mfu": None if peak is None else round(tok_s * fpt / (peak * jax.device_count()), 4),
            "peak_memory_bytes": memory, "compile_s": round(compile_s, 2), **extra}


def _peak_memory(compiled, device):
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"])
    try:  # CPU: what the compiled step itself needs
        m = compiled.train_step.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                   - m.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


def machine() -> dict:
    """What ran the benchmark: CPU model and vector extensions (figures from different CPUs differ)."""
    import platform

    info = {"cpu": platform.processor() or platform.machine(), "cpu_flags": [], "cores": None}
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    info["cpu"] = fields.get("model name", info["cpu"])
    flags = set(fields.get("flags", "").split())
    info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    info["cores"] = text.count("processor\t:") or None
    return info


def benchmark(exp, steps: int, repeats: int, vocab_size: int = 0, compare=None, torch: bool = False,
              profile: bool = False, loss_share: float = 1.0) -> dict:
    """`bench_step` of `exp`; with `compare` (overrides, [] for naive attention) the same for the reference
    and the speed-up; with `torch` the same step in PyTorch and jax tokens/s over torch's."""
    from gptjax.config import apply_overrides

    result = bench_step(exp, steps, repeats=repeats, vocab_size=vocab_size, profile=profile, loss_share=loss_share)
    if compare is not None:
        overrides = compare or ["model.attention=naive"]
        ref = bench_step(apply_overrides(exp, overrides).validate(), steps, repeats=repeats, vocab_size=vocab_size,
                         loss_share=loss_share)
        result = {"run": result, "reference": ref, "reference_overrides": overrides,
                  "speedup": round(result["tokens_per_sec"] / ref["tokens_per_sec"], 3)}
    if torch:
        from gptjax.science.bench_torch import bench_torch_step

        ref = bench_torch_step(exp, vocab_size, steps, repeats)
        jax_tok_s = (result["run"] if "run" in result else result)["tokens_per_sec"]
        result = {**result, "torch": ref, "vs_torch": round(jax_tok_s / ref["tokens_per_sec"], 3)}
    return {**result, "machine": machine()}
