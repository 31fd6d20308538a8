"""The audio encoder's front end: waveforms -> normalised log-mel features, inside the model (JAX).

The log-mel spectrogram is computed inside the model (jit-compiled, on the
accelerator) from raw waveforms at the model's sample rate: frames of
`win_length` samples every `hop_length`, a periodic Hann window, an `n_fft`
real FFT, power, an HTK-mel triangular filterbank, and decibels.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


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


def audio_features(cfg, wave_BxT):
    """Normalised log-mel features [B, F, M] of an AudioEncoderSpec's front end (no parameters)."""
    db = log_mel_spectrogram(wave_BxT, cfg.sample_rate, cfg.win_length, cfg.hop_length, cfg.fft_size,
                             cfg.n_mels, cfg.fmin, cfg.fmax or None)
    x = normalize_db(db, cfg.top_db)
    if cfg.cmn:  # per clip: each channel's mean over time removed, then unit variance overall
        x = x - x.mean(axis=-2, keepdims=True)
        x = x / (jnp.sqrt(jnp.mean(x * x, axis=(-2, -1), keepdims=True)) + 1e-5)
    return x
