"""Audio files on the host: reading WAV files, changing sample rates, fitting clips to a length.

Reading is scipy's (`scipy.io.wavfile`: PCM of 8 to 32 bits, float, RIFF/RF64);
what is added here is the turning of every format into mono float32 in [-1, 1]
and errors that name the file. Resampling is scipy's polyphase filter.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from gptjax.errors import DataError

_SCALE = {np.dtype(np.uint8): (128.0, 128.0), np.dtype(np.int16): (0.0, 32768.0),
          np.dtype(np.int32): (0.0, 2.0 ** 31)}  # 24-bit files come back left-justified in int32


def read_wav(path) -> tuple[np.ndarray, int]:
    """(mono float32 samples in [-1, 1], sample rate) of a WAV file; channels are averaged.

    An unreadable, truncated, empty or unsupported file raises DataError naming the file.
    """
    from scipy.io import wavfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", wavfile.WavFileWarning)  # "reached EOF prematurely": truncated
            rate, data = wavfile.read(str(path))
    except (ValueError, OSError, EOFError, wavfile.WavFileWarning) as e:
        raise DataError(f"cannot read WAV file {path}: {e} (expected a PCM or float .wav file)") from None
    if data.size == 0 or rate <= 0:
        raise DataError(f"WAV file {path} is empty or has no sample rate ({data.size} samples, {rate} Hz)")
    if data.dtype.kind == "f":
        x = data.astype(np.float32)
    elif data.dtype in _SCALE:
        offset, scale = _SCALE[data.dtype]
        x = (data.astype(np.float64) - offset) / scale
    else:
        raise DataError(f"WAV file {path}: unsupported sample type {data.dtype}; expected 8/16/24/32-bit PCM "
                        "or float")
    x = x.reshape(len(x), -1).mean(axis=1)
    return x.astype(np.float32), int(rate)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (scipy's anti-aliased `resample_poly`) by the reduced ratio."""
    from scipy.signal import resample_poly

    rate_in, rate_out = int(rate_in), int(rate_out)
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    if rate_in == rate_out:
        return np.asarray(x, np.float32)
    g = math.gcd(rate_in, rate_out)
    return resample_poly(np.asarray(x, np.float64), rate_out // g, rate_in // g).astype(np.float32)


def loudest_offset(x: np.ndarray, n: int) -> int:
    """Start of the `n`-sample window of `x` with the most energy (0 when `x` is shorter)."""
    if len(x) <= n:
        return 0
    energy = np.concatenate([[0.0], np.cumsum(np.asarray(x, np.float64) ** 2)])
    return int(np.argmax(energy[n:] - energy[:-n]))


def centred_offset(x: np.ndarray, n: int) -> int:
    """Where a clip goes by default: a shorter one centred in n samples, a longer one at its loudest window."""
    return (n - len(x)) // 2 if len(x) < n else loudest_offset(x, n)


def fit_clip(x: np.ndarray, n: int, offset: int | None = None) -> np.ndarray:
    """Exactly `n` samples: a longer clip is cropped at `offset` (default: its loudest
    n-sample window), a shorter one is placed at `offset` (default: centred) in zeros."""
    x = np.asarray(x, np.float32)
    offset = centred_offset(x, n) if offset is None else offset
    if len(x) >= n:
        offset = int(np.clip(offset, 0, len(x) - n))
        return x[offset: offset + n].copy()
    offset = int(np.clip(offset, 0, n - len(x)))
    out = np.zeros(n, np.float32)
    out[offset: offset + len(x)] = x
    return out
