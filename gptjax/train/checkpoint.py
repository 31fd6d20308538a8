"""Orbax checkpoints of the train state, with the run's position in the data.

Saves are asynchronous; Orbax writes each step into a temporary folder and
renames it only when complete, so a killed write is never read as a checkpoint.
The data position is the step itself (the data pipeline is a pure function of
the step), stored with the run's config fingerprint in a small JSON item.

`Checkpointer` wraps Orbax's manager; `Saver` is the loop's side of it (one
save in flight, its failure reported with its own step); `restore_newest`
falls back to an older step when the newest cannot be read.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import shutil
import sys
import time

import jax
import orbax.checkpoint as ocp

from gptjax.errors import CheckpointReadError, CheckpointWriteError, ConfigError
from gptjax.train.ema import saved_eval_params

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, workdir, keep: int = 3, async_save: bool = True, read_only: bool = False,
                 directory=None):
        """Checkpoints in `workdir`/checkpoints (or in `directory`, when given)."""
        self.directory = pathlib.Path(directory or pathlib.Path(workdir) / "checkpoints").absolute()
        self.workdir = self.directory.parent
        with _quiet_orbax() if read_only else contextlib.nullcontext():  # "directory is read only": as asked
            options = ocp.CheckpointManagerOptions(max_to_keep=None if read_only else keep, create=not read_only,
                                                   enable_async_checkpointing=async_save, read_only=read_only)
            self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_on_disk(self) -> int | None:
        """The newest complete checkpoint in the folder (after a failed save, the manager's list may not say)."""
        try:
            self.manager.reload()
        except OSError:  # an unreadable folder: keep what the manager knew
            pass
        return self.manager.latest_step()

    def saving(self) -> bool:
        """Whether an asynchronous save is still being written (does not wait)."""
        return self.manager.is_saving_in_progress()

    def check_writable(self) -> None:
        """Raise OSError now if the folder cannot take a file (read-only, no permission, no space left).

        Orbax creates the step folder in a background thread; when that fails, its other
        writer threads wait out their timeout (minutes) before the process can exit.
        """
        probe = self.directory / f".write_probe.{jax.process_index()}"
        with open(probe, "wb") as f:
            try:
                f.write(bytes(4096))
                f.flush()
                os.fsync(f.fileno())
            finally:
                probe.unlink()

    def save(self, step: int, state, meta: dict, force: bool = False) -> bool:
        self.check_writable()
        return self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)

    def restore(self, abstract_state, step: int | None = None):
        """Restore (state, meta) onto the shardings carried by `abstract_state`."""
        step = self.latest_step() if step is None else step
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]

    def restore_meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def restore_newest(ckpt: Checkpointer, read, set_aside: bool = False):
    """`read(step)` of the newest checkpoint that reads; (result, step), or (None, None) with none saved.

    A step that fails to read is named in a warning and the next older one is
    tried. With `set_aside` (a run that will write again) a damaged step is
    moved to workdir/damaged_checkpoints/ rather than left where the run would
    save over it. CheckpointReadError when no step reads.
    """
    steps = ckpt.all_steps()
    damaged = []
    # Before the first read, not after its failure: a damaged step's abandoned reader callbacks
    # can fail on another thread ("Event loop is closed") while that failure is still being raised.
    quiet_failed_reads()
    for step in reversed(steps):
        try:
            result = read(step)
        except Exception as e:  # noqa: BLE001 - any failure to read means: try an older step
            quiet_orbax_leftovers()
            damaged.append(step)
            why = str(e).split(". See full")[0].splitlines()[0][:200] if str(e) else ""  # TensorStore's are long
            log.warning("checkpoint step %d in %s cannot be read (%s: %s); trying an older one", step,
                        ckpt.directory, type(e).__name__, why)
            continue
        if damaged:
            log.warning("restored step %d: newer checkpoint(s) %s are damaged%s", step, damaged,
                        f"; moved to {_set_aside(ckpt, damaged)}" if set_aside else "")
        return result, step
    if damaged:
        raise CheckpointReadError(
            f"no checkpoint in {ckpt.directory} can be read (damaged steps: {damaged}); remove that folder "
            "(or move it away) to start over, or restore it from a copy")
    return None, None


def _set_aside(ckpt: Checkpointer, steps) -> pathlib.Path:
    target = ckpt.workdir / "damaged_checkpoints" / time.strftime("%Y%m%d-%H%M%S")
    if jax.process_index() == 0:
        target.mkdir(parents=True, exist_ok=True)
        for step in steps:
            shutil.move(str(ckpt.directory / str(step)), str(target / str(step)))
    ckpt.manager.reload()
    return target


@contextlib.contextmanager
def _quiet_orbax():
    """Hold back Orbax's warnings (logged through absl) for the block."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


def quiet_orbax_leftovers() -> None:
    """After a failed save or restore has been reported, drop what Orbax's abandoned tasks print
    of the same error when they are collected, often at exit, after the one line the user needs."""
    quiet_failed_writes()
    quiet_failed_reads()


def quiet_failed_writes() -> None:
    """Drop asyncio's "exception was never retrieved" copies of an error already reported
    (Orbax's other writer tasks fail alike: no space, read-only)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _UnretrievedWrites) for f in logger.filters):
        logger.addFilter(_UnretrievedWrites())


def quiet_failed_reads() -> None:
    """After a failed restore has been reported, drop what Orbax's abandoned reader coroutines print
    when they are collected ("Exception ignored in <coroutine ...>", "Event loop is closed"), often
    after the one line that tells the user what happened and what to do."""
    previous = sys.unraisablehook
    if getattr(previous, "gptjax_quiet", False):
        return

    def hook(unraisable):
        if not ("coroutine" in repr(unraisable.object) or _loop_closed(unraisable.exc_value)):
            previous(unraisable)
    hook.gptjax_quiet = True
    sys.unraisablehook = hook
    # a callback run from TensorStore's threads may report the same error through sys.excepthook
    previous_except = sys.excepthook

    def excepthook(kind, value, tb):
        if not _loop_closed(value):
            previous_except(kind, value, tb)
    sys.excepthook = excepthook


def _loop_closed(exc) -> bool:
    return isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)


