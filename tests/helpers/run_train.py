"""Subprocess entry for sharding / multi-host tests: train a few steps, dump what happened.

Run as `python tests/helpers/run_train.py EXP --workdir DIR --out result.json
--mesh DxFxT [--mesh ...] [--set k=v ...] [--stop_after N] [--record]
[--coordinator host:port --num_processes N --process_id I]`. Each mesh trains
in DIR/DxFxT (resuming from a checkpoint there, if any), one after the other
in this process. The device count comes from the caller's XLA_FLAGS
(--xla_force_host_platform_device_count), set before jax starts.

The JSON written to `--out` (give each process its own) maps each mesh to:
the losses by step, and per parameter (and optimizer-state leaf) its global
shape, PartitionSpec and the shapes of this process's shards, read from the
arrays themselves; with `--record`, the `inputs` rows this process fed to each
step (recorded by wrapping the data object gptjax.train.loop.run builds).
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("experiment")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mesh", action="append", required=True, help="DxFxT, e.g. 2x2x2 (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--stop_after", type=int, default=None)
    p.add_argument("--record", action="store_true", help="record the inputs each step read")
    p.add_argument("--coordinator", default="")
    p.add_argument("--num_processes", type=int, default=0)
    p.add_argument("--process_id", type=int, default=-1)
    return p.parse_args()


class RecordingData:
    """Wraps a data object; keeps the `inputs` of every training batch handed out."""

    def __init__(self, data):
        self._data, self.read = data, []

    def __getattr__(self, name):
        return getattr(self._data, name)

    def train_batches(self, *args, **kwargs):
        for batch in self._data.train_batches(*args, **kwargs):
            self.read.append(batch["inputs"].tolist())
            yield batch


def leaf_report(tree):
    import jax

    out = {}
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        out[jax.tree_util.keystr(path)] = {
            "shape": list(x.shape),
            "spec": [list(a) if isinstance(a, tuple) else a for a in x.sharding.spec],
            "shard_shapes": sorted({tuple(s.data.shape) for s in x.addressable_shards}),
            "n_devices": len(x.sharding.device_set),
        }
    return out


def train_on(mesh: str, args) -> dict:
    import jax

    from gptjax.config import resolve_experiment
    from gptjax.train import loop as train

    d, f, t = mesh.split("x")
    exp = resolve_experiment(args.experiment, args.overrides + [f"mesh.data={d}", f"mesh.fsdp={f}",
                                                                f"mesh.tensor={t}"])
    recorders = []
    make_data = train.build_data

    def recording_make_data(*a, **k):
        recorders.append(RecordingData(make_data(*a, **k)))
        return recorders[-1]

    if args.record:
        train.build_data = recording_make_data
    try:
        result = train.run(exp, pathlib.Path(args.workdir) / mesh, progress=False, stop_after=args.stop_after)
    finally:
        train.build_data = make_data
    return {
        "process_index": jax.process_index(), "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "losses": {str(k): v for k, v in result.losses.items()},
        "params": leaf_report(result.state.params),
        "opt_state": leaf_report(result.state.opt_state),
        "inputs_read": recorders[0].read if recorders else None,
    }


def main():
    args = parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(relativeCreated)7.0fms %(name)s %(message)s")
    for name in ("absl", "orbax", "jax._src"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from gptjax.parallel import distributed

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    report = {mesh: train_on(mesh, args) for mesh in args.mesh}
    pathlib.Path(args.out).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
