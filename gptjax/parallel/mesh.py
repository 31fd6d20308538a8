"""One mesh with axes (data, fsdp, tensor): its shape, what it must divide, how batches split over it.

The logical names on parameters and activations are mapped to these axes by
gptjax/parallel/rules.py. Single-device runs use the same code with a 1x1x1 mesh.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gptjax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

def mesh_shape(cfg, n_devices: int) -> tuple[int, int, int]:
    """Resolve -1 in the experiment's mesh to the remaining devices, and check it fits."""
    sizes = [cfg.data, cfg.fsdp, cfg.tensor]
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if n_devices % known:
            raise ConfigError(f"mesh {cfg.data}x{cfg.fsdp}x{cfg.tensor}: the fixed axes ({known} devices) "
                              f"do not divide the {n_devices} devices available")
        sizes[sizes.index(-1)] = n_devices // known
    if int(np.prod(sizes)) != n_devices:
        raise ConfigError(f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} needs "
                          f"{int(np.prod(sizes))} devices, but {n_devices} are available; "
                          "set one axis to -1 to take the rest")
    return tuple(sizes)


def make_mesh(cfg, devices=None) -> Mesh:
    devices = list(devices) if devices is not None else jax.devices()
    shape = mesh_shape(cfg, len(devices))
    # Auto axes: shardings are hints the compiler propagates (Explicit axes would
    # make every constraint an assertion)
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    if devices == jax.devices():
        return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=auto)


def check_divisible(exp, mesh: Mesh) -> None:
    """Refuse, before compiling, dimensions that the mesh axes cannot split evenly."""
    m, sizes = exp.model, dict(mesh.shape)
    batch_ways = sizes["data"] * sizes["fsdp"]
    micro = exp.train.batch_size // exp.optimizer.grad_accum
    if micro % batch_ways:
        raise ConfigError(f"train.batch_size={exp.train.batch_size} (micro-batch {micro}) is not divisible by "
                          f"mesh data x fsdp = {sizes['data']}x{sizes['fsdp']} = {batch_ways}")
    t = sizes["tensor"]
    for name, value in (("model.n_head", m.n_head), ("model.n_kv_head (or n_head)", m.kv_heads),
                        ("model.d_ff (MLP hidden)", m.ff_dim)):
        if value % t:
            raise ConfigError(f"{name}={value} is not divisible by mesh.tensor={t}")
    if m.d_model % sizes["fsdp"]:
        raise ConfigError(f"model.d_model={m.d_model} is not divisible by mesh.fsdp={sizes['fsdp']}")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Batch arrays are split by rows over data x fsdp; other dimensions stay whole."""
    return NamedSharding(mesh, P(("data", "fsdp"), *([None] * (ndim - 1))))


def batch_process_slice(mesh: Mesh) -> tuple[int, int]:
    """(index, count): which of `count` equal row blocks of each global batch this process loads.

    Processes whose devices hold the same batch rows (the batch is replicated over
    `tensor`, and a tensor group may span processes) must load the same rows, so
    `count` is the number of distinct row blocks across processes, not the process
    count. Where the device order puts a process's rows at several places in the
    batch, `jax.make_array_from_process_local_data` fills them in order; the rows a
    step sees are the same, only their order within the batch differs.
    """
    ways = mesh.shape["data"] * mesh.shape["fsdp"]
    rows = batch_sharding(mesh, 1).devices_indices_map((ways,))
    held: dict[int, set] = {}
    for device, (sl,) in rows.items():
        held.setdefault(device.process_index, set()).update(range(*sl.indices(ways)))
    blocks = sorted({tuple(sorted(r)) for r in held.values()})
    flat = [i for b in blocks for i in b]
    if len(flat) != ways or len({len(b) for b in blocks}) != 1:
        raise ConfigError(f"mesh {dict(mesh.shape)}: processes hold overlapping or unequal parts of the "
                          "batch; order the mesh so that data x fsdp splits evenly over processes")
    return blocks.index(tuple(sorted(held[jax.process_index()]))), len(blocks)
