"""Checkpoint averaging: a run's last checkpoints -> a plain workdir holding their mean parameters.

    average_workdir(workdir, out, steps=[1000, 1500])   or   average_workdir(workdir, out, last=3)

The mean of the last few checkpoints of one run often scores better than the last alone (fairseq's
scripts/average_checkpoints.py; Vaswani et al. 2017 averaged the last 5 or 20). Orbax and Optax have
no such tool, so it is written here: each checkpoint is read as evaluation reads it (LoRA adapters
folded in) and summed in float64. The new workdir is laid out like an imported one (config.json,
tokenizer/, one checkpoint); `evaluate.py`, `sample.py`, `quantize.py` and export read it like any run.
"""
from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np

from gptjax.convert.workdir import check_new_folder, write_workdir
from gptjax.errors import ConversionError
from gptjax.train.restore import load_run, quantization, read_run_config, saved_steps


def chosen_steps(workdir, steps: list[int] | None, last: int | None) -> list[int]:
    """The checkpoints to average: `steps` (each must be saved) or the `last` ones; two or more."""
    saved = saved_steps(workdir)
    have = f"its checkpoints: steps {', '.join(map(str, saved))}" if saved else "it has no checkpoint yet"
    if (steps is None) == (last is None):
        raise ConversionError("pass either --steps N,M,... or --last K (the checkpoints to average)")
    if last is not None:
        if not 2 <= last <= len(saved):
            raise ConversionError(f"--last {last}: expected 2 to {len(saved)} for {workdir} ({have})")
        return saved[-last:]
    chosen = sorted(set(steps))
    missing = [s for s in chosen if s not in saved]
    if missing:
        raise ConversionError(f"{workdir} has no checkpoint of step {', '.join(map(str, missing))}; {have}")
    if len(chosen) < 2:
        raise ConversionError(f"--steps {','.join(map(str, steps))}: averaging needs two or more different "
                              f"checkpoints ({have})")
    return chosen


def average_workdir(workdir, out, steps: list[int] | None = None, last: int | None = None) -> str:
    """Write `out`, the mean of the chosen checkpoints of `workdir`; returns a line to print."""
    workdir, out = pathlib.Path(workdir), pathlib.Path(out)
    check_new_folder(out, "--out")
    exp = read_run_config(workdir)
    if quantization(workdir) is not None:
        raise ConversionError(f"{workdir} is quantized (one checkpoint of integers); average the run it came "
                              "from, then quantize the average")
    if exp.media is not None:
        raise ConversionError(f"{workdir} is a multimodal run; checkpoint averaging writes text and task runs")
    chosen = chosen_steps(workdir, steps, last)
    total = tokenizer = None
    for step in chosen:
        _, params, tokenizer = load_run(workdir, step=step)
        params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
        total = params if total is None else jax.tree.map(np.add, total, params)
    mean = jax.tree.map(lambda x: x / len(chosen), total)  # cast to the model's parameter dtype on writing
    plain = dataclasses.replace(exp, optimizer=dataclasses.replace(exp.optimizer, lora_rank=0),
                                train=dataclasses.replace(exp.train, init_from=""))
    write_workdir(out, plain, mean, tokenizer, {"averaged": {"from": str(workdir.absolute()), "steps": chosen}})
    return f"averaged the checkpoints of steps {', '.join(map(str, chosen))} of {workdir} into {out}"
