"""Audio front end: WAV reading, resampling, clip fitting, log-mel against a scipy reference."""
import math
import wave

import numpy as np
import pytest
from scipy import signal

from gptjax.data import wav
from gptjax.errors import DataError
from gptjax.model import audio_frontend as audio
from helpers.quick import quick_first


def write_wav(path, samples, rate=8000, width=2, channels=1):
    """Write int samples (already scaled to the width) as PCM."""
    arr = np.asarray(samples)
    if channels > 1:
        arr = arr.reshape(-1, channels)
    raw = arr.astype({1: np.uint8, 2: np.int16, 4: np.int32}[width]).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def test_read_wav_16bit_scales_to_unit_range(tmp_path):
    write_wav(tmp_path / "a.wav", [0, 16384, -32768, 32767])
    x, rate = wav.read_wav(tmp_path / "a.wav")
    assert rate == 8000 and x.dtype == np.float32
    np.testing.assert_allclose(x, [0, 0.5, -1, 32767 / 32768])


def test_read_wav_8bit_unsigned_and_stereo_average(tmp_path):
    write_wav(tmp_path / "u8.wav", [128, 255, 0], width=1)
    np.testing.assert_allclose(wav.read_wav(tmp_path / "u8.wav")[0], [0, 127 / 128, -1])
    write_wav(tmp_path / "st.wav", [1000, 3000, -2000, 0], channels=2)
    np.testing.assert_allclose(wav.read_wav(tmp_path / "st.wav")[0] * 32768, [2000, -1000])


def test_corrupt_or_truncated_wav_is_named_in_the_error(tmp_path):
    bad = tmp_path / "7_theo_3.wav"
    bad.write_bytes(b"RIFF....not a wave file")
    with pytest.raises(DataError, match="7_theo_3.wav"):
        wav.read_wav(bad)
    write_wav(tmp_path / "t.wav", np.zeros(100))
    data = (tmp_path / "t.wav").read_bytes()
    (tmp_path / "t.wav").write_bytes(data[:-50])  # header promises more frames than there are
    with pytest.raises(DataError, match="t.wav"):
        wav.read_wav(tmp_path / "t.wav")


def test_resampling_keeps_a_tone_and_removes_what_the_new_rate_cannot_hold():
    t16 = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * t16)
    out = wav.resample(tone, 16000, 8000)
    assert out.shape == (8000,)
    t8 = np.arange(8000) / 8000
    np.testing.assert_allclose(out[200:-200], np.sin(2 * np.pi * 440 * t8)[200:-200], atol=2e-3)
    # 6 kHz is above the 4 kHz Nyquist rate of 8 kHz: it must not alias into the output
    high = np.sin(2 * np.pi * 6000 * t16)
    assert np.abs(wav.resample(high, 16000, 8000)[200:-200]).max() < 0.02
    # a 44.1 kHz input reaches 8 kHz with the reduced polyphase ratio
    assert wav.resample(np.zeros(44100), 44100, 8000).shape == (8000,)
    with pytest.raises(ValueError, match="positive"):
        wav.resample(tone, 0, 8000)


def test_fit_clip_pads_centred_and_crops_the_loudest_window():
    np.testing.assert_array_equal(wav.fit_clip(np.ones(4), 8), [0, 0, 1, 1, 1, 1, 0, 0])
    x = np.zeros(20, np.float32)
    x[12:16] = 1.0
    np.testing.assert_array_equal(wav.fit_clip(x, 6), x[10:16])
    assert wav.fit_clip(x, 6, offset=0).sum() == 0


def htk_mel_filterbank(n_mels, n_fft, rate, fmin, fmax):
    """The reference, written out: HTK mels (2595 log10(1 + f / 700)), n_mels + 2 edges equally spaced in
    mels from fmin to fmax, and filter m rising linearly from edge m to 1 at edge m + 1 and falling to 0
    at edge m + 2, evaluated at each FFT bin's frequency k * rate / n_fft."""
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    lo_mel, hi_mel = mel(fmin), mel(fmax)
    edges = [hz(lo_mel + i * (hi_mel - lo_mel) / (n_mels + 1)) for i in range(n_mels + 2)]
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * rate / n_fft
            if lo <= f <= centre:
                fb[m, k] = (f - lo) / (centre - lo)
            elif centre < f <= hi:
                fb[m, k] = (hi - f) / (hi - centre)
    return fb


@pytest.mark.parametrize("n_mels,n_fft,rate,fmin,fmax", [(40, 256, 8000, 20.0, None), (64, 512, 16000, 0.0, 7600.0)])
def test_mel_filterbank_equals_the_htk_formula(n_mels, n_fft, rate, fmin, fmax):
    fb = audio.mel_filterbank(n_mels, n_fft, rate, fmin, fmax)
    assert fb.shape == (n_mels, n_fft // 2 + 1) and fb.dtype == np.float32
    np.testing.assert_allclose(fb, htk_mel_filterbank(n_mels, n_fft, rate, fmin, fmax or rate / 2), atol=1e-6)
    assert audio.hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.05)  # the HTK scale's anchor: 1 kHz = 1000 mel


