"""Configuration of multimodal experiments: encoders, projectors, the media section, data.

`Experiment.media = MediaSpec(image=ImageEncoderSpec(...), audio=AudioEncoderSpec(...),
image_projector="mlp", audio_projector="resampler", ...)` turns the decoder
into a `MultimodalLM`; the data section is one of `DigitsData`,
`SpokenDigitsData` or `MixtureData`. Every field is an int, float, bool or
str, so `--set media.image.depth=2` or `--set data.test_speakers=jackson` work;
lists are comma-separated strings.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from gptjax.config import ConfigError, config_kind

PROJECTORS = ("linear", "mlp", "resampler")
DIGIT_TASKS = ("caption", "vqa", "generate")
MIXTURE_SOURCES = ("caption", "vqa", "generate", "transcribe", "text")


def _choice(key: str, value: str, options) -> None:
    if value not in options:
        raise ConfigError(f"{key}={value!r}: expected one of {', '.join(options)}")


def _positive(section: str, obj, names) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{section}.{name}={getattr(obj, name)}: must be positive")


@config_kind
@dataclasses.dataclass(frozen=True)
class ImageEncoderSpec:
    """A ViT over square grey images: patches -> linear -> 2-D positions -> bidirectional blocks."""

    image_size: int = 8
    patch_size: int = 2
    width: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 4
    pos_emb: str = "learned"  # learned (row + column tables) | sincos (fixed 2-D)
    dropout: float = 0.0  # in the encoder's blocks (active only when model.dropout > 0)
    pooling: str = "none"  # none: one token per patch | mean: one token per image
    kind: str = "vit"

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return 1 if self.pooling == "mean" else self.grid ** 2

    def validate(self) -> None:
        _positive("media.image", self, ("image_size", "patch_size", "width", "depth", "heads", "mlp_ratio"))
        if self.image_size % self.patch_size:
            raise ConfigError(f"media.image.patch_size={self.patch_size} must divide "
                              f"media.image.image_size={self.image_size}")
        if self.width % self.heads:
            raise ConfigError(f"media.image.width={self.width} is not divisible by media.image.heads={self.heads}")
        if self.pos_emb == "sincos" and self.width % 4:
            raise ConfigError(f"media.image.pos_emb=sincos needs width divisible by 4, got {self.width}")
        _choice("media.image.pos_emb", self.pos_emb, ("learned", "sincos"))
        _choice("media.image.pooling", self.pooling, ("none", "mean"))


@config_kind
@dataclasses.dataclass(frozen=True)
class AudioEncoderSpec:
    """Log-mel front end, two stride-2 convolutions, bidirectional blocks, optional frame stacking."""

    sample_rate: int = 8000  # the model's rate; inputs of other rates are resampled to it
    clip_seconds: float = 1.0  # clips are cropped / zero-padded to this length
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 0  # 0: the next power of two >= the window
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 0.0  # 0: Nyquist
    top_db: float = 80.0  # dynamic range kept below each clip's loudest bin
    cmn: bool = True  # per clip: remove each mel channel's mean (microphone / speaker tilt), scale to unit RMS
    width: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 4
    pos_emb: str = "sincos"  # sincos | learned
    stem: str = "conv1d"  # two stride-2 convs: conv1d (over time, mels as channels) | conv2d (3x3 over time x mel)
    stem_channels: int = 32  # conv2d: channels of its two convolutions
    frame_stack: int = 1  # concatenate this many consecutive frames into one token
    dropout: float = 0.0  # in the encoder's blocks (active only when model.dropout > 0)
    pooling: str = "none"  # none | mean
    kind: str = "audio_transformer"

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def fft_size(self) -> int:
        return self.n_fft or 1 << (self.win_length - 1).bit_length()

    @property
    def num_frames(self) -> int:
        return 1 + (self.clip_samples - self.win_length) // self.hop_length

    @property
    def conv_frames(self) -> int:
        """Frames after the two stride-2 convolutions (padding 1, kernel 3)."""
        return math.ceil(math.ceil(self.num_frames / 2) / 2)

    @property
    def num_tokens(self) -> int:
        return 1 if self.pooling == "mean" else math.ceil(self.conv_frames / self.frame_stack)

    @property
    def out_width(self) -> int:
        return self.width * (1 if self.pooling == "mean" else self.frame_stack)

    def validate(self) -> None:
        _positive("media.audio", self, ("sample_rate", "clip_seconds", "win_ms", "hop_ms", "n_mels", "top_db",
                                        "width", "depth", "heads", "mlp_ratio", "frame_stack"))
        if self.win_length > self.clip_samples:
            raise ConfigError(f"media.audio.win_ms={self.win_ms} is longer than the clip "
                              f"({self.clip_seconds} s)")
        if self.fft_size < self.win_length:
            raise ConfigError(f"media.audio.n_fft={self.n_fft} is smaller than the window "
                              f"({self.win_length} samples); use 0 for the next power of two")
        if self.fmax and not self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"media.audio.fmax={self.fmax}: must be above fmin={self.fmin} and at most "
                              f"the Nyquist rate {self.sample_rate / 2}")
        if self.width % self.heads:
            raise ConfigError(f"media.audio.width={self.width} is not divisible by media.audio.heads={self.heads}")
        _choice("media.audio.pos_emb", self.pos_emb, ("learned", "sincos"))
        _choice("media.audio.pooling", self.pooling, ("none", "mean"))
        _choice("media.audio.stem", self.stem, ("conv1d", "conv2d"))
        if self.stem == "conv2d" and self.stem_channels <= 0:
            raise ConfigError(f"media.audio.stem_channels={self.stem_channels}: must be positive")
        if self.pos_emb == "sincos" and self.width % 2:
            raise ConfigError(f"media.audio.pos_emb=sincos needs an even width, got {self.width}")


@config_kind
@dataclasses.dataclass(frozen=True)
class MediaSpec:
    """The media section of an Experiment: which encoders, which projectors, which mask."""

    image: Any = None  # ImageEncoderSpec or None
    audio: Any = None  # AudioEncoderSpec or None
    image_projector: str = "mlp"  # linear | mlp (LLaVA-1.5: two layers with GELU) | resampler
    audio_projector: str = "resampler"
    n_image_tokens: int = 0  # decoder tokens per image; 0: as many as the encoder gives (resampler: needed)
    n_audio_tokens: int = 0
    resampler_depth: int = 1
    resampler_heads: int = 4
    max_images: int = 1  # media slots per example (padded, with a count)
    max_audio: int = 1
    mask: str = "prefix"  # prefix: bidirectional over media + prompt | causal
    pixel_levels: int = 8  # grey levels of image tokens (text-to-image generation)
    kind: str = "media"

    def tokens_for(self, modality: str) -> int:
        """Decoder tokens one image / one clip becomes (the length of its placeholder run)."""
        enc = getattr(self, modality)
        if enc is None:
            return 0
        proj = getattr(self, f"{modality}_projector")
        wanted = getattr(self, f"n_{modality}_tokens")
        return wanted if proj == "resampler" else enc.num_tokens

    @property
    def image_tokens(self) -> int:
        return self.tokens_for("image")

    @property
    def audio_tokens(self) -> int:
        return self.tokens_for("audio")

    def validate(self, exp) -> None:
        _choice("media.mask", self.mask, ("prefix", "causal"))
        if not 2 <= self.pixel_levels <= 256:
            raise ConfigError(f"media.pixel_levels={self.pixel_levels}: expected 2..256")
        _positive("media", self, ("max_images", "max_audio", "resampler_depth", "resampler_heads"))
        for modality, cls in (("image", ImageEncoderSpec), ("audio", AudioEncoderSpec)):
            enc = getattr(self, modality)
            if enc is not None and not isinstance(enc, cls):
                raise ConfigError(f"media.{modality} must be a {cls.__name__}, got {type(enc).__name__}")
            proj = getattr(self, f"{modality}_projector")
            _choice(f"media.{modality}_projector", proj, PROJECTORS)
            if enc is None:
                continue
            enc.validate()
            if not 0 <= enc.dropout < 1:
                raise ConfigError(f"media.{modality}.dropout={enc.dropout}: must be in [0, 1)")
            if enc.dropout and not exp.model.dropout:
                raise ConfigError(f"media.{modality}.dropout={enc.dropout} needs model.dropout > 0: the train step "
                                  "runs the model non-deterministically (with a dropout rng) only then")
            wanted = getattr(self, f"n_{modality}_tokens")
            if proj == "resampler":
                if wanted <= 0:
                    raise ConfigError(f"media.n_{modality}_tokens={wanted}: a resampler needs the number of "
                                      "query tokens it produces (e.g. 8)")
                if exp.model.d_model % self.resampler_heads:
                    raise ConfigError(f"media.resampler_heads={self.resampler_heads} must divide "
                                      f"model.d_model={exp.model.d_model}")
            elif wanted and wanted != enc.num_tokens:
                raise ConfigError(f"media.n_{modality}_tokens={wanted}, but a {proj} projector passes the "
                                  f"encoder's {enc.num_tokens} tokens through; use 0, or a resampler")

    def build_model(self, spec, *, decode: bool = False, deterministic: bool = True):
        from gptjax.multimodal import MultimodalLM

        return MultimodalLM(spec, self, decode=decode, deterministic=deterministic)


# ------------------------------------------------------------------ data sections

def _need(exp, modality: str, what: str) -> None:
    if exp.media is None or getattr(exp.media, modality) is None:
        raise ConfigError(f"{what} needs media.{modality} (an encoder); this experiment has "
                          f"{'no media section' if exp.media is None else f'media.{modality}=None'}")


def _digits_source(cfg: "DigitsData", exp, tokenizer, task: str):
    from gptjax.data.digits import DigitsSource

    return DigitsSource(task, tokenizer, test_fraction=cfg.test_fraction, split_seed=cfg.split_seed,
                        augment=cfg.augment, data_dir=cfg.data_dir)


def _spoken_source(cfg: "SpokenDigitsData", exp, tokenizer):
    from gptjax.data.spoken_digits import SpokenDigitsSource

    return SpokenDigitsSource(tokenizer, exp.media.audio, folder=cfg.resolved_folder(), source=cfg.source,
                              data_dir=cfg.data_dir, split_by=cfg.split_by, test_speakers=cfg.test_speakers,
                              test_below_index=cfg.test_below_index, augment=cfg.augment,
                              speed_perturb=cfg.speed_perturb, shift=cfg.shift, noise=cfg.noise,
                              time_masks=cfg.time_masks, freq_masks=cfg.freq_masks)


def _media_data(exp, tokenizer_dir, named_sources: dict, weights):
    from gptjax.data.mixture import MediaLMData, load_or_make_tokenizer

    tokenizer = load_or_make_tokenizer(tokenizer_dir, exp.media.pixel_levels)
    sources = {name: make(tokenizer) for name, make in named_sources.items()}
    return MediaLMData(sources, weights, exp, tokenizer)


@config_kind
@dataclasses.dataclass(frozen=True)
class DigitsData:
    """scikit-learn's 8x8 handwritten digits: caption, question answering or text-to-image."""

    task: str = "caption"  # caption | vqa | generate
    test_fraction: float = 0.2  # held out, stratified by digit
    split_seed: int = 0
    augment: bool = False  # random one-pixel shifts of training images (slowed learning: 0.87 vs 0.98)
    data_dir: str = ""  # TFDS data dir; empty: the gptjax cache
    kind: str = "digits"

    def validate(self, exp) -> None:
        _choice("data.task", self.task, DIGIT_TASKS)
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"data.test_fraction={self.test_fraction}: must be in (0, 1)")
        if exp.media is None:
            raise ConfigError("digits data needs a media section (media=MediaSpec(...))")
        if self.task != "generate":
            _need(exp, "image", f"data.task={self.task}")

    def build(self, exp, tokenizer_dir=None):
        return _media_data(exp, tokenizer_dir, {self.task: lambda tok: _digits_source(self, exp, tok, self.task)},
                           (1.0,))


