"""Assembling a run: the mesh, the divisibility checks, the vocabulary, the optimizer and the
compiled steps, in one place. Training, the dry run, the benchmark and restoring a workdir all
go through here.
"""
from __future__ import annotations

import dataclasses
import time

import jax

from gptjax.config import Experiment, Mesh
from gptjax.errors import ConfigError
from gptjax.parallel.mesh import check_divisible, make_mesh
from gptjax.train.optim import make_optimizer
from gptjax.train.step import Compiled, compile_steps, make_state_fns


def run_mesh(exp: Experiment):
    """The experiment's mesh over this process's devices, after checking the shapes split over it."""
    mesh = make_mesh(exp.mesh)
    check_divisible(exp, mesh)
    return mesh


def single_device_mesh():
    """A 1x1x1 mesh on the first device (restoring parameters to sample, evaluate or convert)."""
    return make_mesh(Mesh(1, 1, 1), jax.devices()[:1])


def newline_id(tokenizer) -> int | None:
    """The tokenizer's id for a newline when it writes one as a single token, else None."""
    try:
        ids = list(tokenizer.encode("\n"))
    except (ValueError, KeyError):  # a character alphabet without the newline
        return None
    return ids[0] if len(ids) == 1 else None


def resolved_model(exp: Experiment, vocab_size: int, line_break: int | None = None):
    """The model spec with the tokenizer's vocabulary size where the experiment leaves it at 0, and,
    for line-local layers, the tokenizer's newline id (`line_break`) where it leaves that at -1."""
    spec = exp.model
    if spec.line_local_layers and spec.line_break_id < 0:
        if line_break is None:
            raise ConfigError(f"model.line_local_layers={spec.line_local_layers} needs a newline token: this "
                              "tokenizer does not write a newline as one token; set model.line_break_id to "
                              "the id that ends a line, or model.line_local_layers=0")
        spec = dataclasses.replace(spec, line_break_id=line_break)
    if spec.vocab_size == 0:
        return dataclasses.replace(spec, vocab_size=vocab_size)
    if spec.vocab_size < vocab_size:
        raise ConfigError(f"model.vocab_size={spec.vocab_size} is smaller than the tokenizer's "
                          f"{vocab_size} symbols; use 0 to take the tokenizer's size")
    return spec


@dataclasses.dataclass
class Assembled:
    """Everything a run compiles: the resolved experiment, mesh, optimizer and jitted steps."""

    exp: Experiment  # with model.vocab_size resolved
    mesh: object
    tx: object
    schedule: object
    compiled: Compiled
    compile_s: float

    @property
    def spec(self):
        return self.exp.model


def assemble(exp: Experiment, example: dict, vocab_size: int, mesh=None, teacher=None,
             line_break: int | None = None) -> Assembled:
    """Compile `exp`'s steps for batches shaped like `example` (one row is enough) on `mesh`; with a
    distillation `teacher` (gptjax/train/distill.py: load_teacher) inside the train step. `line_break`:
    the tokenizer's newline id (`newline_id`), for line-local layers."""
    mesh = run_mesh(exp) if mesh is None else mesh
    spec = resolved_model(exp, vocab_size, line_break)
    tx, schedule = make_optimizer(exp.optimizer, exp.schedule, exp.train.steps)
    t0 = time.time()
    compiled = compile_steps(exp, spec, tx, schedule, mesh, example, teacher)
    return Assembled(dataclasses.replace(exp, model=spec), mesh, tx, schedule, compiled, time.time() - t0)


def abstract_state(exp: Experiment, example: dict, mesh=None):
    """Shapes, dtypes and shardings of `exp`'s train state (nothing compiled or allocated)."""
    mesh = single_device_mesh() if mesh is None else mesh
    tx, _ = make_optimizer(exp.optimizer, exp.schedule, exp.train.steps)
    return make_state_fns(exp, exp.model, tx, mesh, example)[2]


def fingerprint(exp: Experiment) -> dict:
    """What must match for a workdir's checkpoint to be resumed by this experiment."""
    return {"model": dataclasses.asdict(exp.model), "data": dataclasses.asdict(exp.data),
            "media": dataclasses.asdict(exp.media) if exp.media is not None else None}


def same_fingerprint(saved, current) -> bool:
    """Whether a saved fingerprint describes `current`. A field added to the code since the checkpoint
    was written is absent from the saved one; it matches when `current` holds that field's default."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return all(same_fingerprint(saved[k], current[k]) if k in saved else _is_default(k, current[k])
                   for k in current) and set(saved) <= set(current)
    return saved == current


def _is_default(name: str, value) -> bool:
    from gptjax.config.registry import CONFIG_KINDS

    defaults = [getattr(cls(), name) for cls in (*CONFIG_KINDS.values(), *_SECTIONS)
                if name in {f.name for f in dataclasses.fields(cls)}]
    return any(value == (dataclasses.asdict(d) if dataclasses.is_dataclass(d) else d) for d in defaults)


_SECTIONS = tuple(type(getattr(Experiment(), f.name)) for f in dataclasses.fields(Experiment)
                  if dataclasses.is_dataclass(getattr(Experiment(), f.name)))
