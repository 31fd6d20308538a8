"""Plan a run without training: per-device memory and the sharding of every parameter.

`report(exp)` builds the experiment's mesh, refuses shapes the mesh cannot split
(`gptjax.parallel.mesh.check_divisible`), compiles the real train step for abstract inputs
(nothing is initialised or trained) and prints, per device:

- parameters and optimizer state: exact, from each array's shard shape;
- the batch: exact, from the batch sharding;
- activations and other step temporaries: `compiled.memory_analysis()` of the
  compiled step (XLA's buffer assignment; gradients and workspace included).
  When the step is compiled for the CPU, e.g. planning a TPU mesh on a laptop,
  that figure comes from the CPU compiler and is an estimate of what an
  accelerator's compiler would need.

Text experiments need no data: the batch is synthesised from the model shape,
and the vocabulary comes from `model.vocab_size`, the tokenizer kind (byte,
sentencepiece) or, for characters, the corpus when it can be read; otherwise
256 symbols are assumed, with a note. Multimodal experiments build their data.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np

from gptjax.config import Experiment
from gptjax.errors import ConfigError

ASSUMED_VOCAB = 256


def required_devices(exp: Experiment) -> int | None:
    """Devices the mesh asks for, or None when one axis takes the rest (-1)."""
    sizes = (exp.mesh.data, exp.mesh.fsdp, exp.mesh.tensor)
    return None if -1 in sizes else math.prod(sizes)


def plan_devices(exp: Experiment) -> None:
    """Before JAX starts: give the CPU backend as many devices as the mesh needs.

    Lets a laptop plan e.g. a 2x2x2 mesh. Accelerator machines are unaffected
    (their devices are used); nothing changes if the caller already chose a CPU
    device count (XLA_FLAGS or jax_num_cpu_devices) or runs several processes
    (each would take the whole count).
    """
    from gptjax.parallel.distributed import set_cpu_device_count

    set_cpu_device_count(required_devices(exp) or exp.mesh.cpu_devices)


def resolve_vocab(exp: Experiment) -> tuple[int, str]:
    """(vocab size, where it came from) without reading more data than a char alphabet needs."""
    if exp.model.vocab_size:
        return exp.model.vocab_size, "model.vocab_size"
    d = exp.data
    tokenizer = getattr(d, "tokenizer", "")
    if tokenizer == "byte":
        from gptjax.data.tokenizers import ByteTokenizer

        return ByteTokenizer(add_eos=True).vocab_size, "byte tokenizer"
    if tokenizer == "sentencepiece":
        if d.sp_model:
            from gptjax.data.tokenizers import SentencePieceTokenizer

            if os.path.isfile(d.sp_model):
                return SentencePieceTokenizer(d.sp_model).vocab_size, f"sentencepiece model {d.sp_model}"
        return d.sp_vocab_size, "data.sp_vocab_size: the size a trained sentencepiece model will have"
    from gptjax.data.build import build_data
    from gptjax.errors import DataError

    try:
        data = build_data(exp)
        return data.vocab_size, f"the {tokenizer or exp.data.kind} tokenizer of {getattr(d, 'dataset', 'the data')}"
    except DataError as e:
        return ASSUMED_VOCAB, (f"ASSUMED ({ASSUMED_VOCAB}): the data could not be read ({e}); "
                               "set model.vocab_size for exact figures")


def text_batch(seq_len: int) -> dict:
    """One row shaped like TextLMData.make_batch's output (only shapes and dtypes matter)."""
    ints = np.zeros((1, seq_len), np.int32)
    return {"inputs": ints, "targets": ints, "segment_ids": ints + 1, "positions": ints,
            "loss_mask": np.ones((1, seq_len), np.float32)}


def _bytes(shape, dtype, sharding) -> int:
    shard = sharding.shard_shape(tuple(shape)) if sharding is not None else shape
    return int(np.prod(shard, dtype=np.int64)) * np.dtype(dtype).itemsize


