"""Fine-tuning text for an imported model: TextData tokenized by the model's own tokenizer.

`PretrainedTextData` is a `TextData` (same fields, same `kind`, so a run's
config.json reads back as plain TextData for sampling) whose tokenizer is
never built from the text: it is loaded from the run's own `tokenizer/` when
resuming, else from the `tokenizer/` of `train.init_from` (the imported
workdir). That is what lets GPT-2 BPE models, whose tokenizer TextData cannot
build, fine-tune on new text.
"""
from __future__ import annotations

import pathlib

from gptjax.config import ConfigError, TextData
from gptjax.data import tokenizers


class PretrainedTextData(TextData):
    """TextData whose tokenizer comes from the pretrained run (see the module docstring)."""

    def validate(self, exp) -> None:
        if self.tokenizer not in tokenizers.KINDS:
            raise ConfigError(f"data.tokenizer={self.tokenizer!r}: expected one of {', '.join(tokenizers.KINDS)}")
        if self.pack not in ("stream", "segments"):
            raise ConfigError(f"data.pack={self.pack!r}: expected stream or segments")

    def build(self, exp, tokenizer_dir=None):
        from gptjax.data.text_pipeline import TextLMData

        if self.dataset == "text" and not self.files:
            raise ConfigError("data.files is empty: name the fine-tuning text, e.g. "
                              "--set data.files='my_corpus/*.txt' (a file, folder or glob of UTF-8 text)")
        source = tokenizer_dir
        if source is None and exp.train.init_from:
            source = pathlib.Path(exp.train.init_from) / "tokenizer"
        if source is None or not (pathlib.Path(source) / tokenizers.TOKENIZER_FILE).is_file():
            raise ConfigError(f"data: no {self.tokenizer} tokenizer to load: set train.init_from to the imported "
                              f"workdir (it holds tokenizer/), or train in that workdir itself")
        return TextLMData(dataset=self.dataset, tokenizer=self.tokenizer, seq_len=exp.model.max_seq_len,
                          seed=exp.train.seed, files=self.files, data_dir=self.data_dir, text_key=self.text_key,
                          pack=self.pack, tokenizer_dir=source)