@config_kind
@dataclasses.dataclass(frozen=True)
class SpokenDigitsData:
    """The Free Spoken Digit Dataset: transcribe a spoken digit ("seven")."""

    folder: str = ""  # WAVs named {digit}_{speaker}_{index}.wav; empty: $GPTJAX_DATA_DIR/fsdd/recordings
    source: str = "folder"  # folder | tfds (the stock TFDS `spoken_digit`, prepared in data_dir)
    data_dir: str = ""  # TFDS data dir (ours: built from the folder; stock: where spoken_digit is)
    split_by: str = "speaker"  # speaker: test_speakers held out | index: indices below test_below_index
    test_speakers: str = "theo"  # comma-separated speakers held out for test
    test_below_index: int = 5  # split_by=index: recordings 0..4 of every speaker and digit are test
    augment: bool = True  # speed perturbation, placement jitter, noise and masks on training clips
    speed_perturb: float = 0.1  # +-10% speed, by resampling
    shift: float = 0.05  # placement jitter (seconds) around the centred evaluation placement
    noise: float = 0.3  # noise up to this fraction of the clip's RMS (random per clip)
    time_masks: int = 2  # SpecAugment on training clips: silenced stretches (each up to 1/12 s of a 1 s clip)
    freq_masks: int = 2  # and removed frequency bands (each up to 1/8 of the spectrum)
    kind: str = "spoken_digits"

    def resolved_folder(self) -> str:
        if self.folder or self.source != "folder":
            return self.folder
        root = os.environ.get("GPTJAX_DATA_DIR", "")
        return os.path.join(root, "fsdd", "recordings") if root else ""

    def validate(self, exp) -> None:
        _choice("data.source", self.source, ("folder", "tfds"))
        _choice("data.split_by", self.split_by, ("speaker", "index"))
        if self.split_by == "speaker" and not [s for s in self.test_speakers.split(",") if s.strip()]:
            raise ConfigError("data.test_speakers is empty: name the held-out speakers, e.g. theo or jackson,nicolas")
        if self.source == "folder" and not self.resolved_folder():
            raise ConfigError("data.folder is empty and GPTJAX_DATA_DIR is not set: point data.folder at the "
                              "FSDD recordings/ folder")
        if (not 0 <= self.speed_perturb < 0.5 or min(self.noise, self.shift) < 0
                or min(self.time_masks, self.freq_masks) < 0):
            raise ConfigError(f"data.speed_perturb={self.speed_perturb} must be in [0, 0.5); data.noise, shift, "
                              "time_masks and freq_masks must be non-negative")
        _need(exp, "audio", "spoken digits")

    def build(self, exp, tokenizer_dir=None):
        return _media_data(exp, tokenizer_dir, {"transcribe": lambda tok: _spoken_source(self, exp, tok)}, (1.0,))