def _tree_bytes(abstract_tree) -> tuple[int, int]:
    """(bytes on one device, bytes of the whole tree) of ShapeDtypeStructs with shardings."""
    import jax

    leaves = jax.tree.leaves(abstract_tree)
    per_device = sum(_bytes(x.shape, x.dtype, x.sharding) for x in leaves)
    total = sum(_bytes(x.shape, x.dtype, None) for x in leaves)
    return per_device, total


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def plan(exp: Experiment) -> dict:
    """Everything `report` prints, as data: mesh, vocab, per-device bytes, parameter shardings."""
    import jax

    from gptjax.data.build import build_data
    from gptjax.parallel.mesh import batch_process_slice
    from gptjax.train.optim import param_path
    from gptjax.train.setup import assemble, newline_id, run_mesh

    exp.validate()
    try:
        mesh = run_mesh(exp)
    except ConfigError as e:
        if "devices" not in str(e):
            raise
        raise ConfigError(f"{e}. To plan this mesh on a CPU, name every axis (no -1: --set mesh.data=N) and run "
                          "the dry run with JAX_PLATFORMS=cpu; scripts/train.py --dry_run then creates the CPU "
                          "devices the mesh needs") from None
    notes = []
    if exp.data.kind == "text":
        vocab, vocab_source = resolve_vocab(exp)
        example = text_batch(exp.model.max_seq_len)
        line_break = 0  # no tokenizer read: any newline id compiles the same program
    else:  # multimodal and task batches carry keys (media arrays, prefix masks) only the data knows
        data = build_data(exp)
        vocab, vocab_source = data.vocab_size, "the data's tokenizer"
        line_break = newline_id(data.tokenizer)
        example = next(iter(data.eval_batches(exp.train.batch_size, 1, *batch_process_slice(mesh))))
    if vocab_source.startswith("ASSUMED"):
        notes.append(f"vocab_size {vocab_source}")
    run = assemble(exp, example, vocab, mesh, line_break=line_break)
    compiled, spec = run.compiled, run.spec
    abstract = compiled.abstract_state

    params_dev, params_total = _tree_bytes(abstract.params)
    opt_dev, opt_total = _tree_bytes(abstract.opt_state)
    batch_dev = sum(_bytes((exp.train.batch_size, *np.shape(v)[1:]), np.asarray(v).dtype,
                           compiled.batch_sharding[k]) for k, v in example.items())
    try:
        memory = compiled.train_step.memory_analysis()
    except (NotImplementedError, RuntimeError):  # some backends have no buffer analysis
        memory = None
    platform = mesh.devices.flat[0].platform
    if memory is not None:
        activations = int(memory.temp_size_in_bytes)
        activation_source = "memory_analysis() of the compiled step"
        if platform == "cpu":
            activation_source += "; CPU compiler, an estimate for accelerators"
    else:
        activations = _activation_estimate(spec, exp, mesh)
        activation_source = "ESTIMATE (no memory analysis on this backend): saved per-layer activations"

    logical = {param_path(p): s for p, s in
               jax.tree_util.tree_leaves_with_path(compiled.logical_specs,
                                                   is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))}
    rows = []
    for path, x in jax.tree_util.tree_leaves_with_path(abstract.params):
        key = param_path(path)
        rows.append({"name": key, "shape": tuple(x.shape), "dtype": str(np.dtype(x.dtype)),
                     "logical": tuple(logical.get(key, ())), "spec": tuple(x.sharding.spec),
                     "shard_shape": tuple(x.sharding.shard_shape(tuple(x.shape))),
                     "bytes_per_device": _bytes(x.shape, x.dtype, x.sharding)})
    n_params = sum(int(np.prod(r["shape"])) for r in rows)
    return {
        "experiment": exp.name, "mesh": dict(mesh.shape), "platform": platform,
        "devices": int(mesh.devices.size), "vocab_size": vocab, "vocab_source": vocab_source,
        "n_params": n_params, "batch_size": exp.train.batch_size, "seq_len": spec.max_seq_len,
        "bytes_per_device": {"parameters": params_dev, "optimizer_state": opt_dev, "batch": batch_dev,
                             "activations": activations},
        "bytes_total": {"parameters": params_total, "optimizer_state": opt_total},
        "activation_source": activation_source,
        "memory_analysis": None if memory is None else {
            k: int(getattr(memory, k)) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                                 "alias_size_in_bytes", "temp_size_in_bytes",
                                                 "generated_code_size_in_bytes")},
        "params": rows, "notes": notes,
    }


