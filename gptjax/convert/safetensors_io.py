"""Safetensors checkpoints, single-file or sharded, through the `safetensors` numpy API (no PyTorch)."""
from __future__ import annotations

import json
import pathlib

import numpy as np

from gptjax.errors import ConversionError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ConversionError("reading Hugging Face checkpoints needs the `safetensors` package "
                              "(pip install -r requirements.txt)") from None
    return safetensors


def shard_map(hf_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Tensor name -> the file holding it, from the index (sharded) or the single file."""
    if (hf_dir / INDEX_FILE).is_file():
        try:
            weight_map = json.loads((hf_dir / INDEX_FILE).read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            raise ConversionError(f"{hf_dir / INDEX_FILE} is not a safetensors index "
                                  f"(needs a 'weight_map' of tensor name -> file): {e}") from None
        files = {name: hf_dir / file for name, file in weight_map.items()}
        for path in sorted(set(files.values())):
            if not path.is_file():
                raise ConversionError(f"{INDEX_FILE} names shard {path.name}, which is not in {hf_dir}")
        return files
    if (hf_dir / SINGLE_FILE).is_file():
        st = _safetensors()
        try:
            with st.safe_open(str(hf_dir / SINGLE_FILE), framework="np") as f:
                return {name: hf_dir / SINGLE_FILE for name in f.keys()}
        except Exception as e:  # noqa: BLE001 - safetensors' own error type for a damaged header
            raise ConversionError(f"cannot read {hf_dir / SINGLE_FILE}: {e} (truncated or not a safetensors "
                                  "file?)") from None
    found = sorted(p.name for p in hf_dir.iterdir() if p.suffix in (".bin", ".safetensors", ".pt", ".pth"))
    raise ConversionError(f"{hf_dir} holds neither {SINGLE_FILE} nor {INDEX_FILE}"
                          + (f" (found {', '.join(found)}; only safetensors are read: re-save the model "
                             "with transformers' save_pretrained)" if found else ""))


def read_tensors(hf_dir) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint as numpy (bfloat16 ones as ml_dtypes.bfloat16)."""
    st = _safetensors()
    hf_dir = pathlib.Path(hf_dir)
    by_file: dict[pathlib.Path, list[str]] = {}
    for name, path in shard_map(hf_dir).items():
        by_file.setdefault(path, []).append(name)
    tensors = {}
    for path, names in by_file.items():
        try:
            with st.safe_open(str(path), framework="np") as f:
                present = set(f.keys())
                for name in names:
                    if name not in present:
                        raise ConversionError(f"tensor {name!r} is listed in {INDEX_FILE} but missing "
                                              f"from {path.name}")
                    dtype = f.get_slice(name).get_dtype()
                    if dtype == "BF16":  # numpy has no bfloat16; the flax reader returns ml_dtypes arrays
                        with st.safe_open(str(path), framework="flax") as fj:
                            tensors[name] = np.asarray(fj.get_tensor(name))
                    else:
                        tensors[name] = f.get_tensor(name)
        except ConversionError:
            raise
        except Exception as e:  # noqa: BLE001 - a corrupt or exotic file: say which one
            raise ConversionError(f"cannot read {path}: {type(e).__name__}: {e}") from None
    return tensors


def write_tensors(path, tensors: dict[str, np.ndarray]) -> None:
    """One model.safetensors; the 'pt' format tag is what transformers expects to find."""
    st = _safetensors()
    contiguous = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    st.numpy.save_file(contiguous, str(path), metadata={"format": "pt"})
