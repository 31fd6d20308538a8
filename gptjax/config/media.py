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
from typing import Any

from gptjax.config.fields import NON_NEGATIVE, POSITIVE, UNIT_OPEN, between, check_fields, choice, field, one_of
from gptjax.config.registry import config_kind
from gptjax.errors import ConfigError

PROJECTORS = ("linear", "mlp", "resampler")
DIGIT_TASKS = ("caption", "vqa", "generate")
MIXTURE_SOURCES = ("caption", "vqa", "generate", "transcribe", "text")
POS_EMB = one_of("learned", "sincos")
POOLING = one_of("none", "mean")


def _check_encoder(section: str, enc, exp, refusals) -> None:
    """Check an encoder's fields, then refuse the first (condition, message) of `refusals` that holds."""
    check_fields(enc, section)
    refusals = [(enc.width % enc.heads, f"{section}.width={enc.width} is not divisible by {section}.heads={enc.heads}"),
                (enc.dropout and exp is not None and not exp.model.dropout,
                 f"{section}.dropout={enc.dropout} needs model.dropout > 0: the train step runs the model "
                 "non-deterministically (with a dropout rng) only then"), *refusals]
    for condition, message in refusals:
        if condition:
            raise ConfigError(message)


@config_kind
@dataclasses.dataclass(frozen=True)
class ImageEncoderSpec:
    """A ViT over square grey images: patches -> linear -> 2-D positions -> bidirectional blocks."""

    image_size: int = field(8, POSITIVE)
    patch_size: int = field(2, POSITIVE)
    width: int = field(64, POSITIVE)
    depth: int = field(2, POSITIVE)
    heads: int = field(4, POSITIVE)
    mlp_ratio: int = field(4, POSITIVE)
    pos_emb: str = field("learned", POS_EMB)  # learned (row + column tables) | sincos (fixed 2-D)
    dropout: float = field(0.0, UNIT_OPEN)  # in the encoder's blocks (active only when model.dropout > 0)
    pooling: str = field("none", POOLING)  # none: one token per patch | mean: one token per image
    kind: str = "vit"

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return 1 if self.pooling == "mean" else self.grid ** 2

    def validate(self, exp=None) -> None:
        _check_encoder("media.image", self, exp, [
            (self.image_size % self.patch_size,
             f"media.image.patch_size={self.patch_size} must divide media.image.image_size={self.image_size}"),
            (self.pos_emb == "sincos" and self.width % 4,
             f"media.image.pos_emb=sincos needs width divisible by 4, got {self.width}")])


@config_kind
@dataclasses.dataclass(frozen=True)
class AudioEncoderSpec:
    """Log-mel front end, two stride-2 convolutions, bidirectional blocks, optional frame stacking."""

    sample_rate: int = field(8000, POSITIVE)  # the model's rate; inputs of other rates are resampled to it
    clip_seconds: float = field(1.0, POSITIVE)  # clips are cropped / zero-padded to this length
    win_ms: float = field(25.0, POSITIVE)
    hop_ms: float = field(10.0, POSITIVE)
    n_fft: int = field(0, NON_NEGATIVE)  # 0: the next power of two >= the window
    n_mels: int = field(40, POSITIVE)
    fmin: float = field(20.0, NON_NEGATIVE)
    fmax: float = field(0.0, NON_NEGATIVE)  # 0: Nyquist
    top_db: float = field(80.0, POSITIVE)  # dynamic range kept below each clip's loudest bin
    cmn: bool = True  # per clip: remove each mel channel's mean (microphone / speaker tilt), scale to unit RMS
    width: int = field(64, POSITIVE)
    depth: int = field(2, POSITIVE)
    heads: int = field(4, POSITIVE)
    mlp_ratio: int = field(4, POSITIVE)
    pos_emb: str = field("sincos", POS_EMB)
    # two stride-2 convs: conv1d (over time, mels as channels) | conv2d (3x3 over time x mel)
    stem: str = field("conv1d", one_of("conv1d", "conv2d"))
    stem_channels: int = field(32, POSITIVE)  # conv2d: channels of its two convolutions
    frame_stack: int = field(1, POSITIVE)  # concatenate this many consecutive frames into one token
    dropout: float = field(0.0, UNIT_OPEN)  # in the encoder's blocks (active only when model.dropout > 0)
    pooling: str = field("none", POOLING)
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

    def validate(self, exp=None) -> None:
        _check_encoder("media.audio", self, exp, [
            (self.win_length > self.clip_samples,
             f"media.audio.win_ms={self.win_ms} is longer than the clip ({self.clip_seconds} s)"),
            (self.fft_size < self.win_length, f"media.audio.n_fft={self.n_fft} is smaller than the window "
             f"({self.win_length} samples); use 0 for the next power of two"),
            (self.fmax and not self.fmin < self.fmax <= self.sample_rate / 2, f"media.audio.fmax={self.fmax}: "
             f"must be above fmin={self.fmin} and at most the Nyquist rate {self.sample_rate / 2}"),
            (self.pos_emb == "sincos" and self.width % 2,
             f"media.audio.pos_emb=sincos needs an even width, got {self.width}")])