def test_mel_filters_widen_with_frequency():
    """Equal steps in mels: a filter near 4 kHz spans several times the bins of one near 100 Hz (linearly
    spaced filters would all be equally wide), and the centres' mel values are equally spaced."""
    fb = audio.mel_filterbank(40, 1024, 8000, 20.0)
    widths = (fb > 0).sum(axis=1)
    assert widths[-1] >= 5 * widths[1]
    assert (np.diff(widths[5:]) >= 0).all()
    centres_hz = fb.argmax(axis=1) * 8000 / 1024
    steps = np.diff(2595 * np.log10(1 + centres_hz[5:] / 700))
    np.testing.assert_allclose(steps, steps.mean(), rtol=0.35)  # within the bin grid's rounding
    assert np.diff(centres_hz)[-1] > 5 * np.diff(centres_hz)[5]


def test_log_mel_matches_scipy_stft_reference():
    rng = np.random.default_rng(0)
    rate, win, hop, n_fft, n_mels = 8000, 200, 80, 256, 40
    t = np.arange(rate) / rate
    x = (0.5 * np.sin(2 * np.pi * 300 * t) + 0.1 * rng.normal(size=rate)).astype(np.float32)
    _, _, z = signal.stft(x, fs=rate, window="hann", nperseg=win, noverlap=win - hop, nfft=n_fft,
                          detrend=False, return_onesided=True, boundary=None, padded=False)
    power = np.abs(z * signal.get_window("hann", win).sum()) ** 2  # undo scipy's 1/sum(window) scaling
    ref = 10 * np.log10(np.maximum(htk_mel_filterbank(n_mels, n_fft, rate, 20.0, rate / 2) @ power, 1e-10)).T
    got = np.asarray(audio.log_mel_spectrogram(x[None], rate, win, hop, n_fft, n_mels, 20.0))[0]
    assert got.shape == ref.shape == (audio.num_frames(rate, win, hop), n_mels) == (98, 40)
    np.testing.assert_allclose(got, ref, atol=1e-2)


def test_normalised_features_ignore_gain_and_stay_bounded():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 8000)).astype(np.float32)
    a = audio.normalize_db(audio.log_mel_spectrogram(x, 8000, 200, 80, 256, 40), 80.0)
    b = audio.normalize_db(audio.log_mel_spectrogram(0.01 * x, 8000, 200, 80, 256, 40), 80.0)
    np.testing.assert_allclose(a, b, atol=1e-3)
    silent = audio.normalize_db(audio.log_mel_spectrogram(np.zeros((1, 8000)), 8000, 200, 80, 256, 40), 80.0)
    assert np.isfinite(silent).all() and float(np.max(a)) == pytest.approx(1.0)


def test_encoder_features_remove_channel_means_and_have_unit_rms():
    from gptjax.config import AudioEncoderSpec
    from gptjax.model.audio_frontend import audio_features

    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 8000)).astype(np.float32) * np.linspace(0, 1, 8000, dtype=np.float32)
    f = np.asarray(audio_features(AudioEncoderSpec(), x))
    assert f.shape == (2, 98, 40)
    np.testing.assert_allclose(f.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(np.sqrt((f ** 2).mean(axis=(1, 2))), 1, atol=1e-3)
    silent = np.asarray(audio_features(AudioEncoderSpec(), np.zeros((1, 8000), np.float32)))
    assert np.isfinite(silent).all() and np.abs(silent).max() == 0  # the zero-media ablation stays finite
    raw = np.asarray(audio_features(AudioEncoderSpec(cmn=False), x))
    assert raw.max() == pytest.approx(1.0) and raw.min() >= -1.0


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))  # flax's default (tanh) GELU


