"""A trained workdir -> a workdir of int8 (or int4) weights, measured against the original.

    report = quantize_workdir(workdir, out, bits=8)

Post-training, weight-only, per-channel symmetric (gptjax/model/quant.py): every kernel and the
embedding become integers and one float scale per output channel; norms, biases and learned
positions stay float. The new workdir holds `quantized.json`, config.json, tokenizer/ and a
checkpoint of the parameters alone (int8 values; int4 two to a byte), which
gptjax/train/restore.py: load_run reads back as QuantizedArrays, so sample.py, evaluate.py and
convert.py logits use it as they use any run. The report gives the eval loss of both on the
run's own eval split, the weights' bytes in memory and on disk, and KV-cache sampling speed.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from gptjax import atomic
from gptjax.convert.workdir import check_new_folder
from gptjax.errors import ConfigError
from gptjax.model.build import build_model
from gptjax.model.decode import generate
from gptjax.model.quant import quantize_params, to_saved, tree_bytes
from gptjax.train.checkpoint import Checkpointer
from gptjax.train.restore import QUANTIZED, load_run, quantization, read_run_config
from gptjax.train.step import eval_step


def eval_loss(exp, params, data, batches: int) -> float:
    """Mean cross-entropy per target token over the first `batches` eval batches, on one device."""
    step = jax.jit(functools.partial(eval_step, model=build_model(exp, exp.model)))
    total = count = 0.0
    for batch in data.eval_batches(exp.train.batch_size, batches):
        s, c = step(params, {k: jnp.asarray(v) for k, v in batch.items()})
        total, count = total + float(s), count + float(c)
    return total / max(count, 1.0)


def sampling_speed(exp, params, tokens: int) -> float | None:
    """Tokens per second of KV-cache sampling (one row, after a compiling call); None for media models."""
    if exp.media is not None or tokens <= 0:
        return None
    prompt = np.zeros((1, 1), np.int32)
    run = lambda: np.asarray(generate(params, exp.model, prompt, tokens, jax.random.key(0), 0.8))  # noqa: E731
    run()
    t0 = time.perf_counter()
    run()
    return tokens / (time.perf_counter() - t0)


def disk_bytes(folder: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in pathlib.Path(folder).rglob("*") if p.is_file())


def save_params(folder: pathlib.Path, step: int, params, meta: dict) -> None:
    """A checkpoint of the parameters alone (no optimizer state), synchronously."""
    ckpt = Checkpointer(folder, keep=1, async_save=False)
    ckpt.save(step, {"step": np.asarray(step, np.int32), "params": params}, meta, force=True)
    ckpt.close()


def latest_step(workdir) -> int:
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        return ckpt.latest_step() or 0
    finally:
        ckpt.manager.close()


def check_source(workdir: pathlib.Path, out: pathlib.Path, bits: int):
    """The source's experiment, after refusing what cannot be quantized (before anything is read or written)."""
    if bits not in (4, 8):
        raise ConfigError(f"--bits {bits}: expected 8 or 4")
    check_new_folder(out, "--out")
    if quantization(workdir) is not None:
        raise ConfigError(f"{workdir} is already quantized (it holds {QUANTIZED}); quantize the full-precision "
                          "run it came from")
    exp = read_run_config(workdir)
    if not (workdir / "checkpoints").is_dir():
        raise ConfigError(f"{workdir} has no checkpoints/: train it first")
    return exp


def quantize_workdir(workdir, out, bits: int = 8, eval_batches: int = 0, sample_tokens: int = 256) -> dict:
    """Write `out`, the int`bits` copy of `workdir`, and return the measurements (see the module docstring)."""
    workdir, out = pathlib.Path(workdir), pathlib.Path(out)
    check_source(workdir, out, bits)
    exp, params, data = load_run(workdir, with_data=True)  # a LoRA run's adapters folded in
    qparams = quantize_params(params, bits)
    batches = eval_batches or exp.train.eval_batches
    report = {"workdir": str(workdir), "out": str(out), "bits": bits, "eval_batches": batches,
              "eval_loss_fp32": eval_loss(exp, params, data, batches),
              f"eval_loss_int{bits}": eval_loss(exp, qparams, data, batches)}
    fp32, q = report["eval_loss_fp32"], report[f"eval_loss_int{bits}"]
    report["eval_loss_change"] = (q - fp32) / fp32 if fp32 else math.nan
    report["weights_bytes_fp32"], report[f"weights_bytes_int{bits}"] = tree_bytes(params), tree_bytes(qparams)
    report["sample_tokens_per_s_fp32"] = sampling_speed(exp, params, sample_tokens)
    report[f"sample_tokens_per_s_int{bits}"] = sampling_speed(exp, qparams, sample_tokens)
    step = latest_step(workdir)
    plain = dataclasses.replace(exp, model=dataclasses.replace(exp.model, quant="none"),
                                optimizer=dataclasses.replace(exp.optimizer, lora_rank=0))
    info = {"bits": bits, "scheme": "weight-only, per output channel, symmetric absmax (qwix)",
            "source": str(workdir.absolute()), "step": step}
    with tempfile.TemporaryDirectory(dir=out.absolute().parent) as tmp:  # the same weights in float, to compare
        save_params(pathlib.Path(tmp), step, params, {})
        report["disk_bytes_fp32"] = disk_bytes(pathlib.Path(tmp) / "checkpoints")
    with atomic.new_folder(out) as tmp:
        atomic.write_text(tmp / "config.json", plain.to_json() + "\n")
        atomic.write_text(tmp / QUANTIZED, json.dumps(info, indent=1) + "\n")
        shutil.copytree(workdir / "tokenizer", tmp / "tokenizer")
        save_params(tmp, step, to_saved(qparams), {"quantized": info})
        report[f"disk_bytes_int{bits}"] = disk_bytes(tmp / "checkpoints")
    for kind in ("weights", "disk"):
        report[f"{kind}_ratio"] = report[f"{kind}_bytes_int{bits}"] / report[f"{kind}_bytes_fp32"]
    return report
