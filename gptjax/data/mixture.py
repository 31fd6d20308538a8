"""Multimodal batches: examples from one or several sources -> numpy batches of one shape.

A source (digits captions, spoken digits, text windows, ...) turns an index of
a split into an `Example`: token ids with one `<image>` / `<audio>` placeholder
per media item, the prompt length, and the media arrays. `collate` expands every
placeholder into a run of M tokens (M = the projector's tokens per item),
shifts inputs/targets, masks the loss to the answer, and pads text and media to
fixed shapes (an absent modality is zero-filled, with a count of 0).

`MediaLMData` is what the training loop reads. Training example j of source s
is a pure function of (seed, s, j): the source's examples shuffled anew every
epoch (grain), with augmentation drawn from a generator seeded by (seed, s, j).
Sources are interleaved deterministically by weight (grain `MapDataset.mix`),
so batch `step` is a pure function of the step, whatever the process count.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Iterator, Protocol

import grain
import numpy as np

from gptjax.data import tokenizers
from gptjax.data.corpora import DataError
from gptjax.data.media_tokenizer import AUDIO_ID, BOS_ID, EOS_ID, IMAGE_ID, PAD_ID, MediaTokenizer

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Example:
    """One sequence: [<bos>, prompt with placeholders, answer, <eos>] and its media in order."""

    tokens: np.ndarray  # int32, placeholders NOT yet expanded
    prompt_len: int  # tokens before the answer (bos + prompt, placeholders counted once)
    images: list = dataclasses.field(default_factory=list)  # [H, W] float32 in [0, 1]
    audio: list = dataclasses.field(default_factory=list)  # [T] float32 waveforms at the model rate
    answer: str = ""  # reference text (evaluation)
    label: int = -1  # class of the example where there is one (digit)


class ExampleSource(Protocol):
    task: str

    def num_examples(self, split: str) -> int: ...
    def example(self, split: str, index: int, rng: np.random.Generator | None) -> Example: ...


def make_example(tokenizer: MediaTokenizer, prompt: str, answer_ids, *, images=(), audio=(), answer="",
                 label=-1) -> Example:
    """<bos> + encode(prompt) (specials such as <image> allowed) + answer ids + <eos>."""
    prompt_ids = [BOS_ID] + tokenizer.encode(prompt)
    tokens = np.asarray(prompt_ids + list(answer_ids) + [EOS_ID], np.int32)
    return Example(tokens, len(prompt_ids), list(images), list(audio), answer, label)


@dataclasses.dataclass(frozen=True)
class Layout:
    """The fixed shapes of a batch."""

    seq_len: int
    image_tokens: int = 0  # run length of one image's placeholders (0: no image encoder)
    audio_tokens: int = 0
    max_images: int = 1
    max_audio: int = 1
    image_size: int = 8
    audio_samples: int = 8000

    @classmethod
    def of(cls, exp) -> "Layout":
        m = exp.media
        return cls(seq_len=exp.model.max_seq_len, image_tokens=m.image_tokens, audio_tokens=m.audio_tokens,
                   max_images=m.max_images, max_audio=m.max_audio,
                   image_size=m.image.image_size if m.image is not None else 0,
                   audio_samples=m.audio.clip_samples if m.audio is not None else 0)


def expand_placeholders(tokens, prompt_len: int, n_images: int, n_audio: int, layout: Layout):
    """Each <image> / <audio> becomes a run of layout.image_tokens / audio_tokens placeholders.

    Returns (expanded tokens, expanded prompt length). The number of
    placeholders must equal the number of media items given (DataError).
    """
    tokens = np.asarray(tokens, np.int32)
    for token_id, name, count, run in ((IMAGE_ID, "image", n_images, layout.image_tokens),
                                       (AUDIO_ID, "audio", n_audio, layout.audio_tokens)):
        found = int((tokens == token_id).sum())
        if found != count:
            raise DataError(f"example has {found} <{name}> placeholder(s) but {count} {name} item(s); "
                            f"write one <{name}> per item, in order")
        if count and run == 0:
            raise DataError(f"example holds {name} input, but the experiment has no media.{name} encoder")
    runs = np.where(tokens == IMAGE_ID, layout.image_tokens, np.where(tokens == AUDIO_ID, layout.audio_tokens, 1))
    return np.repeat(tokens, runs), int(runs[:prompt_len].sum())


def collate(examples: list[Example], layout: Layout) -> dict[str, np.ndarray]:
    """Numpy batch of fixed shape; loss on the answer and <eos> only (see the module docstring)."""
    b, L = len(examples), layout.seq_len
    batch = {"inputs": np.full((b, L), PAD_ID, np.int32), "targets": np.full((b, L), PAD_ID, np.int32),
             "loss_mask": np.zeros((b, L), np.float32), "positions": np.zeros((b, L), np.int32),
             "segment_ids": np.zeros((b, L), np.int32), "prefix_len": np.zeros((b,), np.int32)}
    if layout.image_tokens:
        s = layout.image_size
        batch["images"] = np.zeros((b, layout.max_images, s, s), np.float32)
        batch["image_count"] = np.zeros((b,), np.int32)
    if layout.audio_tokens:
        batch["audio"] = np.zeros((b, layout.max_audio, layout.audio_samples), np.float32)
        batch["audio_count"] = np.zeros((b,), np.int32)
    for r, ex in enumerate(examples):
        toks, prefix = expand_placeholders(ex.tokens, ex.prompt_len, len(ex.images), len(ex.audio), layout)
        n = len(toks) - 1  # inputs are all tokens but the last
        if n > L:
            raise DataError(f"an example of {len(toks)} tokens (media expanded) does not fit model.max_seq_len="
                            f"{L} + 1; raise max_seq_len or shorten prompts")
        batch["inputs"][r, :n] = toks[:-1]
        batch["targets"][r, :n] = toks[1:]
        batch["loss_mask"][r, prefix - 1:n] = 1.0  # targets from the first answer token to <eos>
        batch["positions"][r, :n] = np.arange(n)
        batch["segment_ids"][r, :n] = 1
        batch["prefix_len"][r] = prefix
        for key, items, limit, shape in (("images", ex.images, layout.max_images, None),
                                         ("audio", ex.audio, layout.max_audio, None)):
            if not items:
                continue
            if len(items) > limit:
                raise DataError(f"an example holds {len(items)} {key} items; media.max_"
                                f"{'images' if key == 'images' else 'audio'}={limit}")
            for k, item in enumerate(items):
                if np.shape(item) != batch[key].shape[2:]:
                    raise DataError(f"{key} item of shape {np.shape(item)}; the batch layout expects "
                                    f"{batch[key].shape[2:]}")
                batch[key][r, k] = item
            batch["image_count" if key == "images" else "audio_count"][r] = len(items)
    return batch


def prompt_batch(examples: list[Example], layout: Layout) -> dict[str, np.ndarray]:
    """Prompts only (for decoding): inputs = bos + prompt (expanded), right-padded to the longest."""
    prompts = [dataclasses.replace(ex, tokens=ex.tokens[:ex.prompt_len]) for ex in examples]
    expanded = [expand_placeholders(p.tokens, p.prompt_len, len(p.images), len(p.audio), layout)[0]
                for p in prompts]
    width = max(len(t) for t in expanded)
    # collate shifts by one; a dummy final token keeps the whole prompt in `inputs`
    padded = [dataclasses.replace(p, tokens=np.append(p.tokens, PAD_ID), prompt_len=len(p.tokens))
              for p in prompts]
    batch = collate(padded, dataclasses.replace(layout, seq_len=width))
    for key in ("targets", "loss_mask"):
        batch.pop(key)
    batch["prompt_len"] = np.asarray([len(t) for t in expanded], np.int32)
    return batch


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


class MediaLMData:
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
        self._warned_eval_cap = False

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

    @staticmethod
    def _local_batch(global_batch: int, process_index: int, process_count: int) -> int:
        if process_count < 1 or not 0 <= process_index < process_count:
            raise DataError(f"process_index {process_index} must be in [0, {process_count})")
        if global_batch < 1 or global_batch % process_count:
            raise DataError(f"global_batch {global_batch} must be a positive multiple of process_count "
                            f"{process_count}")
        return global_batch // process_count

    def train_batches(self, global_batch: int, start_step: int = 0, process_index: int = 0,
                      process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Endless local training batches from `start_step` (process p gets rows p*B/P..)."""
        local = self._local_batch(global_batch, process_index, process_count)
        ds = self._train_examples().batch(local, drop_remainder=True, batch_fn=list)[process_index::process_count]
        ds = ds.map(lambda exs: collate(exs, self.layout))[start_step:]
        return iter(ds.to_iter_dataset(self._read_options()))

    def eval_batches(self, global_batch: int, num_batches: int | None = None, process_index: int = 0,
                     process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """The first `num_batches` batches of test examples, in a fixed shuffled order (the same every call)."""
        local = self._local_batch(global_batch, process_index, process_count)
        examples = self._eval_examples()
        available = len(examples) // global_batch
        if available == 0:
            raise DataError(f"the test split holds {len(examples)} examples, fewer than one batch of {global_batch}")
        if num_batches is None or num_batches > available:
            if num_batches is not None and not self._warned_eval_cap:
                log.warning("eval: %d batches of %d asked, the test split holds %d; using %d",
                            num_batches, global_batch, available, available)
                self._warned_eval_cap = True
            num_batches = available
        ds = examples[:num_batches * global_batch].batch(local, drop_remainder=True, batch_fn=list)
        ds = ds[process_index::process_count].map(lambda exs: collate(exs, self.layout))
        return iter(ds.to_iter_dataset(self._read_options()))

    def task_examples(self, task: str, split: str = "test", limit: int | None = None) -> list[Example]:
        """Every example of one task's split, in order, unaugmented (evaluation)."""
        src = self.source(task)
        n = src.num_examples(split) if limit is None else min(limit, src.num_examples(split))
        return [src.example(split, i, None) for i in range(n)]

    def _read_options(self) -> grain.ReadOptions:
        return grain.ReadOptions(num_threads=self.num_threads,
                                 prefetch_buffer_size=self.prefetch if self.num_threads else 0)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}:{w:g}" for n, w in zip(self.sources, self.weights))
        return f"MediaLMData({parts}; vocab={self.vocab_size}, seq_len={self.layout.seq_len})"


class TextWindowsSource:
    """Language modelling on a text corpus: <bos> + `length` characters, loss on every character."""

    task = "text"

    def __init__(self, tokenizer: MediaTokenizer, dataset: str = "tinyshakespeare", files: str = "",
                 length: int = 48):
        from gptjax.data import text_builder

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