@config_kind
@dataclasses.dataclass(frozen=True)
class MixtureData:
    """Text, image-text and audio-text examples in one run, drawn with per-source weights.

    `sources` names tasks: caption, vqa, generate (digits, configured by `digits`;
    its `task` field is not used here), transcribe (spoken digits, configured by
    `spoken`) and text (language modelling on `text_dataset`).
    """

    sources: str = "caption,transcribe,generate,text"
    weights: str = "1,1,1,0.25"
    digits: DigitsData = DigitsData()
    spoken: SpokenDigitsData = SpokenDigitsData()
    text_dataset: str = "tinyshakespeare"
    text_files: str = ""
    text_len: int = 48  # characters per text window
    kind: str = "mixture"

    def parsed(self) -> list[tuple[str, float]]:
        names = [s.strip() for s in self.sources.split(",") if s.strip()]
        try:
            weights = [float(w) for w in self.weights.split(",") if w.strip()]
        except ValueError:
            raise ConfigError(f"data.weights={self.weights!r}: expected comma-separated numbers") from None
        if not names or len(names) != len(weights):
            raise ConfigError(f"data.sources={self.sources!r} and data.weights={self.weights!r} must list "
                              "the same number of entries")
        for name in names:
            _choice("data.sources entry", name, MIXTURE_SOURCES)
        if len(set(names)) != len(names) or any(w <= 0 for w in weights):
            raise ConfigError("data.sources must not repeat and data.weights must be positive")
        return list(zip(names, weights))

    def validate(self, exp) -> None:
        if exp.media is None:
            raise ConfigError("a mixture needs a media section (media=MediaSpec(...))")
        for name, _ in self.parsed():
            if name in ("caption", "vqa"):
                _need(exp, "image", f"mixture source {name}")
            if name == "transcribe":
                self.spoken.validate(exp)
        if self.text_len < 1 or self.text_len + 1 > exp.model.max_seq_len:
            raise ConfigError(f"data.text_len={self.text_len} must be in [1, model.max_seq_len - 1]")

    def build(self, exp, tokenizer_dir=None):
        from gptjax.data.mixture import TextWindowsSource

        makers = {}
        for name, _ in self.parsed():
            if name in DIGIT_TASKS:
                makers[name] = (lambda n: lambda tok: _digits_source(self.digits, exp, tok, n))(name)
            elif name == "transcribe":
                makers[name] = lambda tok: _spoken_source(self.spoken, exp, tok)
            else:
                makers[name] = lambda tok: TextWindowsSource(tok, self.text_dataset, self.text_files, self.text_len)
        return _media_data(exp, tokenizer_dir, makers, tuple(w for _, w in self.parsed()))