class _UnretrievedWrites(logging.Filter):
    def filter(self, record):
        # "Task / Future / _GatheringFuture exception was never retrieved"
        return "exception was never retrieved" not in record.getMessage().split("\n", 1)[0]


class Saver:
    """The training loop's checkpoints: at most one asynchronous save in flight, and every
    failure reported as a CheckpointWriteError naming its step and the newest intact one."""

    def __init__(self, ckpt: Checkpointer, meta: dict):
        self.ckpt, self.meta = ckpt, meta
        self.in_flight = None  # step of the save still being written

    def _error(self, step, e) -> CheckpointWriteError:  # disk full, permissions, ... are reported, not hidden
        quiet_orbax_leftovers()
        latest = self.ckpt.latest_on_disk()
        kept = ("no earlier checkpoint was saved, so a restart begins at step 0" if latest is None
                else f"the previous checkpoint (step {latest}) is intact")
        return CheckpointWriteError(f"checkpoint at step {step} could not be written ({type(e).__name__}: {e}); {kept}")

    def settle(self) -> None:
        """Wait for the save in flight; its failure (surfacing only now) names its own step."""
        step, self.in_flight = self.in_flight, None
        try:
            self.ckpt.wait()
        except Exception as e:  # noqa: BLE001
            raise self._error(step, e) from None

    def save(self, step: int, state) -> None:
        self.settle()
        try:
            self.ckpt.save(step, state, self.meta, force=True)
        except Exception as e:  # noqa: BLE001
            raise self._error(step, e) from None
        self.in_flight = step

    def poll(self) -> None:
        """Settle a finished save without waiting. One process can ask; several must agree on
        when to stop, so they learn of a failed write at the next save."""
        if self.in_flight is not None and jax.process_count() == 1 and not self.ckpt.saving():
            self.settle()

    def close(self, failing: bool) -> None:
        """Finish the last save. While another error is being raised, only log this one."""
        try:
            self.ckpt.close()
        except Exception as e:  # noqa: BLE001
            quiet_orbax_leftovers()
            if not failing:
                raise CheckpointWriteError(f"the last checkpoint could not be finished ({type(e).__name__}: "
                                           f"{e}); the newest complete one is step {self.ckpt.latest_on_disk()}"
                                           ) from None
            log.warning("closing the checkpointer after an error: %s: %s", type(e).__name__, e)


def load_state(directory, step: int | None = None) -> dict:
    """The train state a checkpoint folder holds (default: the newest readable step), as saved, on
    this process's first device: no target structure needed, and any device count or mesh may have
    written it (a 2-device CPU run, a TPU slice)."""
    directory = pathlib.Path(directory).absolute()
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoint folder {directory}")
    ckpt = Checkpointer(None, read_only=True, directory=directory)
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def read(s):
        with _quiet_orbax():  # it warns that the step's metadata file is one level up
            saved = ocp.StandardCheckpointer().metadata(directory / str(s) / "state").item_metadata
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), saved)
        return ckpt.manager.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]

    try:
        if step is not None:
            return read(step)
        state, step = restore_newest(ckpt, read)
        if step is None:
            raise FileNotFoundError(f"no checkpoint found in {directory}")
        return state
    finally:
        ckpt.manager.close()


def load_params(workdir) -> dict:
    """The parameters of another run's newest checkpoint (their moving average where the run kept one,
    gptjax/train/ema.py), as saved (no target structure needed)."""
    if not pathlib.Path(workdir).is_dir():
        raise ConfigError(f"train.init_from={workdir}: no such run folder")
    try:
        return saved_eval_params(load_state(pathlib.Path(workdir) / "checkpoints"))
    except FileNotFoundError as e:
        raise ConfigError(f"train.init_from={workdir}: {e}") from None


def param_matches(params, source) -> tuple[list[str], list[str]]:
    """(paths of `params` that `source` holds with the same shape, paths it does not); shapes only."""
    src = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(source)}
    leaves = [(jax.tree_util.keystr(k), tuple(v.shape)) for k, v in jax.tree_util.tree_leaves_with_path(params)]
    return [k for k, shape in leaves if src.get(k) == shape], [k for k, shape in leaves if src.get(k) != shape]


def merge_params(params, source):
    """`params` with every leaf that `source` holds under the same path and shape copied from it."""
    flat_src = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(source)}

    def take(path, leaf):
        src = flat_src.get(jax.tree_util.keystr(path))
        if src is not None and tuple(src.shape) == tuple(leaf.shape):
            return jax.device_put(jax.numpy.asarray(src, leaf.dtype), leaf.sharding)
        return leaf

    return jax.tree_util.tree_map_with_path(take, params)
