"""Language-modelling batches: TFDS text -> tokens -> windows -> grain batches.

Each split is read once through ``tfds`` random-access data sources, tokenized
per document (EOS appended when the tokenizer has one) and concatenated into a
flat int32 stream with a parallel document-id array. An example is a window of
``seq_len + 1`` tokens: ``inputs`` its first L, ``targets`` its last L.

Training example ``j`` (of an infinite stream) is window
``shuffle_epoch(j // W)(j % W)`` with W train windows (every offset, stride
``train_stride``): a pure function of (seed, j), reshuffled every epoch. Global
batch ``s`` is examples ``s*B .. s*B+B-1``; process ``p`` of ``P`` gets the
contiguous rows ``p*B/P .. (p+1)*B/P - 1`` of it, so stacking the processes'
batches in process order gives the global batch (what
``jax.make_array_from_process_local_data`` does). Resuming at step k re-creates
exactly step k: the data position is checkpointed as the step number.

``pack="stream"``: one segment, positions 0..L-1, every target counts.
``pack="segments"``: segment ids follow documents (1, 2, ... within a window),
positions restart at 0 in each segment, and a target from another document
than its input gets ``loss_mask`` 0.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pathlib
from typing import Iterator

import grain
import numpy as np

from gptjax import atomic
from gptjax.data import corpora, text_builder, tokenizers
from gptjax.data.batching import BatchSource
from gptjax.errors import DataError

log = logging.getLogger(__name__)

PACK_MODES = ("stream", "segments")
TOKENIZER_KINDS = tokenizers.KINDS


class TextLMData(BatchSource):
    """Tokenized train/eval windows of one text dataset, batched with grain.

    Args:
      dataset: ``tinyshakespeare``, a name for your `files`, or a stock TFDS
        dataset prepared (array_record) in `data_dir`.
      tokenizer: ``char`` | ``byte`` | ``sentencepiece``.
      seq_len: tokens per example L (windows hold L + 1).
      seed: shuffling seed for training windows.
      files: path / directory / glob of local UTF-8 text (one document per file).
      data_dir: TFDS data dir (default: ``<cache>/tensorflow_datasets`` for our
        corpora, TFDS's default for stock datasets).
      sp_model: an existing SentencePiece ``.model``; without it one of
        `sp_vocab_size` is trained on the train split (and cached).
      text_key: the text feature of a stock TFDS dataset.
      pack: ``stream`` or ``segments`` (see the module docstring).
      tokenizer_dir: a run's folder for the tokenizer: loaded from it when it
        holds one (resumed runs, sampling), else built and saved there.
      eval_split: split for eval batches (default ``validation``, else ``test``).
      train_stride: distance between training window starts (1 = every offset,
        as nanoGPT's random offsets; L = non-overlapping).
      eos: append the tokenizer's EOS after each document (byte: adds id 256).
      num_threads, prefetch: grain read options; batches are built in a
        background thread pool `prefetch` batches ahead of the trainer.
      cache_tokens: keep token arrays as .npz under the cache dir.
    """

    def __init__(self, dataset: str = "tinyshakespeare", tokenizer: str = "char",
                 seq_len: int = 256, seed: int = 0, *, files: str = "", data_dir: str = "",
                 sp_model: str = "", sp_vocab_size: int = 4096, sp_model_type: str = "bpe",
                 text_key: str = "text", pack: str = "stream",
                 tokenizer_dir: str | os.PathLike | None = None, eval_split: str = "",
                 val_fraction: float = 0.1, split_by: str = "fraction", train_stride: int = 1,
                 eos: bool = True, num_threads: int = 1, prefetch: int = 4,
                 cache_tokens: bool = True):
        if pack not in PACK_MODES:
            raise DataError(f"pack must be one of {PACK_MODES}, got {pack!r}")
        if tokenizer not in TOKENIZER_KINDS:
            raise DataError(f"tokenizer must be one of {TOKENIZER_KINDS}, got {tokenizer!r}")
        if seq_len < 1 or train_stride < 1:
            raise DataError(f"seq_len and train_stride must be >= 1, got {seq_len}, {train_stride}")
        self.dataset, self.seq_len, self.seed, self.pack = dataset, seq_len, seed, pack
        self.train_stride, self.eos = train_stride, eos
        self.num_threads, self.prefetch, self.cache_tokens = num_threads, prefetch, cache_tokens
        build_kwargs = {} if not (files or dataset in corpora.KNOWN_CORPORA) else dict(
            val_fraction=val_fraction, split_by=split_by)
        self.splits = text_builder.open_text_dataset(
            dataset, files=files, data_dir=data_dir, text_key=text_key, **build_kwargs)
        if "train" not in self.splits.sources:
            raise DataError(f"{dataset!r} has no 'train' split; it has "
                            f"{sorted(self.splits.sources)}")
        self.eval_split = eval_split or next(
            (s for s in ("validation", "test") if s in self.splits.sources), "")
        if self.eval_split not in self.splits.sources:
            raise DataError(f"{dataset!r} has no eval split {eval_split or 'validation/test'!r}; "
                            f"its splits are {sorted(self.splits.sources)}: pass eval_split=")
        self._docs: dict[str, list[str]] = {}
        self._streams: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.tokenizer = self._resolve_tokenizer(tokenizer, tokenizer_dir, sp_model,
                                                 sp_vocab_size, sp_model_type)
        self.vocab_size = self.tokenizer.vocab_size
        # Hashed so that seeds s and s+1 do not share epochs (grain's per-epoch
        # shuffle seed is seed + epoch).
        self._shuffle_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])

    # ---- text and tokens -------------------------------------------------

    def documents(self, split: str) -> list[str]:
        """The split's documents, in order (read once)."""
        if split not in self._docs:
            if split not in self.splits.sources:
                raise DataError(f"{self.dataset!r} has no split {split!r}")
            docs = text_builder.read_documents(self.splits.sources[split], self.splits.text_key,
                                               self.splits.doc_key)
            if not any(docs):
                raise DataError(f"the {split} split of {self.dataset!r} is empty "
                                f"({self.splits.path})")
            self._docs[split] = docs
        return self._docs[split]

    def _resolve_tokenizer(self, kind, tokenizer_dir, sp_model, sp_vocab_size, sp_model_type):
        if tokenizer_dir and (pathlib.Path(tokenizer_dir) / tokenizers.TOKENIZER_FILE).is_file():
            tok = tokenizers.load_tokenizer(tokenizer_dir)
            if tok.name != kind:
                raise DataError(f"{tokenizer_dir} holds a {tok.name!r} tokenizer but "
                                f"tokenizer={kind!r} was asked for; use a fresh workdir")
            log.info("tokenizer: loaded %s (vocab %d) from %s", kind, tok.vocab_size, tokenizer_dir)
            return tok
        if kind == "char":
            # nanoGPT builds the alphabet from the whole text (train + val).
            tok = tokenizers.CharTokenizer.from_text(
                "".join(self.documents("train")) + "".join(self.documents(self.eval_split)))
        elif kind == "byte":
            tok = tokenizers.ByteTokenizer(add_eos=self.eos)
        elif sp_model:
            if not pathlib.Path(sp_model).is_file():
                raise DataError(f"data.sp_model={sp_model}: no such file; give a trained SentencePiece .model "
                                "(scripts/prepare_data.py --train_sentencepiece writes one), or leave it empty "
                                "to train one on the corpus")
            tok = tokenizers.SentencePieceTokenizer(sp_model)
        else:
            prefix = (corpora.cache_dir() / "sentencepiece" /
                      f"{self.splits.fingerprint}_{sp_model_type}{sp_vocab_size}")
            if pathlib.Path(f"{prefix}.model").is_file():
                tok = tokenizers.SentencePieceTokenizer(f"{prefix}.model")
            else:
                log.info("tokenizer: training a %s SentencePiece model of %d pieces on %s/train",
                         sp_model_type, sp_vocab_size, self.dataset)
                tok = tokenizers.train_sentencepiece(self.documents("train"), prefix,
                                                     sp_vocab_size, sp_model_type)
        if tokenizer_dir:
            tok.save(tokenizer_dir)
        return tok

    def tokens(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(tokens int32 [N], doc_ids int32 [N]) of the split's whole stream."""
        if split in self._streams:
            return self._streams[split]
        add_eos = self.eos and self.tokenizer.eos_id is not None
        key = hashlib.sha256(f"{self.splits.fingerprint}|{split}|{self.tokenizer.fingerprint()}|"
                             f"{add_eos}".encode()).hexdigest()[:20]
        path = corpora.cache_dir() / "tokens" / f"{key}.npz"
        if self.cache_tokens and path.is_file():
            with np.load(path) as z:
                stream = (z["tokens"], z["doc_ids"])
        else:
            parts, ids = [], []
            for doc_id, doc in enumerate(self.documents(split)):
                try:
                    toks = self.tokenizer.encode(doc)
                except ValueError as e:  # e.g. a char vocabulary saved for another corpus
                    raise DataError(f"cannot tokenize the {split} split of {self.dataset!r}: "
                                    f"{e}") from None
                toks += [self.tokenizer.eos_id] if add_eos else []
                parts.append(np.asarray(toks, dtype=np.int32))
                ids.append(np.full(len(toks), doc_id, dtype=np.int32))
            stream = (np.concatenate(parts), np.concatenate(ids))
            if self.cache_tokens:
                with atomic.replacing(path, suffix=".npz") as tmp:
                    np.savez(tmp, tokens=stream[0], doc_ids=stream[1])
        self._streams[split] = stream
        self._docs.pop(split, None)  # the token stream replaces the text in memory
        n = len(stream[0])
        if n < self.seq_len + 1:
            raise DataError(f"the {split} split of {self.dataset!r} has {n} tokens, fewer than "
                            f"one window of seq_len + 1 = {self.seq_len + 1}: use a smaller "
                            "seq_len or more text")
        return stream

    # ---- windows -> batches ----------------------------------------------

    @property
    def num_train_windows(self) -> int:
        """Training examples per epoch."""
        n = len(self.tokens("train")[0])
        windows = (n - self.seq_len - 1) // self.train_stride + 1
        if windows >= 2**32:  # grain's index_shuffle works on 32-bit indices
            raise DataError(f"{windows} training windows exceed 2**32: raise train_stride")
        return windows

    def num_eval_windows(self) -> int:
        """Non-overlapping eval windows (stride L) in the eval split."""
        return (len(self.tokens(self.eval_split)[0]) - 1) // self.seq_len

    def make_batch(self, split: str, starts: np.ndarray) -> dict[str, np.ndarray]:
        """The batch of windows starting at token offsets `starts` [Bl]."""
        tokens, doc_ids = self.tokens(split)
        L = self.seq_len
        idx_BxL1 = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(L + 1)
        win_BxL1 = tokens[idx_BxL1]
        batch = {"inputs": np.ascontiguousarray(win_BxL1[:, :-1]),
                 "targets": np.ascontiguousarray(win_BxL1[:, 1:])}
        B = len(idx_BxL1)
        if self.pack == "stream":
            batch["segment_ids"] = np.ones((B, L), np.int32)
            batch["positions"] = np.broadcast_to(np.arange(L, dtype=np.int32), (B, L)).copy()
            batch["loss_mask"] = np.ones((B, L), np.float32)
            return batch
        doc_BxL1 = doc_ids[idx_BxL1]
        doc_BxL = doc_BxL1[:, :-1]
        new_BxL = np.zeros((B, L), bool)
        new_BxL[:, 1:] = doc_BxL[:, 1:] != doc_BxL[:, :-1]
        batch["segment_ids"] = (1 + np.cumsum(new_BxL, axis=1)).astype(np.int32)
        pos_L = np.arange(L)
        seg_start_BxL = np.maximum.accumulate(np.where(new_BxL, pos_L, 0), axis=1)
        batch["positions"] = (pos_L - seg_start_BxL).astype(np.int32)
        batch["loss_mask"] = (doc_BxL1[:, 1:] == doc_BxL).astype(np.float32)
        return batch

    def train_dataset(self, global_batch: int, process_index: int = 0,
                      process_count: int = 1) -> grain.MapDataset:
        """Random-access local batches: element s is this process's part of step s."""
        local = self.local_batch(global_batch, process_index, process_count)
        stride = self.train_stride
        windows = grain.MapDataset.range(self.num_train_windows)
        examples = windows.shuffle(seed=self._shuffle_seed).repeat()  # new order per epoch
        # drop_remainder: grain sizes a kept remainder with a float ceil, which
        # overflows on an infinite (sys.maxsize) parent.
        local_batches = examples.batch(local, drop_remainder=True)[process_index::process_count]
        return local_batches.map(lambda w: self.make_batch("train", np.asarray(w) * stride))

    def train_batches(self, global_batch: int, start_step: int = 0, process_index: int = 0,
                      process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Endless local training batches from step `start_step`, prefetched."""
        ds = self.train_dataset(global_batch, process_index, process_count)[start_step:]
        return self.read(ds)

    def eval_batches(self, global_batch: int, num_batches: int | None = None,
                     process_index: int = 0, process_count: int = 1
                     ) -> Iterator[dict[str, np.ndarray]]:
        """The first `num_batches` (all when None) batches of non-overlapping eval
        windows; the same every call. Capped at what the eval split holds."""
        local = self.local_batch(global_batch, process_index, process_count)
        num_batches = self.eval_count(global_batch, num_batches, self.num_eval_windows() // global_batch,
                                      f"the {self.eval_split} split has {self.num_eval_windows()} windows of "
                                      f"{self.seq_len + 1} tokens")
        windows = grain.MapDataset.range(num_batches * global_batch)
        ds = windows.batch(local, drop_remainder=True)[process_index::process_count]
        ds = ds.map(lambda w: self.make_batch(self.eval_split, np.asarray(w) * self.seq_len))
        return self.read(ds)

    def __repr__(self) -> str:
        return (f"TextLMData({self.dataset!r}, tokenizer={self.tokenizer.name}, "
                f"vocab={self.vocab_size}, seq_len={self.seq_len}, pack={self.pack}, "
                f"path={self.splits.path})")
