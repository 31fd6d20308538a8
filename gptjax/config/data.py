"""Data sections of an experiment that hold text: what to read and how to tokenize it.

Each section has a `kind` (how a saved config.json finds its class again) and
validates its own cross-field rules; gptjax/data/build.py turns it into the
batches a run reads.
"""
from __future__ import annotations

import dataclasses

from gptjax.config.fields import POSITIVE, field, one_of
from gptjax.config.registry import config_kind
from gptjax.errors import ConfigError

TOKENIZERS = ("char", "byte", "sentencepiece", "gpt2_bpe")  # gpt2_bpe: loaded from an imported run only


@config_kind
@dataclasses.dataclass(frozen=True)
class TextData:
    """A text corpus: a builder of ours (tinyshakespeare, text files) or a stock TFDS name."""

    dataset: str = "tinyshakespeare"  # tinyshakespeare | text | any TFDS name (e.g. lm1b)
    files: str = ""  # path or glob for dataset=text (or to override tinyshakespeare's source)
    tokenizer: str = field("char", one_of(*TOKENIZERS))
    sp_model: str = ""  # a trained sentencepiece .model (tokenizer=sentencepiece)
    sp_vocab_size: int = field(4096, POSITIVE)  # when a sentencepiece model must be trained
    data_dir: str = ""  # TFDS data dir; empty: the gptjax cache
    text_key: str = "text"  # feature holding text in a stock TFDS dataset
    pack: str = field("stream", one_of("stream", "segments"))  # stream (nanoGPT) | segments (documents apart)
    # true: the tokenizer is never built from the text, it is loaded from the run's own tokenizer/ or from
    # train.init_from's (a model imported by scripts/convert.py fine-tunes with its own tokenizer)
    pretrained_tokenizer: bool = False
    kind: str = "text"

    def validate(self, exp) -> None:
        if self.tokenizer == "gpt2_bpe" and not self.pretrained_tokenizer:
            raise ConfigError("data.tokenizer=gpt2_bpe cannot be built from text: it comes with an imported "
                              "model (set data.pretrained_tokenizer=true and train.init_from)")
