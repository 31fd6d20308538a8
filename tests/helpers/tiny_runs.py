"""Tiny text runs for the efficiency tests (quantization, LoRA, distillation): a generated corpus and
a GPT of a few thousand parameters that trains a handful of steps in seconds on one CPU device."""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import random

from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TextData, Train

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have "
         "an they you were her she there been one all we their when what no out up so said would").split()


def corpus(folder: pathlib.Path, lines: int = 3000, seed: int = 0) -> pathlib.Path:
    rng = random.Random(seed)
    path = folder / "corpus.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
                              for _ in range(lines)) + "\n")
    return path


def tiny_world(tmp_path_factory, name: str) -> tuple[pathlib.Path, pathlib.Path]:
    """(a new folder, a generated corpus in it), with the folder as the dataset cache and absl quiet."""
    root = tmp_path_factory.mktemp(name)
    os.environ["GPTJAX_CACHE_DIR"] = str(root / "cache")
    logging.getLogger("absl").setLevel(logging.ERROR)
    return root, corpus(root)


def experiment(text: pathlib.Path, *, steps: int = 4, n_layer: int = 1, d_model: int = 32, n_head: int = 2,
               **sections) -> Experiment:
    """A 1-layer, 32-wide GPT on `text` (characters), `steps` steps of batch 4, one device."""
    exp = Experiment(
        model=ModelSpec(n_layer=n_layer, n_head=n_head, d_model=d_model, max_seq_len=32),
        schedule=Schedule("constant", peak_lr=3e-3, warmup_steps=0),
        optimizer=Optimizer(weight_decay=0.0),
        data=TextData(dataset="text", files=str(text), tokenizer="char"),
        train=Train(steps=steps, batch_size=4, eval_every=steps, eval_batches=2, checkpoint_every=0,
                    sample_tokens=0, log_every=1),
        mesh=Mesh(cpu_devices=1), name="tiny")
    for name, changes in sections.items():
        exp = dataclasses.replace(exp, **{name: dataclasses.replace(getattr(exp, name), **changes)})
    return exp
