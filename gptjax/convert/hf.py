"""Hugging Face checkpoint folders <-> gptjax workdirs, for GPT-2 and LLaMA-family models.

    read_hf(hf_dir) -> HFModel(spec, params, tokenizer, model_type)   (validated, nothing written)
    import_hf(hf_dir, workdir)    HF folder -> workdir (checkpoint, config.json, tokenizer/, experiment.py)
    export_hf(workdir, hf_dir)    newest checkpoint -> config.json + model.safetensors + tokenizer files
    hf_tensors(params, spec)      our parameter tree -> HF tensor dict

Everything is checked before anything is written: an unknown model_type, a
feature we do not reproduce, a missing, misshapen or unexpected tensor is a
ConversionError naming it.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import re

import jax
import numpy as np

from gptjax import atomic
from gptjax.config import ModelSpec
from gptjax.convert import hf_gpt2, hf_llama, safetensors_io
from gptjax.convert.hf_tokenizer import load_hf_tokenizer, save_hf_tokenizer
from gptjax.convert.workdir import check_new_folder, experiment_source, finetune_experiment, write_workdir
from gptjax.errors import ConversionError
from gptjax.model.quant import dequantize_params
from gptjax.train.restore import load_run, read_run_config

ARCHITECTURES = {m.MODEL_TYPE: m for m in (hf_gpt2, hf_llama)}


@dataclasses.dataclass
class HFModel:
    spec: ModelSpec
    params: dict  # our parameter tree, float32 numpy
    tokenizer: object
    model_type: str


def read_config(hf_dir: pathlib.Path) -> dict:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise ConversionError(f"{hf_dir} has no config.json: pass a Hugging Face model folder "
                              "(config.json + model.safetensors, as save_pretrained writes)")
    try:
        cfg = json.loads(path.read_text())
    except ValueError as e:
        raise ConversionError(f"{path} is not JSON: {e}") from None
    model_type = cfg.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ConversionError(f"{path}: model_type={model_type!r} (architectures {cfg.get('architectures')}) "
                              f"is not supported; supported: {', '.join(ARCHITECTURES)}")
    return cfg


def _strip_prefix(names, prefix: str) -> dict[str, str]:
    """Checkpoint name -> canonical name (base-model prefix removed; lm_head kept)."""
    return {n: n[len(prefix):] if n.startswith(prefix) else n for n in names}


def check_tensors(tensors: dict[str, np.ndarray], arch, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Canonical name -> float32 array, after refusing missing, misshapen and unknown tensors."""
    canonical = _strip_prefix(tensors, arch.BASE_PREFIX)
    by_name = {canonical[n]: t for n, t in tensors.items()}
    expected = arch.expected_shapes(spec)
    for name, shape in expected.items():
        if name not in by_name:
            raise ConversionError(f"missing tensor {name!r} (shape {shape}) in the checkpoint; "
                                  f"config.json implies it ({spec.n_layer} layers, "
                                  f"tie_word_embeddings={spec.tie_embeddings})")
        if tuple(by_name[name].shape) != shape:
            raise ConversionError(f"tensor {name!r} has shape {tuple(by_name[name].shape)}; "
                                  f"config.json implies {shape}")
    out = {}
    for name, t in by_name.items():
        if name in expected:
            out[name] = np.asarray(t, np.float32)
        elif name == "lm_head.weight" and spec.tie_embeddings:
            emb = by_name.get("wte.weight", by_name.get("embed_tokens.weight"))
            if emb is None or t.shape != emb.shape or not np.array_equal(np.asarray(t, np.float32),
                                                                          np.asarray(emb, np.float32)):
                raise ConversionError("tensor 'lm_head.weight' differs from the token embedding but config.json "
                                      "says tie_word_embeddings=true")
        elif not any(re.fullmatch(p, name) for p in arch.IGNORED):
            raise ConversionError(f"unexpected tensor {name!r} (shape {tuple(t.shape)}): {arch.MODEL_TYPE} models "
                                  "converted here have no such weight; refusing rather than dropping it")
    return out