@config_kind
@dataclasses.dataclass(frozen=True)
class MediaSpec:
    """The media section of an Experiment: which encoders, which projectors, which mask."""

    image: Any = None  # ImageEncoderSpec or None
    audio: Any = None  # AudioEncoderSpec or None
    image_projector: str = field("mlp", one_of(*PROJECTORS))  # mlp: LLaVA-1.5's two layers with GELU
    audio_projector: str = field("resampler", one_of(*PROJECTORS))
    n_image_tokens: int = field(0, NON_NEGATIVE)  # decoder tokens per image; 0: as many as the encoder gives
    n_audio_tokens: int = field(0, NON_NEGATIVE)  # (a resampler needs a number)
    resampler_depth: int = field(1, POSITIVE)
    resampler_heads: int = field(4, POSITIVE)
    max_images: int = field(1, POSITIVE)  # media slots per example (padded, with a count)
    max_audio: int = field(1, POSITIVE)
    mask: str = field("prefix", one_of("prefix", "causal"))  # prefix: bidirectional over media + prompt
    pixel_levels: int = field(8, between(2, 256))  # grey levels of image tokens (text-to-image generation)
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
        for modality, cls in (("image", ImageEncoderSpec), ("audio", AudioEncoderSpec)):
            enc = getattr(self, modality)
            if enc is None:
                continue
            if not isinstance(enc, cls):
                raise ConfigError(f"media.{modality} must be a {cls.__name__}, got {type(enc).__name__}")
            enc.validate(exp)
            proj, wanted = getattr(self, f"{modality}_projector"), getattr(self, f"n_{modality}_tokens")
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


# ------------------------------------------------------------------ data sections

def need_encoder(exp, modality: str, what: str) -> None:
    if exp.media is None or getattr(exp.media, modality) is None:
        raise ConfigError(f"{what} needs media.{modality} (an encoder); this experiment has "
                          f"{'no media section' if exp.media is None else f'media.{modality}=None'}")


@config_kind
@dataclasses.dataclass(frozen=True)
class DigitsData:
    """scikit-learn's 8x8 handwritten digits: caption, question answering or text-to-image."""

    task: str = field("caption", one_of(*DIGIT_TASKS))
    test_fraction: float = field(0.2, between(0, 1, low_open=True, high_open=True))  # held out, by digit
    split_seed: int = field(0, NON_NEGATIVE)
    augment: bool = False  # random one-pixel shifts of training images (slowed learning: 0.87 vs 0.98)
    data_dir: str = ""  # TFDS data dir; empty: the gptjax cache
    kind: str = "digits"

    def validate(self, exp) -> None:
        if exp.media is None:
            raise ConfigError("digits data needs a media section (media=MediaSpec(...))")
        if self.task != "generate":
            need_encoder(exp, "image", f"data.task={self.task}")


@config_kind
@dataclasses.dataclass(frozen=True)
class SpokenDigitsData:
    """The Free Spoken Digit Dataset: transcribe a spoken digit ("seven")."""

    folder: str = ""  # WAVs named {digit}_{speaker}_{index}.wav; empty: $GPTJAX_DATA_DIR/fsdd/recordings
    source: str = field("folder", one_of("folder", "tfds"))  # tfds: the stock TFDS `spoken_digit`
    data_dir: str = ""  # TFDS data dir (ours: built from the folder; stock: where spoken_digit is)
    split_by: str = field("speaker", one_of("speaker", "index"))  # index: indices below test_below_index
    test_speakers: str = "theo"  # comma-separated speakers held out for test
    test_below_index: int = field(5, POSITIVE)  # split_by=index: recordings 0..4 of each speaker and digit
    augment: bool = True  # speed perturbation, placement jitter, noise and masks on training clips
    speed_perturb: float = field(0.1, between(0, 0.5, high_open=True))  # +-10% speed, by resampling
    shift: float = field(0.05, NON_NEGATIVE)  # placement jitter (seconds) around the evaluation placement
    noise: float = field(0.3, NON_NEGATIVE)  # noise up to this fraction of the clip's RMS (random per clip)
    time_masks: int = field(2, NON_NEGATIVE)  # SpecAugment: silenced stretches (each up to 1/12 of the clip)
    freq_masks: int = field(2, NON_NEGATIVE)  # and removed frequency bands (each up to 1/8 of the spectrum)
    kind: str = "spoken_digits"

    def validate(self, exp) -> None:
        if self.split_by == "speaker" and not [s for s in self.test_speakers.split(",") if s.strip()]:
            raise ConfigError("data.test_speakers is empty: name the held-out speakers, e.g. theo or jackson,nicolas")
        need_encoder(exp, "audio", "spoken digits")


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
    text_len: int = field(48, POSITIVE)  # characters per text window
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
            choice("data.sources entry", name, MIXTURE_SOURCES)
        if len(set(names)) != len(names) or not all(0 < w < math.inf for w in weights):
            raise ConfigError("data.sources must not repeat and data.weights must be positive and finite")
        return list(zip(names, weights))

    def validate(self, exp) -> None:
        if exp.media is None:
            raise ConfigError("a mixture needs a media section (media=MediaSpec(...))")
        for name, _ in self.parsed():
            if name in ("caption", "vqa"):
                need_encoder(exp, "image", f"mixture source {name}")
            if name == "transcribe":
                self.spoken.validate(exp)
        if self.text_len + 1 > exp.model.max_seq_len:
            raise ConfigError(f"data.text_len={self.text_len} must be in [1, model.max_seq_len - 1]")
