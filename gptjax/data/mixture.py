"""Multimodal batches: examples from one or several sources (gptjax/data/examples.py) -> numpy batches.

`MediaLMData` is what the training loop reads. Training example j of source s
is a pure function of (seed, s, j): the source's examples shuffled anew every
epoch (grain), with augmentation drawn from a generator seeded by (seed, s, j).
Sources are interleaved deterministically by weight (grain `MapDataset.mix`),
so batch `step` is a pure function of the step, whatever the process count.
"""
from __future__ import annotations

import pathlib
from typing import Iterator

import grain
import numpy as np

from gptjax.data import text_builder, tokenizers
from gptjax.data.batching import BatchSource
from gptjax.data.examples import Example, Layout, collate
from gptjax.data.media_tokenizer import MediaTokenizer
from gptjax.errors import DataError
from gptjax.special_tokens import BOS_ID


def load_or_make_tokenizer(tokenizer_dir, pixel_levels: int) -> MediaTokenizer:
    """The run's saved tokenizer when there is one (it must match), else a new one."""
    fresh = MediaTokenizer(pixel_levels)
    if tokenizer_dir and (pathlib.Path(tokenizer_dir) / tokenizers.TOKENIZER_FILE).is_file():
        saved = tokenizers.load_tokenizer(tokenizer_dir)
        if saved != fresh:
            raise DataError(f"{tokenizer_dir} holds a different tokenizer ({getattr(saved, 'name', '?')}, vocab "
                            f"{saved.vocab_size}) than this experiment's media tokenizer (vocab "
                            f"{fresh.vocab_size}); use a fresh workdir")
        return saved
    return fresh


class MediaLMData(BatchSource):
    """Batches of one or several example sources; the data object `gptjax.train.run` reads."""

    def __init__(self, sources: dict, weights, exp, tokenizer: MediaTokenizer, num_threads: int = 1,
                 prefetch: int = 4):
        if len(sources) != len(weights):
            raise DataError(f"{len(sources)} sources but {len(weights)} weights")
        self.sources, self.weights = dict(sources), [float(w) for w in weights]
        self.layout = Layout.of(exp)
        self.tokenizer, self.vocab_size = tokenizer, tokenizer.vocab_size
        self.seed = exp.train.seed
        self.num_threads, self.prefetch = num_threads, prefetch

    # ---- examples ---------------------------------------------------------------

    def source(self, task: str):
        if task not in self.sources:
            raise DataError(f"this experiment's data has no {task!r} source; it has {', '.join(self.sources)}")
        return self.sources[task]

    def _train_examples(self) -> grain.MapDataset:
        parts = []
        for s, (name, src) in enumerate(self.sources.items()):
            n = src.num_examples("train")
            if n == 0:
                raise DataError(f"source {name!r} has no training examples")
            seed = int(np.random.SeedSequence([self.seed, s]).generate_state(1)[0])
            ds = grain.MapDataset.range(n).shuffle(seed=seed).repeat()
            parts.append(ds.map_with_index(
                lambda j, i, src=src, s=s: src.example("train", int(i), np.random.default_rng([self.seed, s, j]))))
        return parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, self.weights)

    def _eval_examples(self) -> grain.MapDataset:
        parts = []
        for src in self.sources.values():
            # a fixed shuffle: the first few eval batches cover every class, not the first
            # classes of a label-ordered split
            parts.append(grain.MapDataset.range(src.num_examples("test")).shuffle(seed=0).map(
                lambda i, src=src: src.example("test", int(i), None)))
        return parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, self.weights)

    # ---- batches ------------------------------------------------------------------

    def train_batches(self, global_batch: int, start_step: int = 0, process_index: int = 0,
                      process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Endless local training batches from `start_step` (process p gets rows p*B/P..)."""
        local = self.local_batch(global_batch, process_index, process_count)
        ds = self._train_examples().batch(local, drop_remainder=True, batch_fn=list)[process_index::process_count]
        ds = ds.map(lambda exs: collate(exs, self.layout))[start_step:]
        return self.read(ds)

    def eval_batches(self, global_batch: int, num_batches: int | None = None, process_index: int = 0,
                     process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """The first `num_batches` batches of test examples, in a fixed shuffled order (the same every call)."""
        local = self.local_batch(global_batch, process_index, process_count)
        examples = self._eval_examples()
        num_batches = self.eval_count(global_batch, num_batches, len(examples) // global_batch,
                                      f"the test split holds {len(examples)} examples")
        ds = examples[:num_batches * global_batch].batch(local, drop_remainder=True, batch_fn=list)
        ds = ds[process_index::process_count].map(lambda exs: collate(exs, self.layout))
        return self.read(ds)

    def task_examples(self, task: str, split: str = "test", limit: int | None = None) -> list[Example]:
        """Every example of one task's split, in order, unaugmented (evaluation)."""
        src = self.source(task)
        n = src.num_examples(split) if limit is None else min(limit, src.num_examples(split))
        return [src.example(split, i, None) for i in range(n)]

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}:{w:g}" for n, w in zip(self.sources, self.weights))
        return f"MediaLMData({parts}; vocab={self.vocab_size}, seq_len={self.layout.seq_len})"


class TextWindowsSource:
    """Language modelling on a text corpus: <bos> + `length` characters, loss on every character."""

    task = "text"

    def __init__(self, tokenizer: MediaTokenizer, dataset: str = "tinyshakespeare", files: str = "",
                 length: int = 48):
        self.tokenizer, self.length = tokenizer, length
        splits = text_builder.open_text_dataset(dataset, files=files)
        self._streams = {}
        for split, name in (("train", "train"), ("test", "validation")):
            text = "".join(text_builder.read_documents(splits.sources[name], splits.text_key, splits.doc_key))
            try:
                ids = np.asarray(tokenizer.encode_text(text), np.int32)
            except ValueError as e:
                raise DataError(f"cannot tokenize {dataset!r} ({split}) with the media tokenizer: {e}") from None
            if len(ids) <= length:
                raise DataError(f"the {name} split of {dataset!r} holds {len(ids)} characters, fewer than one "
                                f"window of {length + 1}")
            self._streams[split] = ids

    def num_examples(self, split: str) -> int:
        n = len(self._streams[split])
        # training: every offset (as nanoGPT); test: non-overlapping windows
        return n - self.length if split == "train" else n // self.length - 1

    def example(self, split: str, index: int, rng=None) -> Example:
        start = index if split == "train" else index * self.length
        window = self._streams[split][start:start + self.length]
        return Example(np.concatenate([[BOS_ID], window]).astype(np.int32), 1)
