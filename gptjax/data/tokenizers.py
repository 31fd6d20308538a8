"""Tokenizers: characters, bytes, SentencePiece, GPT-2 BPE; saved with a run so sampling
decodes exactly as training encoded.

Every tokenizer has ``name``, ``vocab_size``, ``eos_id`` (or None),
``encode(text) -> list[int]`` (no EOS added: pipelines add it between
documents), ``decode(ids) -> str``, ``save(dir)`` and ``fingerprint()``.
``load_tokenizer(dir)`` restores any of them from ``dir/tokenizer.json``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
import sentencepiece as spm

from gptjax import atomic
from gptjax.data import corpora
from gptjax.data.media_tokenizer import MediaTokenizer
from gptjax.errors import DataError

TOKENIZER_FILE = "tokenizer.json"
SP_MODEL_FILE = "tokenizer.model"
KINDS = ("char", "byte", "sentencepiece", "gpt2_bpe")


@runtime_checkable
class Tokenizer(Protocol):
    name: str
    vocab_size: int
    eos_id: int | None

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def save(self, directory: str | os.PathLike) -> pathlib.Path: ...
    def fingerprint(self) -> str: ...


def _ids_list(ids) -> list[int]:
    return np.asarray(ids, dtype=np.int64).reshape(-1).tolist()


def _write_json(directory, payload: dict) -> pathlib.Path:
    return atomic.write_json(pathlib.Path(directory) / TOKENIZER_FILE, payload)


class CharTokenizer:
    """One id per character of a fixed alphabet (nanoGPT's shakespeare_char)."""
    name = "char"
    eos_id = None

    def __init__(self, chars: Sequence[str]):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("CharTokenizer needs distinct single characters")
        self._index = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Vocabulary = sorted set of the characters of `text`."""
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[c] for c in text]
        except KeyError as e:
            raise ValueError(
                f"character {e.args[0]!r} (U+{ord(e.args[0]):04X}) is not in the char vocabulary "
                f"of {self.vocab_size} symbols built from the training text") from None

    def decode(self, ids: Iterable[int]) -> str:
        ids = _ids_list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside the char vocabulary "
                             f"[0, {self.vocab_size})")
        return "".join(self.chars[i] for i in ids)

    def save(self, directory) -> pathlib.Path:
        return _write_json(directory, {"kind": "char", "chars": "".join(self.chars)})

    def fingerprint(self) -> str:
        return hashlib.sha256(("char:" + "".join(self.chars)).encode()).hexdigest()[:16]


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255; with ``add_eos`` id 256 is the end-of-document."""
    name = "byte"

    def __init__(self, add_eos: bool = False):
        self.add_eos = bool(add_eos)
        self.eos_id = 256 if self.add_eos else None
        self.vocab_size = 257 if self.add_eos else 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        # EOS and out-of-range ids carry no bytes; broken UTF-8 becomes U+FFFD.
        return bytes(i for i in _ids_list(ids) if 0 <= i < 256).decode("utf-8", errors="replace")

    def save(self, directory) -> pathlib.Path:
        return _write_json(directory, {"kind": "byte", "add_eos": self.add_eos})

    def fingerprint(self) -> str:
        return f"byte-eos{int(self.add_eos)}"


class SentencePieceTokenizer:
    """A SentencePiece model (BPE or unigram) loaded from a ``.model`` file or bytes."""
    name = "sentencepiece"

    def __init__(self, model: str | os.PathLike | bytes):
        if isinstance(model, bytes):
            self._proto = model
        else:
            path = pathlib.Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"SentencePiece model {path} does not exist")
            self._proto = path.read_bytes()
        self.sp = spm.SentencePieceProcessor(model_proto=self._proto)
        self.vocab_size = self.sp.get_piece_size()
        self.eos_id = self.sp.eos_id() if self.sp.eos_id() >= 0 else None
        self.unk_id = self.sp.unk_id()  # never produced with byte_fallback: free for data.token_dropout

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int)

    def encode_sampled(self, text: str, alpha: float) -> list[int]:
        """One sampled segmentation: BPE-dropout with merge-skip chance `alpha` on a BPE model, subword
        regularisation on a unigram one (gptjax/data/bpe_dropout.py)."""
        return self.sp.encode(text, out_type=int, enable_sampling=True, alpha=alpha, nbest_size=-1)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode(_ids_list(ids))

    def save(self, directory) -> pathlib.Path:
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SP_MODEL_FILE).write_bytes(self._proto)
        return _write_json(directory, {"kind": "sentencepiece", "model_file": SP_MODEL_FILE})

    def fingerprint(self) -> str:
        return hashlib.sha256(self._proto).hexdigest()[:16]


