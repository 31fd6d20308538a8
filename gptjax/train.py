"""The training loop: data, sharded state, the jitted step, eval, metrics, checkpoints.

`run(exp, workdir)` trains an Experiment; re-running it on the same workdir
resumes from the newest complete checkpoint and sees the same batches an
uninterrupted run would have seen.
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

from gptjax import flops, sharding
from gptjax.checkpoint import Checkpointer, load_params, merge_params
from gptjax.config import ConfigError, Experiment
from gptjax.guards import (CheckpointWriteError, NonFinitePolicy, PreemptionWatch, SpikeDetector,
                           quiet_failed_writes)
from gptjax.metrics import MetricsWriter
from gptjax.optim import make_optimizer
from gptjax.train_step import compile_steps

log = logging.getLogger(__name__)


def make_data(exp: Experiment, tokenizer_dir=None):
    """The experiment's data object: train_batches, eval_batches, tokenizer, vocab_size."""
    return exp.data.build(exp, tokenizer_dir)


def resolved_model(exp: Experiment, vocab_size: int):
    spec = exp.model
    if spec.vocab_size == 0:
        spec = dataclasses.replace(spec, vocab_size=vocab_size)
    elif spec.vocab_size < vocab_size:
        raise ConfigError(f"model.vocab_size={spec.vocab_size} is smaller than the tokenizer's "
                          f"{vocab_size} symbols; use 0 to take the tokenizer's size")
    return spec


def fingerprint(exp: Experiment) -> dict:
    """What must match for a workdir's checkpoint to be resumed by this experiment."""
    return {"model": dataclasses.asdict(exp.model), "data": dataclasses.asdict(exp.data),
            "media": dataclasses.asdict(exp.media) if exp.media is not None else None}


def global_batch(local: dict, shardings: dict) -> dict:
    """Assemble this process's rows into global jax.Arrays sharded over the mesh."""
    return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v)) for k, v in local.items()}


def evaluate(compiled, params, data, exp: Experiment) -> dict:
    total = count = 0.0
    mesh = next(iter(compiled.batch_sharding.values())).mesh
    for local in data.eval_batches(exp.train.batch_size, exp.train.eval_batches,
                                   *sharding.batch_process_slice(mesh)):
        s, c = compiled.eval_step(params, global_batch(local, compiled.batch_sharding))
        total, count = total + float(s), count + float(c)
    loss = total / max(count, 1.0)
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0)),
            "eval_bits_per_token": loss / math.log(2)}


@dataclasses.dataclass
class RunResult:
    state: object
    spec: object
    data: object
    losses: dict
    eval_loss: float | None
    wall_time: float
    preempted: bool = False


def prepare_workdir(exp: Experiment, workdir: pathlib.Path, ckpt: Checkpointer, force: bool) -> None:
    """Refuse to resume another experiment's checkpoints; write config.json."""
    if ckpt.latest_step() is not None and not force:
        saved = ckpt.restore_meta().get("fingerprint")
        if saved is not None and saved != json.loads(json.dumps(fingerprint(exp))):
            raise ConfigError(f"workdir {workdir} holds checkpoints of a different experiment "
                              "(model or data differ); use another --workdir, or --force to overwrite")


