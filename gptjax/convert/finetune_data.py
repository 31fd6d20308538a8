"""Kept for workdirs imported before the tokenizer choice became a TextData field: their
experiment.py imports `PretrainedTextData` from here. New imports write
`TextData(..., pretrained_tokenizer=True)` instead."""
from gptjax.config import TextData


def PretrainedTextData(**fields) -> TextData:  # noqa: N802 - it stands where a class was
    return TextData(**fields, pretrained_tokenizer=True)
