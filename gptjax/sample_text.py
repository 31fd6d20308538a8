"""Load a trained workdir and turn prompts into text samples."""
from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from gptjax import config, sharding
from gptjax.checkpoint import Checkpointer
from gptjax.optim import make_optimizer
from gptjax.train_step import make_state_fns


def load_run(workdir):
    """(experiment, params, tokenizer) of the newest checkpoint in `workdir`, on one device."""
    from gptjax.data.tokenizers import load_tokenizer

    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").is_file():
        raise config.ConfigError(f"{workdir} is not a run folder: no config.json (train one with scripts/train.py)")
    exp = config.from_dict(config.Experiment, json.loads((workdir / "config.json").read_text()))
    ckpt = Checkpointer(workdir, async_save=False)
    if ckpt.latest_step() is None:
        raise config.ConfigError(f"{workdir} has no checkpoint yet")
    mesh = sharding.make_mesh(config.Mesh(1, 1, 1), jax.devices()[:1])
    tx, _ = make_optimizer(exp.optimizer, exp.schedule, exp.train.steps)
    example = {"inputs": np.zeros((1, exp.model.max_seq_len), np.int32)}
    _, _, abstract, _ = make_state_fns(exp, exp.model, tx, mesh, example)
    state, _ = ckpt.restore(abstract)
    ckpt.close()
    return exp, state.params, load_tokenizer(workdir / "tokenizer")


def sample_text(params, spec, tokenizer, prompt: str = "\n", n_tokens: int = 200, num_samples: int = 1,
                temperature: float = 0.8, top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    from gptjax.generate import generate

    ids = tokenizer.encode(prompt) or [0]
    prompt_BxP = np.tile(np.asarray(ids, np.int32)[None, -spec.max_seq_len:], (num_samples, 1))
    out = generate(params, spec, prompt_BxP, n_tokens, jax.random.key(seed), temperature, top_k, top_p)
    return [tokenizer.decode(row.tolist()) for row in np.asarray(out)]


def print_samples(params, spec, tokenizer, n_tokens=200, prompt="\n", num_samples=2, seed=0):
    for i, text in enumerate(sample_text(params, spec, tokenizer, prompt, n_tokens, num_samples, seed=seed)):
        print(f"---------- sample {i}\n{text}")
