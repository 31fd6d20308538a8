"""Handwritten 8x8 digits (scikit-learn's bundled `load_digits`, no download) as a TFDS
dataset, and the caption / question-answering / text-to-image tasks built on it.

``GptjaxDigits`` writes array_record splits ``train`` and ``test``: a
stratified split (by digit) of the 1797 images with `test_fraction` held out,
decided by `split_seed` (scikit-learn's ``train_test_split``). Features:
``image`` uint8 [8, 8] (grey levels 0..16), ``label`` (0..9), ``index`` (row
in ``load_digits``).

Tasks (one `Example` per index of a split):
  caption   "<image>caption:" -> "a handwritten seven"
  vqa       "<image>" + one of five questions -> a word ("seven", "yes", ...);
            index i is image i // 5, question i % 5
  generate  "draw a seven:" -> 64 pixel tokens (row-major, `pixel_levels` grey levels)
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from gptjax.data.examples import Example, make_example
from gptjax.data.media_tokenizer import MediaTokenizer
from gptjax.data.tfds_local import LocalBuilder, build_local
from gptjax.errors import DataError

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
MAX_GREY = 16  # load_digits' images hold 0..16


def caption_for(digit: int) -> str:
    return f"a handwritten {NAMES[digit]}"


def generation_prompt(digit: int) -> str:
    return f"draw {'an' if digit == 8 else 'a'} {NAMES[digit]}:"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def vqa_pair(digit: int, image_index: int, question: int) -> tuple[str, str]:
    """(question, answer) number `question` (0..4) about an image of `digit`."""
    if question == 0:
        return "what digit is this?", NAMES[digit]
    if question == 1:
        return "is it even?", _yes(digit % 2 == 0)
    if question == 2:
        return "is it greater than four?", _yes(digit > 4)
    if question == 3:
        return "what is it plus one?", NAMES[digit + 1]
    # half the images are asked about their own digit, half about another one
    asked = digit if image_index % 2 == 0 else (digit + 1 + (image_index // 2) % 9) % 10
    return f"is it a {NAMES[asked]}?", _yes(asked == digit)


VQA_QUESTIONS = 5


def quantize(images, levels: int) -> np.ndarray:
    """Grey values 0..16 -> integer levels 0..levels-1 (equal-width bins)."""
    return (np.asarray(images, np.int64) * levels // (MAX_GREY + 1)).astype(np.int32)


def dequantize(levels_arr, levels: int) -> np.ndarray:
    """Levels -> bin centres in [0, 1] (how generated images are shown and classified)."""
    return (np.asarray(levels_arr, np.float32) + 0.5) / levels


# ------------------------------------------------------------------ the TFDS builder

@dataclasses.dataclass(eq=False)
class DigitsSplitConfig(tfds.core.BuilderConfig):
    test_fraction: float = 0.2
    split_seed: int = 0


class GptjaxDigits(LocalBuilder):
    """scikit-learn's digits with a stratified train/test split; see the module docstring."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "image/label/index records, stratified split."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.local_info("8x8 handwritten digits (scikit-learn load_digits), gptjax split.", {
            "image": tfds.features.Tensor(shape=(8, 8), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
            "index": tfds.features.Scalar(dtype=np.int32)})

    def _split_generators(self, dl_manager):
        images, labels = load_images()
        train, test = split_indices(labels, self.builder_config.test_fraction, self.builder_config.split_seed)
        return {"train": self._generate_examples(images, labels, train),
                "test": self._generate_examples(images, labels, test)}

    def _generate_examples(self, images, labels, indices):
        for key, i in enumerate(indices):
            yield key, {"image": images[i].astype(np.uint8), "label": int(labels[i]), "index": int(i)}


def load_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.uint8), d.target.astype(np.int32)


def split_indices(labels, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) row indices, stratified by label."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction={test_fraction}: must be in (0, 1)")
    train, test = train_test_split(np.arange(len(labels)), test_size=test_fraction, random_state=seed,
                                   stratify=labels)
    return np.sort(train), np.sort(test)


def prepare_digits(test_fraction: float = 0.2, split_seed: int = 0, data_dir: str = "") -> GptjaxDigits:
    """Build (or reuse) the array_record dataset for this split."""
    name = f"seed{split_seed}_test{test_fraction:g}".replace(".", "p")
    cfg = DigitsSplitConfig(name=name, test_fraction=test_fraction, split_seed=split_seed,
                            description=f"{test_fraction:g} held out, seed {split_seed}")
    return build_local(GptjaxDigits, cfg, data_dir, lock=f"digits_{name}")


def read_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 8, 8], labels int32 [N]) of a built split, in record order."""
    source = builder.as_data_source()[split]
    records = source.__getitems__(range(len(source)))
    return (np.stack([r["image"] for r in records]).astype(np.uint8),
            np.asarray([r["label"] for r in records], np.int32))


# ------------------------------------------------------------------ tasks

def shift_image(image, dy: int, dx: int) -> np.ndarray:
    """Translate by (dy, dx) pixels, filling with zeros (background)."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


class DigitsSource:
    """Examples of one digits task (caption | vqa | generate) over the train or test split."""

    def __init__(self, task: str, tokenizer: MediaTokenizer, *, test_fraction: float = 0.2, split_seed: int = 0,
                 augment: bool = False, data_dir: str = ""):
        if task not in ("caption", "vqa", "generate"):
            raise DataError(f"digits task {task!r}: expected caption, vqa or generate")
        self.task, self.tokenizer, self.augment = task, tokenizer, augment
        self.split_config = dict(test_fraction=test_fraction, split_seed=split_seed, data_dir=data_dir)
        builder = prepare_digits(test_fraction, split_seed, data_dir)
        self.splits = {s: read_split(builder, s) for s in ("train", "test")}

    def num_examples(self, split: str) -> int:
        n = len(self.splits[split][1])
        return n * VQA_QUESTIONS if self.task == "vqa" else n

    def example(self, split: str, index: int, rng: np.random.Generator | None) -> Example:
        images, labels = self.splits[split]
        i = index // VQA_QUESTIONS if self.task == "vqa" else index
        grey, digit = images[i], int(labels[i])
        if self.task == "generate":
            levels = quantize(grey, self.tokenizer.pixel_levels).reshape(-1)
            return make_example(self.tokenizer, generation_prompt(digit), self.tokenizer.pixels_to_ids(levels),
                                label=digit, answer=NAMES[digit])
        image = grey.astype(np.float32) / MAX_GREY
        if rng is not None and self.augment:
            image = shift_image(image, *rng.integers(-1, 2, size=2))
        if self.task == "caption":
            prompt, answer = "<image>caption:", caption_for(digit)
        else:
            question, answer = vqa_pair(digit, i, index % VQA_QUESTIONS)
            prompt = "<image>" + question
        return make_example(self.tokenizer, prompt, self.tokenizer.encode_text(answer), images=[image],
                            answer=answer, label=digit)
