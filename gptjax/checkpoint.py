"""Orbax checkpoints of the train state, with the run's position in the data.

Saves are asynchronous; Orbax writes each step into a temporary folder and
renames it only when complete, so a killed write is never read as a checkpoint.
The data position is the step itself (the data pipeline is a pure function of
the step), stored with the run's config fingerprint in a small JSON item.
"""
from __future__ import annotations

import os
import pathlib

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, workdir, keep: int = 3, async_save: bool = True):
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

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


def load_state(directory, step: int | None = None) -> dict:
    """The train state a checkpoint folder holds at `step` (default: the newest), as saved, on this
    process's first device: no target structure needed, and any device count or mesh may have
    written it (a 2-device CPU run, a TPU slice)."""
    directory = pathlib.Path(directory).absolute()
    manager = ocp.CheckpointManager(directory, item_names=("state", "meta"))
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint found in {directory}")
        saved = ocp.StandardCheckpointer().metadata(directory / str(step) / "state").item_metadata
        here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), saved)
        return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
    finally:
        manager.close()


def load_params(workdir) -> dict:
    """The parameters of another run's newest checkpoint, as saved (no target structure needed)."""
    try:
        return load_state(pathlib.Path(workdir) / "checkpoints")["params"]
    except FileNotFoundError as e:
        raise FileNotFoundError(f"train.init_from={workdir}: {e}") from None


def merge_params(params, source) -> tuple[object, list[str]]:
    """Copy leaves of `source` into `params` where the path and shape match; return what was copied."""
    flat_src = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(source)}
    copied = []

    def take(path, leaf):
        key = jax.tree_util.keystr(path)
        src = flat_src.get(key)
        if src is not None and tuple(src.shape) == tuple(leaf.shape):
            copied.append(key)
            return jax.device_put(jax.numpy.asarray(src, leaf.dtype), leaf.sharding)
        return leaf

    return jax.tree_util.tree_map_with_path(take, params), copied


def abstract_like(tree):
    """ShapeDtypeStructs (with shardings) of a pytree of arrays."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
