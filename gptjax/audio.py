"""Audio: WAV reading, resampling, clip fitting (numpy) and the log-mel front end (JAX).

The log-mel spectrogram is computed inside the model (jit-compiled, on the
accelerator) from raw waveforms at the model's sample rate: frames of
`win_length` samples every `hop_length`, a periodic Hann window, an `n_fft`
real FFT, power, an HTK-mel triangular filterbank, and decibels.
"""
from __future__ import annotations

import math
import wave

import jax.numpy as jnp
import numpy as np

from gptjax.data.corpora import DataError


# ------------------------------------------------------------------ files and rates (numpy)

def read_wav(path) -> tuple[np.ndarray, int]:
    """(mono float32 samples in [-1, 1], sample rate) of a PCM WAV file; channels are averaged.

    Any unreadable, truncated or non-PCM file raises DataError naming the file.
    """
    try:
        with wave.open(str(path), "rb") as w:
            n_ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(f"cannot read WAV file {path}: {e} (expected a PCM .wav file)") from None
    if width not in (1, 2, 3, 4) or n_ch < 1 or rate <= 0:
        raise DataError(f"WAV file {path}: unsupported format ({n_ch} channels, {8 * width}-bit, {rate} Hz); "
                        "expected 8/16/24/32-bit PCM")
    if len(raw) < n * n_ch * width or n == 0:
        raise DataError(f"WAV file {path} is truncated or empty: header says {n} frames, "
                        f"data holds {len(raw) // max(n_ch * width, 1)}")
    raw = raw[: n * n_ch * width]
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:  # 24-bit: widen to int32 by hand
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    else:
        dtype = np.int16 if width == 2 else np.int32
        x = np.frombuffer(raw, dtype).astype(np.float32) / float(np.iinfo(dtype).max + 1)
    return x.reshape(n, n_ch).mean(axis=1).astype(np.float32), rate


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


def fit_clip(x: np.ndarray, n: int, offset: int | None = None) -> np.ndarray:
    """Exactly `n` samples: a longer clip is cropped at `offset` (default: its loudest
    n-sample window), a shorter one is placed at `offset` (default: centred) in zeros."""
    x = np.asarray(x, np.float32)
    if len(x) >= n:
        if offset is None:
            energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
            offset = int(np.argmax(energy[n:] - energy[:-n]))
        offset = int(np.clip(offset, 0, len(x) - n))
        return x[offset: offset + n].copy()
    offset = (n - len(x)) // 2 if offset is None else int(np.clip(offset, 0, n - len(x)))
    out = np.zeros(n, np.float32)
    out[offset: offset + len(x)] = x
    return out


# ------------------------------------------------------------------ log-mel front end

def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular HTK-mel filters, float32 [n_mels, n_fft // 2 + 1], peaks of height 1."""
    fmax = sample_rate / 2 if not fmax else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel range {fmin}..{fmax} Hz must satisfy 0 <= fmin < fmax <= {sample_rate / 2}")
    bins_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins_hz[None] - lo) / (mid - lo)
    down = (hi - bins_hz[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def hann(n: int) -> np.ndarray:
    """The periodic Hann window (what spectral analysis uses; scipy's get_window('hann'))."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def num_frames(n_samples: int, win_length: int, hop_length: int) -> int:
    if n_samples < win_length:
        raise ValueError(f"a clip of {n_samples} samples is shorter than one window of {win_length}")
    return 1 + (n_samples - win_length) // hop_length


def power_spectrogram(x_BxT, win_length: int, hop_length: int, n_fft: int):
    """|STFT|^2 [B, frames, n_fft // 2 + 1] of waveforms (no centre padding)."""
    t = x_BxT.shape[-1]
    idx_FxW = (np.arange(num_frames(t, win_length, hop_length))[:, None] * hop_length
               + np.arange(win_length)[None])
    frames = jnp.asarray(x_BxT, jnp.float32)[..., idx_FxW] * hann(win_length)
    spec = jnp.fft.rfft(frames, n=n_fft, axis=-1)
    return jnp.real(spec) ** 2 + jnp.imag(spec) ** 2


def log_mel_spectrogram(x_BxT, sample_rate: int, win_length: int, hop_length: int, n_fft: int,
                        n_mels: int, fmin: float = 0.0, fmax: float | None = None):
    """Log-mel power in decibels, float32 [B, frames, n_mels] (floor at -100 dB)."""
    power = power_spectrogram(x_BxT, win_length, hop_length, n_fft)
    fb = jnp.asarray(mel_filterbank(n_mels, n_fft, sample_rate, fmin, fmax))
    mel = jnp.einsum("...fk,mk->...fm", power, fb)
    return 10.0 * jnp.log10(jnp.maximum(mel, 1e-10))


def normalize_db(db_BxFxM, top_db: float):
    """Per clip: clip to `top_db` below the loudest bin, then map [max - top_db, max] to [-1, 1].

    Makes features independent of recording gain (a new speaker's microphone
    level) and keeps the silence floor of zero padding bounded.
    """
    peak = jnp.max(db_BxFxM, axis=(-2, -1), keepdims=True)
    db = jnp.maximum(db_BxFxM, peak - top_db)
    return (db - peak) / top_db * 2.0 + 1.0
