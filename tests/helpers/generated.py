"""Small generated data for end-to-end tests: a clone of the suite needs no corpora and no network.

- `generated_text`: a play-like text over exactly tiny Shakespeare's 65 characters
  (speaker lines, words drawn from a Zipf law with a bigram habit), so a char
  tokenizer on it has tiny Shakespeare's vocabulary and a small model learns it fast.
- `write_digit_tones`: WAV files named {digit}_{speaker}_{index}.wav, each a pure
  tone whose frequency names the digit (`TONE_HZ`): a known spectrum, learnable
  from the log-mel features alone.

Both are pure functions of their arguments; files go through the same builders as
the real corpora.
"""
from __future__ import annotations

import pathlib
import wave

import numpy as np

# tiny Shakespeare's alphabet (its char vocabulary is 65)
CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SPEAKERS = ("ROMEO", "JULIET", "FIRST CITIZEN", "KING RICHARD", "QUEEN ELIZABETH", "DUKE VINCENTIO",
            "MENENIUS", "BUCKINGHAM", "ZOUNDS WATCHMAN", "ESCALUS")
ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "qu", "r", "s", "t", "th", "v", "w", "x",
          "y", "z", "st", "br")
VOWELS = ("a", "e", "i", "o", "u", "ea", "ou", "y")
CODAS = ("", "", "n", "r", "st", "th", "ll", "d", "s", "ck")
# one line of every odd character, so each appears in the train and the validation split
RARE = "Sirrah, 3 crowns & 3 $ -- what's this? Q.E.D.; X marks: jazz!\n"


def _words(rng: np.random.Generator, n: int) -> list[str]:
    out = set()
    while len(out) < n:
        syllables = rng.integers(1, 4)
        out.add("".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)))
    return sorted(out)


def generated_text(n_chars: int = 300_000, seed: int = 0) -> str:
    """About `n_chars` characters of play-like text using every one of `CHARS` (and no other)."""
    rng = np.random.default_rng(seed)
    words = _words(rng, 300)
    zipf = 1.0 / np.arange(1, len(words) + 1)
    zipf /= zipf.sum()
    follower = rng.permutation(len(words))  # a bigram habit: word i is often followed by word follower[i]
    parts, size, w = [], 0, 0
    while size < n_chars:
        lines = [rng.choice(SPEAKERS) + ":"]
        for _ in range(rng.integers(1, 5)):
            sentence = []
            for _ in range(rng.integers(4, 11)):
                w = follower[w] if rng.random() < 0.5 else rng.choice(len(words), p=zipf)
                sentence.append(words[w])
                if rng.random() < 0.08:
                    sentence[-1] += rng.choice([",", ";", ":"])
            sentence[0] = sentence[0].capitalize()
            if rng.random() < 0.1:
                sentence[-1] += "'s"
            lines.append(" ".join(sentence) + rng.choice([".", ".", ",", "!", "?"]))
        block = "\n".join(lines) + "\n\n"
        if len(parts) % 40 == 0:
            block = RARE + block
        parts.append(block)
        size += len(block)
    text = "".join(parts)
    assert set(text) == set(CHARS), sorted(set(CHARS) ^ set(text))
    return text


def write_corpus(path, n_chars: int = 300_000, seed: int = 0) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generated_text(n_chars, seed), encoding="utf-8")
    return path


# a tone per digit, 250 Hz apart: far apart on the mel scale of an 8 kHz front end
TONE_HZ = {d: 400 + 300 * d for d in range(10)}


def tone(digit: int, index: int = 0, speaker: int = 0, rate: int = 8000, seconds: float = 0.5) -> np.ndarray:
    """The int16 samples of one recording: the digit's tone, a loudness and phase per speaker and index,
    and faded ends."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    amp = 0.2 + 0.05 * ((index + 2 * speaker) % 4)
    fade = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.02 * rate))
    x = amp * fade * np.sin(2 * np.pi * TONE_HZ[digit] * t + 0.7 * index + 1.3 * speaker)
    return (x * 32767).astype(np.int16)


def write_wav(path, samples_int16: np.ndarray, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples_int16, np.int16).tobytes())


def write_digit_tones(folder, speakers=("ann", "bob", "cid"), per_digit: int = 3, rate: int = 8000) -> pathlib.Path:
    """`per_digit` recordings of each digit by each speaker, named {digit}_{speaker}_{index}.wav."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for s, speaker in enumerate(speakers):
        for digit in range(10):
            for index in range(per_digit):
                write_wav(folder / f"{digit}_{speaker}_{index}.wav", tone(digit, index, s, rate), rate)
    return folder