def run(exp: Experiment, workdir, *, force: bool = False, progress: bool = True,
        stop_after: int | None = None, on_step=None) -> RunResult:
    """Train `exp` in `workdir`. `stop_after` ends the loop early (as if interrupted)."""
    exp.validate()
    workdir = pathlib.Path(workdir)
    mesh = sharding.make_mesh(exp.mesh)
    sharding.check_divisible(exp, mesh)
    data = make_data(exp, tokenizer_dir=workdir / "tokenizer" if (workdir / "tokenizer").exists() else None)
    spec = resolved_model(exp, data.vocab_size)
    resolved = dataclasses.replace(exp, model=spec)
    # one real batch: its shapes compile the step, and reading it checks the data before anything is written
    example = next(iter(data.eval_batches(exp.train.batch_size, 1, *sharding.batch_process_slice(mesh))))

    primary = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    if force and (workdir / "checkpoints").exists() and primary:
        import shutil
        shutil.rmtree(workdir / "checkpoints")
    ckpt = Checkpointer(workdir, keep=exp.train.keep_checkpoints)
    prepare_workdir(resolved, workdir, ckpt, force)
    if primary:
        (workdir / "config.json").write_text(resolved.to_json() + "\n")
        data.tokenizer.save(workdir / "tokenizer")

    tx, schedule = make_optimizer(exp.optimizer, exp.schedule, exp.train.steps)
    t0 = time.time()
    compiled = compile_steps(exp, spec, tx, schedule, mesh, example)
    compile_time = time.time() - t0
    start = ckpt.latest_step()
    if start is not None:
        state, _ = ckpt.restore(compiled.abstract_state, start)
        log.info("resumed from step %d", start)
    else:
        state, start = compiled.init(jax.random.key(exp.train.seed)), 0
        if exp.train.init_from:
            params, copied = merge_params(state.params, load_params(exp.train.init_from))
            state = state.replace(params=params)
            log.info("initialised %d parameter arrays from %s", len(copied), exp.train.init_from)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    log.info("model: %s parameters; compile %.1fs; mesh %s", f"{n_params:,}", compile_time, dict(mesh.shape))

    writer = MetricsWriter(workdir, enabled=primary)
    meta = {"fingerprint": fingerprint(resolved)}
    tokens_per_step = exp.train.batch_size * spec.max_seq_len
    # MFU by the PaLM formula (6N + 12*L*H*Q*T FLOPs per token) over the devices' peak;
    # omitted where the peak is unknown (CPUs), never invented
    fpt = flops.flops_per_token(spec, spec.max_seq_len, "6N+attn")
    peak = flops.peak_flops_per_device(jax.devices()[0].device_kind, spec.dtype)
    end = exp.train.steps if stop_after is None else min(exp.train.steps, stop_after)
    losses, eval_loss, preempted = {}, None, False
    batches = data.train_batches(exp.train.batch_size, start, *sharding.batch_process_slice(mesh))
    bar = _progress(progress and primary, start, exp.train.steps)

    def say(message):
        if primary:
            bar.write(message) if not bar.disable else print(message, flush=True)
    watch = PreemptionWatch()
    nonfinite = NonFinitePolicy(exp.train.nonfinite, exp.train.max_skips, ckpt.latest_step)
    spikes = SpikeDetector(exp.train.spike_sigmas)
    t_start = t_log = time.time()
    pending, failing = [], False

    def flush():
        """Fetch the pending steps' metrics (waits for them), log them, apply the guards."""
        nonlocal pending, t_log
        if not pending:
            return
        fetched = jax.device_get(pending)
        now = time.time()
        rate = len(fetched) * tokens_per_step / max(now - t_log, 1e-9)
        pending, t_log = [], now
        for s, m in fetched:
            losses[s] = float(m["loss"])
            spike = spikes.observe(losses[s])
            if spike:
                log.warning("loss spike at step %d: %.4f (running mean %.4f)", s, losses[s], spikes.mean)
            writer.write(s, loss=m["loss"], lr=m["lr"], grad_norm=m["grad_norm"], tokens_per_sec=rate,
                         mfu=flops.mfu(rate, fpt, jax.device_count(), peak) if peak else None,
                         skipped=None if m["finite"] else 1.0, loss_spike=1.0 if spike else None)
            nonfinite.observe(s, m)
        bar.update(len(fetched))
        bar.set_postfix(loss=f"{losses[fetched[-1][0]]:.4f}", tok_s=f"{rate:,.0f}")

    in_flight = None  # step of the asynchronous save still being written

    def write_error(step, e):  # disk full, permissions, ... are reported, not hidden
        quiet_failed_writes()
        return CheckpointWriteError(f"checkpoint at step {step} could not be written ({type(e).__name__}: {e}); "
                                    f"the previous checkpoint (step {ckpt.latest_on_disk()}) is intact")

    def settle():
        """Wait for the in-flight save; its failure (surfacing only now) names its own step."""
        nonlocal in_flight
        step, in_flight = in_flight, None
        try:
            ckpt.wait()
        except Exception as e:  # noqa: BLE001
            raise write_error(step, e) from None

    def save(step):
        nonlocal in_flight
        flush()  # never checkpoint a state the guards have not seen
        settle()
        try:
            ckpt.save(step, state, meta, force=True)
        except Exception as e:  # noqa: BLE001
            raise write_error(step, e) from None
        in_flight = step

    try:
        for step in range(start, end):
            state, metrics = compiled.train_step(state, global_batch(next(batches), compiled.batch_sharding))
            pending.append((step, metrics))
            done = step + 1
            if done % exp.train.log_every == 0 or done == end:
                flush()
            if done % exp.train.eval_every == 0 or done == exp.train.steps:
                flush()
                ev = evaluate(compiled, state.params, data, exp)
                eval_loss = ev["eval_loss"]
                writer.write(done, **ev)
                say(f"step {done}: eval loss {eval_loss:.4f}")
                t_log = time.time()
            if exp.train.checkpoint_every and done % exp.train.checkpoint_every == 0 or done == exp.train.steps:
                save(done)
            if on_step is not None:
                on_step(done, state)
            # one process can ask whether its save is done without waiting; several must agree on when
            # to stop, so they learn of a failed write at the next save
            if in_flight is not None and jax.process_count() == 1 and not ckpt.saving():
                settle()
            if done < end and watch.should_stop(done):
                if ckpt.latest_step() != done:
                    save(done)
                settle()  # say "saved" only once it is on disk
                preempted = True
                say(f"preempted: saved a checkpoint at step {done}; rerun the same command to resume")
                break
        flush()
        settle()
    except BaseException:
        failing = True  # closing must not replace that error with its own
        raise
    finally:
        watch.close()
        bar.close()
        writer.close()
        try:
            ckpt.close()
        except Exception as e:  # noqa: BLE001
            quiet_failed_writes()
            if not failing:
                raise CheckpointWriteError(f"the last checkpoint could not be finished ({type(e).__name__}: "
                                           f"{e}); the newest complete one is step {ckpt.latest_on_disk()}") from None
            log.warning("closing the checkpointer after an error: %s: %s", type(e).__name__, e)
    return RunResult(state, spec, data, losses, eval_loss, time.time() - t_start, preempted)


def _progress(enabled: bool, start: int, total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, disable=not enabled, dynamic_ncols=True, desc="train")
    if not enabled:  # tqdm.write prints even when disabled; only process 0 should
        bar.write = lambda *args, **kwargs: None
    return bar
