"""Checkpoint interoperability: Hugging Face GPT-2 / LLaMA folders to and from gptjax workdirs.

`hf.import_hf(hf_dir, workdir)` and `hf.export_hf(workdir, hf_dir)` do the work;
`scripts/convert.py` is the command line. A checkpoint this code cannot
reproduce exactly (unknown model_type, rope scaling, biases LLaMA lacks here,
missing or misshapen tensors) is refused with a `ConversionError` naming what
was wrong, before anything is written.
"""
from gptjax.errors import ConversionError

__all__ = ["ConversionError"]
