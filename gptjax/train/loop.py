"""The training loop: data, sharded state, the jitted step, eval, metrics, checkpoints.

`run(exp, workdir)` trains an Experiment; re-running it on the same workdir
resumes from the newest readable checkpoint and sees the same batches an
uninterrupted run would have seen. A finished run re-run says so and returns.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import time

import jax
import numpy as np

from gptjax import atomic
from gptjax.cli import doing
from gptjax.data.build import build_data
from gptjax.errors import ConfigError
from gptjax.model import flops
from gptjax.model.weights import path_text
from gptjax.parallel.mesh import batch_process_slice
from gptjax.train import ema
from gptjax.train.checkpoint import (Checkpointer, Saver, load_params, merge_params, param_matches,
                                     restore_newest)
from gptjax.train.distill import check_teacher, load_teacher
from gptjax.train.guards import Guards, PreemptionWatch
from gptjax.train.lora import is_adapter, lora_trains
from gptjax.train.metrics import RunLog
from gptjax.train.restore import quantization
from gptjax.train.setup import assemble, fingerprint, newline_id, run_mesh, same_fingerprint

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunResult:
    state: object
    spec: object
    data: object
    losses: dict
    eval_loss: float | None
    wall_time: float
    preempted: bool = False
    start_step: int = 0  # where this call began (== exp.train.steps: the run was already finished)


def global_batch(local: dict, shardings: dict) -> dict:
    """Assemble this process's rows into global jax.Arrays sharded over the mesh."""
    return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v)) for k, v in local.items()}


def evaluate(compiled, params, data, exp) -> dict:
    total = count = 0.0
    mesh = next(iter(compiled.batch_sharding.values())).mesh
    for local in data.eval_batches(exp.train.batch_size, exp.train.eval_batches, *batch_process_slice(mesh)):
        s, c = compiled.eval_step(params, global_batch(local, compiled.batch_sharding))
        total, count = total + float(s), count + float(c)
    loss = total / max(count, 1.0)
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0)), "eval_bits_per_token": loss / math.log(2)}


def run(exp, workdir, *, force: bool = False, progress: bool = True, stop_after: int | None = None,
        on_step=None) -> RunResult:
    """Train `exp` in `workdir`. `stop_after` ends the loop early (as if interrupted)."""
    exp, workdir, t = exp.validate(), pathlib.Path(workdir), exp.train
    check_workdir(workdir)
    fresh = not (workdir / "checkpoints").is_dir()  # init_from matters only to a run that has not started
    if t.init_from and fresh and not (pathlib.Path(t.init_from) / "checkpoints").is_dir():
        raise ConfigError(f"train.init_from={t.init_from}: not a run folder (no checkpoints/ in it)")
    refuse_quantized(workdir, t)
    with doing("preparing the data"):
        mesh = run_mesh(exp)
        data = build_data(exp, tokenizer_dir=workdir / "tokenizer" if (workdir / "tokenizer").exists() else None)
        # one real batch: its shapes compile the step, and reading it checks the data before anything is written
        example = next(iter(data.eval_batches(t.batch_size, 1, *batch_process_slice(mesh))))
    teacher = teacher_of(exp, data, mesh)
    with doing("compiling the steps"):
        run_ = assemble(exp, example, data.vocab_size, mesh, teacher, newline_id(data.tokenizer))
    compiled, spec, primary = run_.compiled, run_.spec, jax.process_index() == 0
    init_params = pretrained(run_, t) if fresh else None  # read and checked before the workdir is touched
    with doing("opening the workdir"):
        ckpt = open_workdir(run_.exp, workdir, force, primary)
    with doing("restoring the checkpoint"):
        state, start = initial_state(run_, ckpt, init_params)
    log.info("model: %s parameters; compile %.1fs; mesh %s",
             f"{sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params)):,}", run_.compile_s, dict(mesh.shape))
    log.info("%s", footprint(state, exp.optimizer.lora_also_train))
    if start >= t.steps:  # finished: leave the workdir as it is
        ckpt.close()
        return RunResult(state, spec, data, {}, None, 0.0, start_step=start)
    if primary:
        atomic.write_text(workdir / "config.json", run_.exp.to_json() + "\n")
        data.tokenizer.save(workdir / "tokenizer")
    fpt, peak = flops.flops_per_token(spec, spec.max_seq_len), flops.matmul_peak_per_device(
        jax.devices()[0].device_kind, spec.dtype, jax.config.jax_default_matmul_precision)
    mfu = (lambda rate: flops.mfu(rate, fpt, jax.device_count(), peak)) if peak else None  # None on CPUs
    runlog = RunLog(workdir, primary, progress, start, t.steps, t.batch_size * spec.max_seq_len,
                    Guards(t, ckpt.latest_step), mfu)
    saver, watch = Saver(ckpt, {"fingerprint": fingerprint(run_.exp)}), PreemptionWatch()
    end, eval_loss, preempted, failing, t0 = min(t.steps, stop_after or t.steps), None, False, False, time.time()
    batches = data.train_batches(t.batch_size, start, *batch_process_slice(mesh))
    try:
        for step in range(start, end):
            with doing(f"training (step {step})"):
                state, metrics = compiled.train_step(state, global_batch(next(batches), compiled.batch_sharding))
            runlog.add(step, metrics)
            done = step + 1
            if done % t.log_every == 0 or done == end:
                runlog.flush()
            if done % t.eval_every == 0 or done == t.steps:
                runlog.flush()
                ev = evaluate(compiled, ema.eval_params(state.params, state.opt_state), data, exp)
                runlog.evaluated(done, ev)
                eval_loss = ev["eval_loss"]
            if t.checkpoint_every and done % t.checkpoint_every == 0 or done == t.steps:
                runlog.flush()  # never checkpoint a state the guards have not seen
                saver.save(done, state)
            if on_step is not None:
                on_step(done, state)
            saver.poll()
            if done < end and watch.should_stop(done):
                if ckpt.latest_step() != done:
                    runlog.flush()
                    saver.save(done, state)
                saver.settle()  # say "saved" only once it is on disk
                preempted = True
                runlog.say(f"preempted: saved a checkpoint at step {done}; rerun the same command to resume")
                break
        runlog.flush()
        saver.settle()
    except BaseException:
        failing = True  # closing must not replace that error with its own
        raise
    finally:
        watch.close()
        runlog.close()
        saver.close(failing)
    return RunResult(state, spec, data, runlog.losses, eval_loss, time.time() - t0, preempted, start)


