"""Restoring a trained run's parameters from its workdir, on one device (sampling, evaluation, export).

`load_run(workdir)` gives (experiment, params, tokenizer) of a text or
multimodal run; with `with_data=True` the data object too (built with the
run's own tokenizer). The newest checkpoint that reads is used; a damaged
newer one is named in a warning (gptjax/train/checkpoint.py: restore_newest).
"""
from __future__ import annotations

import pathlib

import numpy as np

from gptjax.config import read_config
from gptjax.data.build import build_data
from gptjax.data.tokenizers import load_tokenizer
from gptjax.errors import ConfigError
from gptjax.train.checkpoint import Checkpointer, restore_newest
from gptjax.train.setup import abstract_state


def text_example(exp) -> dict:
    """One row shaped like a text batch (enough to create the parameters)."""
    return {"inputs": np.zeros((1, exp.model.max_seq_len), np.int32)}


def read_run_config(workdir):
    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").is_file():
        raise ConfigError(f"{workdir} is not a run folder: no config.json (train one with scripts/train.py)")
    return read_config(workdir / "config.json")


def restore_params(workdir, exp, example: dict):
    """The parameters of the newest readable checkpoint of `workdir`, laid out for `exp` on one device."""
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        if not ckpt.all_steps():
            raise ConfigError(f"{workdir} has no checkpoint yet")
        abstract = abstract_state(exp, example)
        state, _ = restore_newest(ckpt, lambda step: ckpt.restore(abstract, step)[0])
        return state.params
    finally:
        ckpt.manager.close()


def load_run(workdir, with_data: bool = False):
    """(experiment, params, tokenizer) of a run, or (experiment, params, data) with `with_data`."""
    workdir = pathlib.Path(workdir)
    exp = read_run_config(workdir)
    tokenizer_dir = workdir / "tokenizer"
    if with_data or exp.media is not None:  # media batches carry arrays whose shapes only the data knows
        data = build_data(exp, tokenizer_dir=tokenizer_dir)
        params = restore_params(workdir, exp, next(iter(data.eval_batches(1, 1))))
        return exp, params, (data if with_data else data.tokenizer)
    try:
        tokenizer = load_tokenizer(tokenizer_dir)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"the tokenizer saved in {tokenizer_dir} cannot be read ({type(e).__name__}: {e}); "
                          "it is written by scripts/train.py with the run") from None
    return exp, restore_params(workdir, exp, text_example(exp)), tokenizer