def read_hf(hf_dir) -> HFModel:
    """Read and validate an HF folder into our spec, parameter tree and tokenizer (writes nothing)."""
    hf_dir = pathlib.Path(hf_dir)
    if not hf_dir.is_dir():
        raise ConversionError(f"--dir {hf_dir} is not a folder")
    cfg = read_config(hf_dir)
    arch = ARCHITECTURES[cfg["model_type"]]
    spec = arch.spec_from_config(cfg)
    tensors = check_tensors(safetensors_io.read_tensors(hf_dir), arch, spec)
    params = arch.to_params(tensors, spec)
    tokenizer = load_hf_tokenizer(hf_dir)
    if tokenizer.vocab_size > spec.vocab_size:
        raise ConversionError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                              f"{spec.vocab_size}: ids past the embedding would crash")
    return HFModel(spec, params, tokenizer, cfg["model_type"])


def import_hf(hf_dir, workdir) -> HFModel:
    """Convert an HF folder into a new gptjax workdir (see gptjax/convert/workdir.py for the layout)."""
    hf_dir, workdir = pathlib.Path(hf_dir), pathlib.Path(workdir)
    check_new_folder(workdir, "workdir")
    model = read_hf(hf_dir)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model.model_type}_{hf_dir.absolute().name}")
    exp = finetune_experiment(model.spec, model.tokenizer.name, workdir, name)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(model.params))
    source = f"Hugging Face {model.model_type} from {hf_dir.absolute()}"
    meta = {"imported": {"from": "hf", "model_type": model.model_type, "dir": str(hf_dir.absolute())}}
    write_workdir(workdir, exp, model.params, model.tokenizer, meta, experiment_source(exp, source, n_params))
    return model


def _unscanned(params: dict, spec: ModelSpec) -> dict:
    """Per-layer `h_{i}` blocks from a scan_layers tree (stacked under `layers`)."""
    if "layers" not in params:
        return params
    params = dict(params)
    stacked = params.pop("layers")
    for i in range(spec.n_layer):
        params[f"h_{i}"] = jax.tree.map(lambda x: x[i], stacked)
    return params


def hf_tensors(params: dict, spec: ModelSpec) -> dict[str, np.ndarray]:
    arch = ARCHITECTURES[spec.flavour]
    params = jax.tree.map(lambda x: np.asarray(x, np.float32), _unscanned(params, spec))
    return arch.from_params(params, spec)


def export_hf(workdir, hf_dir) -> list[str]:
    """Write the workdir's newest checkpoint as an HF folder; returns notes to print."""
    workdir, hf_dir = pathlib.Path(workdir), pathlib.Path(hf_dir)
    check_new_folder(hf_dir, "output folder")
    if read_run_config(workdir).optimizer.lora_rank:
        raise ConversionError(f"{workdir} is a LoRA run whose adapters are not merged; merge them first: "
                              f"python scripts/convert.py merge-lora --workdir {workdir} --out MERGED, then export "
                              "MERGED")
    exp, params, tokenizer = load_run(workdir)
    params = dequantize_params(params)  # a quantized workdir exports its integers times their scales
    if exp.media is not None:
        raise ConversionError(f"{workdir} is a multimodal run; only text decoders export to Hugging Face")
    spec = exp.model
    if spec.line_local_layers:
        raise ConversionError(f"{workdir} has line-local layers (model.line_local_layers={spec.line_local_layers}), "
                              "which no Hugging Face GPT-2 or LLaMA model has: its export would attend differently")
    arch = ARCHITECTURES[spec.flavour]
    hf_config = arch.config_from_spec(spec)
    eos = tokenizer.eos_id
    bos = tokenizer.sp.bos_id() if tokenizer.name == "sentencepiece" else eos  # GPT-2 uses one token for both
    hf_config.update({"bos_token_id": bos if bos is None or bos >= 0 else None, "eos_token_id": eos,
                      "pad_token_id": None,
                      "dtype": "float32", "torch_dtype": "float32"})
    tensors = hf_tensors(params, spec)
    with atomic.new_folder(hf_dir) as tmp:
        atomic.write_text(tmp / "config.json", json.dumps(hf_config, indent=2) + "\n")
        safetensors_io.write_tensors(tmp / safetensors_io.SINGLE_FILE, tensors)
        note = save_hf_tokenizer(tokenizer, tmp, spec.max_seq_len)
    return [f"model: {arch.ARCHITECTURE}, {len(tensors)} tensors, float32", note]