def refuse_quantized(workdir, t) -> None:
    for key, folder in (("--workdir", workdir), ("train.init_from", t.init_from)):
        if folder and quantization(folder) is not None:
            raise ConfigError(f"{key} {folder} is a quantized workdir (scripts/quantize.py): it samples and "
                              "evaluates, it does not train; use the full-precision run it came from")


def teacher_of(exp, data, mesh):
    """train.distill_from's teacher on `mesh`, after checking it reads this run's tokens; None without one."""
    if not exp.train.distill_from:
        return None
    with doing(f"loading the teacher {exp.train.distill_from}"):
        return load_teacher(exp, check_teacher(exp, data.tokenizer, data.vocab_size), mesh)


def footprint(state, also: str = "") -> str:
    """How many parameters train, and the optimizer state's size: what LoRA and freezing save."""
    leaves = jax.tree_util.tree_leaves_with_path(state.params)
    trained = [v for k, v in leaves if is_adapter(path_text(k))]
    trained = trained and [v for k, v in leaves if lora_trains(path_text(k), also)]
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    n = sum(int(np.prod(x.shape)) for x in trained)
    opt = sum(x.nbytes for x in jax.tree.leaves(state.opt_state) if hasattr(x, "nbytes"))
    return (f"trained: {n:,} of {total:,} parameters ({100 * n / max(total, 1):.2f}%); optimizer state "
            f"{opt / 2**20:.2f} MiB" if trained else f"optimizer state {opt / 2**20:.2f} MiB")


def check_workdir(workdir: pathlib.Path) -> None:
    """Refuse, before any work, a workdir that is a file, lies under a file, or cannot be written."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} is a file; pass a folder (it is created if missing)")
    existing = next(p for p in (workdir, *workdir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"--workdir {workdir}: {existing} is a file, so no folder can be made under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--workdir {workdir}: {existing} is not writable (read-only, or no permission); "
                          "pass a folder you can write to")


def open_workdir(exp, workdir: pathlib.Path, force: bool, primary: bool) -> Checkpointer:
    """The workdir's checkpointer, after refusing another experiment's checkpoints. `force` deletes
    another experiment's checkpoints."""
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(workdir, keep=exp.train.keep_checkpoints)
    if ckpt.latest_step() is not None:
        saved = restore_newest(ckpt, ckpt.restore_meta)[0].get("fingerprint") if not force else None
        if saved is not None and not same_fingerprint(saved, json.loads(json.dumps(fingerprint(exp)))):
            ckpt.close()
            raise ConfigError(f"workdir {workdir} holds checkpoints of a different experiment "
                              "(model or data differ); use another --workdir, or --force to overwrite")
        if force and primary:
            import shutil

            ckpt.close()
            shutil.rmtree(workdir / "checkpoints")
            ckpt = Checkpointer(workdir, keep=exp.train.keep_checkpoints)
    return ckpt


def pretrained(run_, t):
    """The parameters of train.init_from, after checking they fit (all, or some with init_from_partial)."""
    if not t.init_from:
        return None
    source = load_params(t.init_from)
    copied, kept = param_matches(run_.compiled.abstract_state.params, source)
    kept = [k for k in kept if not is_adapter(k)]  # LoRA's adapters are new by design
    if not copied or (kept and not t.init_from_partial):
        raise ConfigError(
            f"train.init_from={t.init_from}: {len(copied)} of {len(copied) + len(kept)} parameter arrays match by "
            f"name and shape (not loaded: {', '.join(kept[:6])}{' ...' if len(kept) > 6 else ''}); "
            + ("the runs have different architectures" if not copied else
               "set train.init_from_partial=true to start the rest from scratch"))
    log.info("initialising %d parameter arrays from %s%s", len(copied), t.init_from,
             f"; from scratch: {', '.join(kept)}" if kept else "")
    return source


def initial_state(run_, ckpt: Checkpointer, init_params) -> tuple[object, int]:
    """(state, step): resumed from the newest readable checkpoint, else fresh (with `init_params` where
    train.init_from gave them)."""
    compiled = run_.compiled
    state, step = restore_newest(ckpt, lambda s: ckpt.restore(compiled.abstract_state, s)[0], set_aside=True)
    if state is not None:
        log.info("resumed from step %d", step)
        return state, step
    state = compiled.init(jax.random.key(run_.exp.train.seed))
    if init_params is not None:
        params = merge_params(state.params, init_params)
        state = state.replace(params=params, opt_state=ema.restart(state.opt_state, params))
    return state, 0
