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
import pathlib
import time

import jax
import numpy as np

from gptjax.cli import doing
from gptjax.data.build import build_data
from gptjax.errors import ConfigError
from gptjax.model import flops
from gptjax.parallel.mesh import batch_process_slice
from gptjax.train.checkpoint import Checkpointer, Saver, load_params, merge_params, restore_newest
from gptjax.train.guards import Guards, PreemptionWatch
from gptjax.train.metrics import RunLog
from gptjax.train.setup import assemble, fingerprint, run_mesh, same_fingerprint

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
    with doing("preparing the data"):
        mesh = run_mesh(exp)
        data = build_data(exp, tokenizer_dir=workdir / "tokenizer" if (workdir / "tokenizer").exists() else None)
        # one real batch: its shapes compile the step, and reading it checks the data before anything is written
        example = next(iter(data.eval_batches(t.batch_size, 1, *batch_process_slice(mesh))))
    with doing("compiling the steps"):
        run_ = assemble(exp, example, data.vocab_size, mesh)
    compiled, spec, primary = run_.compiled, run_.spec, jax.process_index() == 0
    with doing("opening the workdir"):
        ckpt = open_workdir(run_.exp, workdir, force, data.tokenizer, primary)
    with doing("restoring the checkpoint"):
        state, start = initial_state(run_, ckpt, workdir)
    log.info("model: %s parameters; compile %.1fs; mesh %s",
             f"{sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params)):,}", run_.compile_s, dict(mesh.shape))
    if start >= t.steps:
        ckpt.close()
        return RunResult(state, spec, data, {}, None, 0.0, start_step=start)
    fpt, peak = flops.flops_per_token(spec, spec.max_seq_len), flops.peak_flops_per_device(jax.devices()[0].device_kind, spec.dtype)
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
                ev = evaluate(compiled, state.params, data, exp)
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


def open_workdir(exp, workdir: pathlib.Path, force: bool, tokenizer, primary: bool) -> Checkpointer:
    """The workdir's checkpointer, after refusing another experiment's checkpoints; writes config.json
    and the tokenizer. `force` moves another experiment's checkpoints out of the way (deleting them)."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} is a file; pass a folder (it is created if missing)")
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(workdir, keep=exp.train.keep_checkpoints)
    if ckpt.latest_step() is not None:
        saved = ckpt.restore_meta().get("fingerprint") if not force else None
        if saved is not None and not same_fingerprint(saved, json.loads(json.dumps(fingerprint(exp)))):
            ckpt.close()
            raise ConfigError(f"workdir {workdir} holds checkpoints of a different experiment "
                              "(model or data differ); use another --workdir, or --force to overwrite")
        if force and primary:
            import shutil

            ckpt.close()
            shutil.rmtree(workdir / "checkpoints")
            ckpt = Checkpointer(workdir, keep=exp.train.keep_checkpoints)
    if primary:
        from gptjax import atomic

        atomic.write_text(workdir / "config.json", exp.to_json() + "\n")
        tokenizer.save(workdir / "tokenizer")
    return ckpt


def initial_state(run_, ckpt: Checkpointer, workdir) -> tuple[object, int]:
    """(state, step): resumed from the newest readable checkpoint, else fresh (from train.init_from's
    parameters when it names a run)."""
    compiled, t = run_.compiled, run_.exp.train
    state, step = restore_newest(ckpt, lambda s: ckpt.restore(compiled.abstract_state, s)[0], set_aside=True)
    if state is not None:
        log.info("resumed from step %d", step)
        return state, step
    state = compiled.init(jax.random.key(t.seed))
    if t.init_from:
        params, copied, kept = merge_params(state.params, load_params(t.init_from))
        if not copied or (kept and not t.init_from_partial):
            raise ConfigError(
                f"train.init_from={t.init_from}: {len(copied)} of {len(copied) + len(kept)} parameter arrays match "
                f"by name and shape (not loaded: {', '.join(kept[:6])}{' ...' if len(kept) > 6 else ''}); "
                + ("the runs have different architectures" if not copied else
                   "set train.init_from_partial=true to start the rest from scratch"))
        state = state.replace(params=params)
        log.info("initialised %d parameter arrays from %s%s", len(copied), t.init_from,
                 f"; from scratch: {', '.join(kept)}" if kept else "")
    return state, 0