class GPT2BPETokenizer:
    """GPT-2's byte-level BPE (``vocab.json`` + ``merges.txt``), run by Hugging Face ``tokenizers``.

    Built as transformers' GPT2Tokenizer builds it (byte-level pre-tokenizer
    without a prefix space, ``<|endoftext|>`` special), so ids match theirs.
    """
    name = "gpt2_bpe"
    EOS = "<|endoftext|>"

    def __init__(self, vocab_file: str | os.PathLike, merges_file: str | os.PathLike):
        try:
            from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers
        except ImportError:
            raise ImportError("the gpt2_bpe tokenizer needs Hugging Face's `tokenizers` package "
                              "(pip install -r requirements.txt)") from None
        self._vocab, self._merges = pathlib.Path(vocab_file).read_bytes(), pathlib.Path(merges_file).read_bytes()
        self._tok = HFTokenizer(models.BPE.from_file(str(vocab_file), str(merges_file)))
        self._tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self._tok.decoder = decoders.ByteLevel()
        self.eos_id = self._tok.token_to_id(self.EOS)
        if self.eos_id is not None:
            self._tok.add_special_tokens([self.EOS])
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(_ids_list(ids), skip_special_tokens=False)

    def save(self, directory) -> pathlib.Path:
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vocab.json").write_bytes(self._vocab)
        (directory / "merges.txt").write_bytes(self._merges)
        return _write_json(directory, {"kind": "gpt2_bpe", "vocab_file": "vocab.json", "merges_file": "merges.txt"})

    def fingerprint(self) -> str:
        return hashlib.sha256(self._vocab + b"\0" + self._merges).hexdigest()[:16]


def train_sentencepiece(texts: str | os.PathLike | Iterable, out_prefix: str | os.PathLike,
                        vocab_size: int, model_type: str = "bpe",
                        byte_fallback: bool = True, **trainer_kwargs) -> SentencePieceTokenizer:
    """Train a SentencePiece model on local text; writes ``out_prefix.model``.

    `texts` is a file path or glob, or an iterable of paths or of strings.
    Newlines and runs of spaces survive a round trip (identity normalisation,
    "\\n" as a user symbol), which matters for verse and code.
    """
    if model_type not in ("bpe", "unigram"):
        raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
    out = pathlib.Path(f"{out_prefix}.model")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = io.BytesIO()
    options = dict(
        vocab_size=vocab_size, model_type=model_type, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, user_defined_symbols=["\n"], byte_fallback=byte_fallback,
        allow_whitespace_only_pieces=True, split_digits=True, num_threads=os.cpu_count() or 1,
        hard_vocab_limit=False, minloglevel=2, max_sentence_length=1 << 16)
    options.update(trainer_kwargs)
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=_training_chunks(texts),
                                       model_writer=writer, **options)
    except RuntimeError as e:
        msg = str(e).splitlines()[0]
        hint = (" (with byte_fallback the vocabulary also holds 256 byte pieces)"
                if byte_fallback and "vocab" in msg.lower() else "")
        raise DataError(f"SentencePiece training failed: {msg}{hint}") from None
    out.write_bytes(writer.getvalue())
    return SentencePieceTokenizer(out)


def _training_chunks(texts) -> Iterable[str]:
    """Paragraph-sized training "sentences" (SentencePiece skips over-long ones)."""
    if isinstance(texts, (str, os.PathLike)):
        items = [str(p) for p in corpora.resolve_files(str(texts))]
    else:
        items = list(texts)
    for item in items:
        is_path = isinstance(item, os.PathLike) or (
            isinstance(item, str) and "\n" not in item and len(item) < 4096
            and os.path.isfile(item))
        text = corpora.read_text_file(pathlib.Path(item)) if is_path else item
        for para in text.split("\n\n"):
            yield para + "\n\n"


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """The tokenizer saved in `directory` by ``save``."""
    path = pathlib.Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no saved tokenizer at {path}")
    meta = json.loads(path.read_text(encoding="utf-8"))
    kind = meta.get("kind")
    if kind == "char":
        return CharTokenizer(meta["chars"])
    if kind == "byte":
        return ByteTokenizer(add_eos=meta.get("add_eos", False))
    if kind == "sentencepiece":
        return SentencePieceTokenizer(pathlib.Path(directory) / meta["model_file"])
    if kind == "gpt2_bpe":
        return GPT2BPETokenizer(pathlib.Path(directory) / meta["vocab_file"],
                                pathlib.Path(directory) / meta["merges_file"])
    if kind == "media":  # multimodal: characters + special and pixel tokens
        return MediaTokenizer.from_meta(meta)
    raise ValueError(f"{path}: unknown tokenizer kind {kind!r}; expected one of {KINDS}")
