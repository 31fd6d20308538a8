"""Restoring a trained run's parameters from its workdir, on one device (sampling, evaluation, export).

`load_run(workdir[, step=N])` gives (experiment, params, tokenizer) of a text or
multimodal run; with `with_data=True` the data object too (built with the
run's own tokenizer). The newest checkpoint that reads is used; a damaged
newer one is named in a warning (gptjax/train/checkpoint.py: restore_newest).
A LoRA run's adapters are folded into their kernels; a quantized workdir's
kernels stay integers, which the model dequantizes where it uses them.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from gptjax.config import Optimizer, read_config
from gptjax.data.build import build_data
from gptjax.data.tokenizers import load_tokenizer
from gptjax.errors import CheckpointReadError, ConfigError
from gptjax.model.quant import from_saved
from gptjax.train import lora
from gptjax.train.checkpoint import Checkpointer, load_state, restore_newest
from gptjax.train.ema import eval_params
from gptjax.train.setup import abstract_state

QUANTIZED = "quantized.json"  # in a workdir written by scripts/quantize.py: its checkpoint holds integers


def text_example(exp) -> dict:
    """One row shaped like a text batch (enough to create the parameters)."""
    return {"inputs": np.zeros((1, exp.model.max_seq_len), np.int32)}


def read_run_config(workdir):
    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").is_file():
        raise ConfigError(f"{workdir} is not a run folder: no config.json (train one with scripts/train.py)")
    return read_config(workdir / "config.json")


def restore_params(workdir, exp, example: dict, mesh=None, step: int | None = None):
    """The parameters of the newest readable checkpoint of `workdir` (or of checkpoint `step`), laid out for
    `exp` on `mesh` (default: one device). A LoRA run's come with their adapters apart (gptjax/train/lora.py:
    merge folds them in)."""
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        steps = ckpt.all_steps()
        if not steps:
            raise ConfigError(f"{workdir} has no checkpoint yet")
        if step is not None and step not in steps:
            raise ConfigError(f"{workdir} has no checkpoint of step {step}; its checkpoints: steps "
                              f"{', '.join(map(str, steps))}")
        abstract = abstract_state(exp, example, mesh)
        if step is None:
            state, _ = restore_newest(ckpt, lambda s: ckpt.restore(abstract, s)[0])
        else:
            try:
                state, _ = ckpt.restore(abstract, step)
            except Exception as e:  # noqa: BLE001 - Orbax and TensorStore raise many kinds; all mean: unreadable
                raise CheckpointReadError(f"checkpoint step {step} in {ckpt.directory} cannot be read "
                                          f"({type(e).__name__}); steps saved: {', '.join(map(str, steps))}") from None
        return eval_params(state.params, state.opt_state)
    finally:
        ckpt.manager.close()


def saved_steps(workdir) -> list[int]:
    """The steps `workdir` holds checkpoints of, oldest first."""
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        return sorted(ckpt.all_steps())
    finally:
        ckpt.manager.close()


def quantization(workdir) -> dict | None:
    """What gptjax/convert/quantize.py wrote about a quantized workdir (bits, source), or None."""
    path = pathlib.Path(workdir) / QUANTIZED
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} cannot be read ({e}); it is written by scripts/quantize.py") from None


def restore_quantized(workdir, exp, example: dict, bits: int):
    """A quantized workdir's parameters: QuantizedArrays for the kernels and embedding, on one device."""
    abstract = abstract_state(dataclasses.replace(exp, optimizer=Optimizer()), example).params
    saved = load_state(pathlib.Path(workdir) / "checkpoints")["params"]
    return from_saved(saved, abstract, bits)


def load_params_of(workdir, exp, example: dict, merge_lora: bool = True, mesh=None, step: int | None = None):
    """A run's parameters as the model takes them (the newest checkpoint's, or checkpoint `step`'s): LoRA
    adapters folded in (unless `merge_lora` is False), a quantized workdir's integers kept (the model
    dequantizes them where it uses them)."""
    q = quantization(workdir)
    if q is not None:
        if step is not None:
            raise ConfigError(f"{workdir} is quantized: it holds step {q.get('step', '?')} of "
                              f"{q.get('source', 'its source run')} alone; to score another step, pass that run")
        return restore_quantized(workdir, exp, example, q["bits"])
    params = restore_params(workdir, exp, example, mesh, step)
    return lora.merge(params, exp.optimizer) if merge_lora and exp.optimizer.lora_rank else params


