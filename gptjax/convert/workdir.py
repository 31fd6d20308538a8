"""The workdir an import produces, laid out as `gptjax/train/loop.py` lays out its runs.

`checkpoints/0/` (a TrainState: the imported params and a fresh optimizer
state), `config.json` (the Experiment), `tokenizer/`, and `experiment.py`,
which reproduces the architecture and fine-tunes from these weights. Written
into a hidden sibling folder and renamed into place (gptjax/atomic.py), so a failure leaves no
half-written workdir.
"""
from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from gptjax import atomic, config
from gptjax.errors import ConversionError
from gptjax.train.checkpoint import Checkpointer
from gptjax.train.optim import make_optimizer
from gptjax.train.restore import text_example
from gptjax.train.setup import abstract_state
from gptjax.train.step import TrainState


def check_new_folder(out: pathlib.Path, what: str) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConversionError(f"{what} {out} already exists and is not empty: pass a new folder")


def finetune_experiment(spec: config.ModelSpec, tokenizer_kind: str, workdir: pathlib.Path,
                        name: str) -> config.Experiment:
    """The imported architecture with a conservative fine-tuning recipe starting from `workdir`."""
    exp = config.Experiment(
        model=spec,
        schedule=config.Schedule("warmup_cosine", peak_lr=5e-5, warmup_steps=20, end_lr=5e-6),
        data=config.TextData(dataset="text", files="", tokenizer=tokenizer_kind, pretrained_tokenizer=True),
        train=config.Train(steps=500, batch_size=8, eval_every=100, eval_batches=10, checkpoint_every=100,
                           sample_tokens=100, init_from=str(workdir.absolute())),
        mesh=config.Mesh(), name=name)
    return exp.validate()


def _call(obj, all_fields: bool, always=()) -> str:
    """`Cls(field=value, ...)` source for a config dataclass (only non-defaults unless all_fields)."""
    default = None if all_fields else type(obj)()
    args = [f"        {f.name}={getattr(obj, f.name)!r}," for f in dataclasses.fields(obj)
            if all_fields or f.name in always or getattr(obj, f.name) != getattr(default, f.name)]
    return f"{type(obj).__name__}(\n" + "\n".join(args) + "\n    )" if args else f"{type(obj).__name__}()"


def experiment_source(exp: config.Experiment, source: str, n_params: int) -> str:
    wd = exp.train.init_from
    return f'''"""Fine-tune {source} ({n_params:,} parameters), imported by scripts/convert.py.

The imported weights are step 0 of this folder's checkpoints/, and train.init_from
points here, so either command starts from them (the first trains into a new
folder and leaves this one untouched; the second continues in this folder):

    python scripts/train.py {wd}/experiment.py --workdir runs/finetuned --set data.files='my_text/*.txt'
    python scripts/train.py {wd}/experiment.py --workdir {wd} --set data.files='my_text/*.txt'

Keep the model section as it is: the weights fit this shape only (a llama model
may lower model.max_seq_len, since rotary positions have no weights).
Expect: the first eval loss near the pretrained model's loss on your text, then falling.
"""
from gptjax.config import Experiment, ModelSpec, Optimizer, Schedule, TextData, Train

EXPERIMENT = Experiment(
    model={_call(exp.model, True)},
    schedule={_call(exp.schedule, False)},
    optimizer={_call(exp.optimizer, False)},
    data={_call(exp.data, False, always=("files",))},  # files: set with --set data.files=...
    train={_call(exp.train, False)},
    name={exp.name!r},
)
'''


def initial_state(exp: config.Experiment, params: dict) -> TrainState:
    """Step 0 with `params` (checked against the model's own parameter shapes) and a fresh optimizer."""
    abstract = abstract_state(exp, text_example(exp))
    want = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(abstract.params)}
    got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(params)}
    if want.keys() != got.keys() or any(tuple(want[k].shape) != tuple(got[k].shape) for k in want):
        bad = sorted(k for k in want.keys() | got.keys()
                     if k not in want or k not in got or tuple(want[k].shape) != tuple(got[k].shape))
        raise ConversionError(f"converted parameters do not fit the model (converter bug?): {bad[:5]}")
    params = jax.tree.map(lambda a, x: jax.device_put(np.asarray(x, a.dtype), a.sharding), abstract.params, params)
    tx, _ = make_optimizer(exp.optimizer, exp.schedule, exp.train.steps)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def write_workdir(out: pathlib.Path, exp: config.Experiment, params: dict, tokenizer, meta: dict,
                  experiment_py: str | None = None) -> None:
    """Write the whole workdir into a hidden sibling, then rename it to `out`."""
    check_new_folder(out, "workdir")
    state = initial_state(exp, params)
    with atomic.new_folder(out) as tmp:
        atomic.write_text(tmp / "config.json", exp.to_json() + "\n")
        tokenizer.save(tmp / "tokenizer")
        if experiment_py is not None:
            atomic.write_text(tmp / "experiment.py", experiment_py)
        ckpt = Checkpointer(tmp, keep=exp.train.keep_checkpoints, async_save=False)
        ckpt.save(0, state, meta, force=True)
        ckpt.close()
