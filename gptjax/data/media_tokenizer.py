"""The multimodal tokenizer: characters, special tokens and image-pixel tokens.

One fixed vocabulary for every multimodal dataset, so a text, image-text and
audio-text mixture shares one model:

  ids 0..4     <pad> <bos> <eos> <image> <audio>   (fixed: the model splices on them)
  ids 5..5+P   <p0> .. <p{P-1}>                     quantised grey levels (image generation)
  then         printable ASCII (space..~) and newline, one id per character

`encode` turns the special names written in text ("<image>", "<p3>") into
their ids, so prompts can be typed; `encode_text` reads every character
literally. Saved as ``tokenizer.json`` (kind ``media``) and restored by
``gptjax.data.tokenizers.load_tokenizer``.
"""
from __future__ import annotations

import hashlib
import pathlib
import re
from typing import Iterable

import numpy as np

from gptjax import atomic
from gptjax.special_tokens import AUDIO_ID, BOS_ID, EOS_ID, IMAGE_ID, PAD_ID, SPECIALS

TOKENIZER_FILE = "tokenizer.json"  # (gptjax/data/tokenizers.py loads every kind from it)
ALPHABET = "".join(chr(c) for c in range(32, 127)) + "\n"
_SPECIAL_RE = re.compile(r"(<pad>|<bos>|<eos>|<image>|<audio>|<p\d+>)")


class MediaTokenizer:
    """Characters + specials + `pixel_levels` pixel tokens (see the module docstring)."""

    name = "media"
    pad_id, bos_id, eos_id, image_id, audio_id = PAD_ID, BOS_ID, EOS_ID, IMAGE_ID, AUDIO_ID

    def __init__(self, pixel_levels: int = 8, alphabet: str = ALPHABET):
        if not 2 <= pixel_levels <= 256:
            raise ValueError(f"pixel_levels={pixel_levels}: expected 2..256 grey levels")
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("the alphabet must hold distinct characters")
        self.pixel_levels = int(pixel_levels)
        self.alphabet = alphabet
        self.pixel_offset = len(SPECIALS)
        self.char_offset = self.pixel_offset + self.pixel_levels
        self._char_ids = {c: self.char_offset + i for i, c in enumerate(alphabet)}
        self.vocab_size = self.char_offset + len(alphabet)
        self._names = list(SPECIALS) + [f"<p{i}>" for i in range(self.pixel_levels)] + list(alphabet)

    # ---- encoding ----------------------------------------------------------

    def encode_text(self, text: str) -> list[int]:
        """Every character literally (no special names)."""
        try:
            return [self._char_ids[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} (U+{ord(e.args[0]):04X}) is not in the media "
                             "tokenizer's alphabet (printable ASCII and newline)") from None

    def encode(self, text: str) -> list[int]:
        """Text with special names (<image>, <audio>, <bos>, <eos>, <pad>, <pN>) as their ids."""
        ids: list[int] = []
        for part in _SPECIAL_RE.split(text):
            if not part:
                continue
            if _SPECIAL_RE.fullmatch(part):
                if part.startswith("<p") and part not in SPECIALS:
                    ids.append(self.pixel_id(int(part[2:-1])))
                else:
                    ids.append(SPECIALS.index(part))
            else:
                ids += self.encode_text(part)
        return ids

    def pixel_id(self, level: int) -> int:
        if not 0 <= level < self.pixel_levels:
            raise ValueError(f"pixel level {level} outside [0, {self.pixel_levels})")
        return self.pixel_offset + level

    def pixels_to_ids(self, levels) -> np.ndarray:
        """Quantised grey levels (ints in [0, pixel_levels)) to token ids."""
        levels = np.asarray(levels)
        if levels.size and (levels.min() < 0 or levels.max() >= self.pixel_levels):
            raise ValueError(f"pixel levels must lie in [0, {self.pixel_levels})")
        return (levels + self.pixel_offset).astype(np.int32)

    def ids_to_pixels(self, ids) -> np.ndarray:
        """Token ids to grey levels; ids that are not pixel tokens become -1."""
        ids = np.asarray(ids, np.int64)
        levels = ids - self.pixel_offset
        return np.where((levels >= 0) & (levels < self.pixel_levels), levels, -1)

    # ---- decoding ----------------------------------------------------------

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Ids to text; specials and pixels as their names unless `skip_special`; <pad> dropped."""
        out = []
        for i in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, np.int64).reshape(-1):
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} is outside the media vocabulary [0, {self.vocab_size})")
            if i == PAD_ID or (skip_special and i < self.char_offset):
                continue
            out.append(self._names[i])
        return "".join(out)

    def answer_text(self, ids) -> str:
        """The text of generated ids up to the first <eos>, specials dropped."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if EOS_ID in ids:
            ids = ids[:ids.index(EOS_ID)]
        return self.decode(ids, skip_special=True)

    # ---- persistence ---------------------------------------------------------

    def save(self, directory):
        return atomic.write_json(pathlib.Path(directory) / TOKENIZER_FILE,
                                 {"kind": "media", "pixel_levels": self.pixel_levels, "alphabet": self.alphabet})

    @classmethod
    def from_meta(cls, meta: dict) -> "MediaTokenizer":
        return cls(pixel_levels=int(meta["pixel_levels"]), alphabet=meta["alphabet"])

    def fingerprint(self) -> str:
        return hashlib.sha256(f"media:{self.pixel_levels}:{self.alphabet}".encode()).hexdigest()[:16]

    def __eq__(self, other) -> bool:
        return isinstance(other, MediaTokenizer) and self.fingerprint() == other.fingerprint()

    def __hash__(self) -> int:
        return hash(self.fingerprint())