def _activation_estimate(spec, exp, mesh) -> int:
    """Saved activations per device without remat, after Korthikanti et al. (2022):
    per layer about B*L*E*(34 + 5*H*L/E) bytes at 16-bit, split over the batch and tensor axes."""
    b = exp.train.batch_size // exp.optimizer.grad_accum / (mesh.shape["data"] * mesh.shape["fsdp"])
    l, e, h = spec.max_seq_len, spec.d_model, spec.n_head
    per_layer = b * l * e * (34 + 5 * h * l / e) / mesh.shape["tensor"]
    scale = np.dtype(spec.dtype).itemsize / 2
    return int(per_layer * spec.n_layer * scale)


def report(exp: Experiment, file=None) -> dict:
    """Print the plan for `exp` on its mesh (process 0 only) and return it."""
    import jax

    file = file or sys.stdout
    p = plan(exp)
    if jax.process_index() != 0:
        return p
    out = lambda *a: print(*a, file=file)  # noqa: E731
    mesh = " x ".join(f"{k}={v}" for k, v in p["mesh"].items())
    out(f"dry run: {p['experiment']} on mesh {mesh} ({p['devices']} {p['platform']} devices); "
        f"global batch {p['batch_size']} x {p['seq_len']} tokens")
    out(f"vocab_size {p['vocab_size']} ({p['vocab_source']}); {p['n_params']:,} parameters")
    b, t = p["bytes_per_device"], p["bytes_total"]
    out("\nper-device memory:")
    out(f"  parameters        {fmt_bytes(b['parameters']):>12}   (whole model: {fmt_bytes(t['parameters'])})")
    out(f"  optimizer state   {fmt_bytes(b['optimizer_state']):>12}   (sharded like the parameters; "
        f"whole: {fmt_bytes(t['optimizer_state'])})")
    out(f"  batch             {fmt_bytes(b['batch']):>12}")
    out(f"  activations       {fmt_bytes(b['activations']):>12}   ({p['activation_source']})")
    out(f"  total             {fmt_bytes(sum(b.values())):>12}")
    if p["memory_analysis"]:
        m = p["memory_analysis"]
        out(f"  (memory_analysis: arguments {fmt_bytes(m['argument_size_in_bytes'])}, outputs "
            f"{fmt_bytes(m['output_size_in_bytes'])}, donated/aliased {fmt_bytes(m['alias_size_in_bytes'])}, "
            f"temporaries {fmt_bytes(m['temp_size_in_bytes'])})")
    out("\nparameter shardings (logical axes -> mesh axes; shard = what one device holds):")
    width = max(len(r["name"]) for r in p["params"])
    for r in p["params"]:
        logical = ",".join("-" if a is None else str(a) for a in r["logical"]) or "-"
        spec = ",".join("-" if a is None else (a if isinstance(a, str) else "+".join(a)) for a in r["spec"]) or "-"
        out(f"  {r['name']:<{width}}  {'x'.join(map(str, r['shape'])):>14} {r['dtype']:<8} "
            f"({logical}) -> ({spec})  shard {'x'.join(map(str, r['shard_shape']))}  "
            f"{fmt_bytes(r['bytes_per_device'])}")
    for note in p["notes"]:
        out(f"note: {note}")
    return p