def load_run(workdir, with_data: bool = False, merge_lora: bool = True, step: int | None = None):
    """(experiment, params, tokenizer) of a run, or (experiment, params, data) with `with_data`; the
    parameters of checkpoint `step` when given, else of the newest that reads."""
    workdir = pathlib.Path(workdir)
    exp = read_run_config(workdir)
    tokenizer_dir = workdir / "tokenizer"
    if with_data or exp.media is not None:  # media batches carry arrays whose shapes only the data knows
        data = build_data(exp, tokenizer_dir=tokenizer_dir)
        params = load_params_of(workdir, exp, next(iter(data.eval_batches(1, 1))), merge_lora, step=step)
        return exp, params, (data if with_data else data.tokenizer)
    try:
        tokenizer = load_tokenizer(tokenizer_dir)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"the tokenizer saved in {tokenizer_dir} cannot be read ({type(e).__name__}: {e}); "
                          "it is written by scripts/train.py with the run") from None
    return exp, load_params_of(workdir, exp, text_example(exp), merge_lora, step=step), tokenizer


# what an ensemble's members must share beyond their model's shape: how prompts and answers are written
# and, for --held_out, which examples are held out (gptjax/data/task_formats.py, task_builder.py)
TASK_FORMAT = ("task", "source_lang", "target_lang", "attention", "context_lines", "line_ages", "answer_space",
               "supporting_facts", "supporting_groups", "folder", "val_fraction", "split_seed", "held_out_by")


def _tokenizer_files(workdir) -> dict:
    folder = pathlib.Path(workdir) / "tokenizer"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}


def ensemble_mismatch(first, exp, name: str, first_name: str) -> str | None:
    """Why run `name` (experiment `exp`) cannot join an ensemble led by `first_name` (`first`), or None."""
    a, b = dataclasses.replace(first.model, dropout=0.0), dataclasses.replace(exp.model, dropout=0.0)
    if a != b:
        fields = [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]
        return (f"{name}'s model differs from {first_name}'s in " +
                ", ".join(f"model.{f} ({getattr(b, f)} against {getattr(a, f)})" for f in fields))
    if type(first.data) is not type(exp.data):
        return f"{name} was trained on other data ({getattr(exp.data, 'kind', '?')}) than {first_name}"
    fields = [f for f in TASK_FORMAT if getattr(first.data, f, None) != getattr(exp.data, f, None)]
    if fields:
        return (f"{name} writes its examples unlike {first_name}: " +
                ", ".join(f"data.{f} ({getattr(exp.data, f)!r} against {getattr(first.data, f)!r})" for f in fields))
    return None


def load_ensemble(workdirs, step: int | None = None):
    """(experiment, parameters stacked on a leading axis, tokenizer) of runs that share one model shape,
    tokenizer and task format (gptjax/model/ensemble.py averages their predictions): the first run's
    experiment and tokenizer; its checkpoint `step` (else its newest), the others' newest."""
    from gptjax.model.ensemble import stack

    names = [str(w) for w in workdirs]
    first, params, tokenizer = load_run(workdirs[0], step=step)
    words = _tokenizer_files(workdirs[0])
    members = [params]
    for workdir, name in zip(workdirs[1:], names[1:]):
        exp = read_run_config(workdir)
        why = ensemble_mismatch(first, exp, name, names[0])
        if why is None and _tokenizer_files(workdir) != words:
            why = (f"{name}'s tokenizer differs from {names[0]}'s (token ids would mean other words); train a "
                   f"member with the first's: copy {names[0]}/tokenizer into its workdir before scripts/train.py")
        if why:
            raise ConfigError(f"cannot ensemble these runs: {why}")
        members.append(load_run(workdir)[1])
    return first, stack(members, names), tokenizer