def conv_stride2(x, kernel, bias):
    """Stride-2 convolution, kernel 3, one zero frame of padding on each side, over the first one or two
    axes of x [T, (M,) C] with kernel [3, (3,) C, O], written as explicit sums."""
    if kernel.ndim == 3:
        xp = np.pad(x, ((1, 1), (0, 0)))
        return np.stack([sum(xp[2 * t + i] @ kernel[i] for i in range(3)) + bias
                         for t in range((x.shape[0] + 1) // 2)])
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    return np.stack([np.stack([sum(xp[2 * t + i, 2 * m + j] @ kernel[i, j] for i in range(3) for j in range(3)) + bias
                               for m in range((x.shape[1] + 1) // 2)]) for t in range((x.shape[0] + 1) // 2)])


@pytest.mark.parametrize("stem", quick_first(["conv1d", "conv2d"]))
def test_audio_encoder_stems_give_a_token_per_four_frames(stem):
    """The stem's values equal two stride-2 convolutions of the log-mel features computed here from its
    parameters (over time with mels as channels, or 3x3 over time x mel then a linear map per frame)."""
    import flax.linen as nn
    import jax

    from gptjax.config import AudioEncoderSpec
    from gptjax.model.audio_frontend import audio_features
    from gptjax.model.encoders import AudioEncoder

    spec = AudioEncoderSpec(width=16, depth=1, heads=2, stem=stem, stem_channels=4)
    spec.validate()
    enc = AudioEncoder(spec)
    x = np.random.default_rng(3).normal(size=(2, 8000)).astype(np.float32)
    params = jax.jit(lambda key: nn.unbox(enc.init(key, x)["params"]))(jax.random.key(0))
    out, seen = jax.jit(lambda p: enc.apply({"params": p}, x, capture_intermediates=True,
                                            mutable=["intermediates"]))(params)
    out, seen = np.asarray(out), seen["intermediates"]
    assert out.shape == (2, spec.conv_frames, 16) == (2, 25, 16)
    names = set(params)
    features = np.asarray(audio_features(spec, x), np.float64)  # [2, 98 frames, 40 mels]
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    if stem == "conv2d":  # 3x3 kernels over (time, mel) with 1 -> 4 -> 4 channels, then channels x mels -> width
        assert {"conv2d_0", "conv2d_1", "stem_proj"} <= names and "conv_0" not in names
        assert params["conv2d_0"]["kernel"].shape == (3, 3, 1, 4)
        assert params["stem_proj"]["kernel"].shape == (4 * 10, 16)  # 40 mels / 4 = 10
        for b in range(2):
            h = gelu(conv_stride2(features[b][..., None], p["conv2d_0"]["kernel"], p["conv2d_0"]["bias"]))
            h = gelu(conv_stride2(h, p["conv2d_1"]["kernel"], p["conv2d_1"]["bias"]))  # [25, 10, 4]
            want = h.reshape(25, -1) @ p["stem_proj"]["kernel"] + p["stem_proj"]["bias"]
            np.testing.assert_allclose(np.asarray(seen["stem_proj"]["__call__"][0])[b], want, rtol=1e-4, atol=1e-4)
    else:
        assert {"conv_0", "conv_1"} <= names and "stem_proj" not in names
        for b in range(2):
            h = gelu(conv_stride2(features[b], p["conv_0"]["kernel"], p["conv_0"]["bias"]))  # [49, 16]
            want = conv_stride2(h, p["conv_1"]["kernel"], p["conv_1"]["bias"])  # [25, 16]
            np.testing.assert_allclose(np.asarray(seen["conv_1"]["__call__"][0])[b], want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(out[0], out[1])  # different clips, different tokens


def test_audio_stem_and_dropout_are_validated():
    from gptjax.config import AudioEncoderSpec, Experiment, MediaSpec, ModelSpec, apply_overrides
    from gptjax.errors import ConfigError

    with pytest.raises(ConfigError, match="media.audio.stem='conv3d'"):
        AudioEncoderSpec(stem="conv3d").validate()
    with pytest.raises(ConfigError, match="stem_channels"):
        AudioEncoderSpec(stem="conv2d", stem_channels=0).validate()
    exp = Experiment(model=ModelSpec(n_layer=1, n_head=2, d_model=32, max_seq_len=32),
                     media=MediaSpec(audio=AudioEncoderSpec(width=16, heads=2, depth=1), n_audio_tokens=4))
    exp.media.validate(exp)
    with pytest.raises(ConfigError, match="needs model.dropout > 0"):
        bad = apply_overrides(exp, ["media.audio.dropout=0.1"])
        bad.media.validate(bad)
    with pytest.raises(ConfigError, match=r"dropout=1.5: expected a number in \[0, 1\)"):
        bad = apply_overrides(exp, ["media.audio.dropout=1.5", "model.dropout=0.1"])
        bad.media.validate(bad)
    ok = apply_overrides(exp, ["media.audio.dropout=0.1", "model.dropout=0.1"])
    ok.media.validate(ok)


@pytest.mark.slow
def test_audio_encoder_dropout_acts_only_when_training():
    import jax

    from gptjax.config import AudioEncoderSpec
    from gptjax.model.encoders import AudioEncoder

    spec = AudioEncoderSpec(width=16, depth=1, heads=2, dropout=0.5)
    x = np.random.default_rng(4).normal(size=(1, 8000)).astype(np.float32)
    params = AudioEncoder(spec).init(jax.random.key(0), x)["params"]
    train = AudioEncoder(spec, deterministic=False)
    a = np.asarray(train.apply({"params": params}, x, rngs={"dropout": jax.random.key(1)}))
    b = np.asarray(train.apply({"params": params}, x, rngs={"dropout": jax.random.key(2)}))
    assert not np.allclose(a, b)
    e1, e2 = (np.asarray(AudioEncoder(spec).apply({"params": params}, x)) for _ in range(2))
    np.testing.assert_array_equal(e1, e2)
