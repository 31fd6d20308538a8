"""A LoRA run -> a plain workdir with the adapters folded into their kernels.

    merge_lora_workdir(workdir, out)

The new workdir is what a full fine-tune would have left: config.json with optimizer.lora_rank=0,
tokenizer/, and a checkpoint of the merged parameters (W + (alpha / r) * A @ B, gptjax/train/lora.py)
with a fresh optimizer state at the LoRA run's step. Its logits equal the LoRA run's; Hugging Face
export, quantization and further training read it like any run.
"""
from __future__ import annotations

import dataclasses
import pathlib

from gptjax.convert.workdir import check_new_folder, write_workdir
from gptjax.errors import ConversionError
from gptjax.train.restore import load_run, quantization, read_run_config


def merge_lora_workdir(workdir, out) -> str:
    """Write `out`, the merged copy of the LoRA run `workdir`; returns a line to print."""
    workdir, out = pathlib.Path(workdir), pathlib.Path(out)
    check_new_folder(out, "--out")
    exp = read_run_config(workdir)
    if not exp.optimizer.lora_rank or quantization(workdir) is not None:
        raise ConversionError(f"{workdir} has no LoRA adapters to merge (optimizer.lora_rank="
                              f"{exp.optimizer.lora_rank}{', and it is quantized' if quantization(workdir) else ''})")
    if exp.media is not None:
        raise ConversionError(f"{workdir} is a multimodal run; merge-lora writes text and task runs")
    exp, params, tokenizer = load_run(workdir)  # merged on load
    plain = dataclasses.replace(exp, optimizer=dataclasses.replace(exp.optimizer, lora_rank=0),
                                train=dataclasses.replace(exp.train, init_from=""))
    write_workdir(out, plain, params, tokenizer, {"merged_lora": {"from": str(workdir.absolute()),
                                                                   "rank": exp.optimizer.lora_rank}})
    return f"merged the rank-{exp.optimizer.lora_rank} adapters of {workdir} into {out}"
