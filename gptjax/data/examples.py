"""Multimodal examples and batches of one fixed shape.

A source (digits captions, spoken digits, text windows, ...) turns an index of
a split into an `Example`: token ids with one `<image>` / `<audio>` placeholder
per media item, the prompt length, and the media arrays. `collate` expands every
placeholder into a run of M tokens (M = the projector's tokens per item),
shifts inputs/targets, masks the loss to the answer, and pads text and media to
fixed shapes (an absent modality is zero-filled, with a count of 0).
`prompt_batch` does the same for prompts alone (decoding).
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from gptjax.data.media_tokenizer import MediaTokenizer
from gptjax.errors import DataError
from gptjax.special_tokens import AUDIO_ID, BOS_ID, EOS_ID, IMAGE_ID, PAD_ID


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
