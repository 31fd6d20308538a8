"""The Free Spoken Digit Dataset as a TFDS dataset, and the transcription task on it.

FSDD is a folder of WAV files named ``{digit}_{speaker}_{index}.wav`` (8 kHz
mono). ``GptjaxSpokenDigits`` writes every recording of a folder into one
array_record split, ``recordings``, with the features of TFDS's stock
``spoken_digit`` (``audio`` int16 samples, ``audio/filename``, ``label``) plus
``speaker``, ``index`` and ``sample_rate``; one build per folder content (its
fingerprint names the config). Train and test are chosen when reading:

  split_by="speaker"   the speakers in `test_speakers` are test, everyone else trains
  split_by="index"     recordings with index < `test_below_index` (0..4) are test (FSDD's own rule)

A stock ``spoken_digit`` prepared (array_record) in a TFDS data dir can be
read instead (`source="tfds"`; its speakers come from the file names). TFDS's
stock builder needs TensorFlow for its Audio feature: requirements-stock-tfds.txt.

Task: "<audio>transcribe:" -> "seven". Clips are resampled to the model rate
and cropped / zero-padded to its clip length; training clips are augmented
(speed perturbation by resampling, random placement, noise) with the
generator the pipeline passes in, so every example is a pure function of its
index.
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import re

import numpy as np
import tensorflow_datasets as tfds

from gptjax.data.digits import NAMES
from gptjax.data.examples import Example, make_example
from gptjax.data.media_tokenizer import MediaTokenizer
from gptjax.data.tfds_local import LocalBuilder, build_local
from gptjax.data.wav import centred_offset, fit_clip, read_wav, resample
from gptjax.errors import DataError

FILENAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")
PATTERN_HELP = "{digit}_{speaker}_{index}.wav, e.g. 7_jackson_32.wav"
SPLIT = "recordings"


def parse_name(name: str) -> tuple[int, str, int]:
    """(digit, speaker, index) of an FSDD file name; DataError naming the file otherwise."""
    m = FILENAME.match(pathlib.Path(name).name)
    if not m:
        raise DataError(f"WAV file {name!r} is not named {PATTERN_HELP}")
    return int(m.group(1)), m.group(2), int(m.group(3))


def list_recordings(folder) -> list[pathlib.Path]:
    folder = pathlib.Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"spoken digits folder {str(folder)!r} does not exist; point data.folder at FSDD's "
                        "recordings/ folder (WAV files named " + PATTERN_HELP + ")")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav")
    if not files:
        raise DataError(f"no .wav files in {folder}; expected FSDD recordings named {PATTERN_HELP}")
    for p in files:
        parse_name(p.name)
    return files


def folder_fingerprint(files) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:12]


# ------------------------------------------------------------------ the TFDS builder

@dataclasses.dataclass(eq=False)
class RecordingsConfig(tfds.core.BuilderConfig):
    folder: str = ""


class GptjaxSpokenDigits(LocalBuilder):
    """All recordings of an FSDD folder in one ordered split; see the module docstring."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "int16 audio + filename/label/speaker/index/sample_rate."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.local_info("Free Spoken Digit Dataset recordings (gptjax).", {
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
            "audio/filename": tfds.features.Text(),
            "label": tfds.features.ClassLabel(num_classes=10),
            "speaker": tfds.features.Text(),
            "index": tfds.features.Scalar(dtype=np.int32),
            "sample_rate": tfds.features.Scalar(dtype=np.int32)})

    def _split_generators(self, dl_manager):
        return {SPLIT: self._generate_examples(list_recordings(self.builder_config.folder))}

    def _generate_examples(self, files):
        for key, path in enumerate(files):
            digit, speaker, index = parse_name(path.name)
            x, rate = read_wav(path)
            pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
            yield key, {"audio": pcm, "audio/filename": path.name, "label": digit, "speaker": speaker,
                        "index": index, "sample_rate": rate}


def prepare_recordings(folder, data_dir: str = "") -> GptjaxSpokenDigits:
    """Build (or reuse) the array_record dataset of a folder's recordings."""
    files = list_recordings(folder)
    cfg = RecordingsConfig(name=f"fsdd_{folder_fingerprint(files)}", folder=str(pathlib.Path(folder).resolve()),
                           description=f"{len(files)} recordings")
    # runs of a sweep may build the same folder at once
    return build_local(GptjaxSpokenDigits, cfg, data_dir, lock=lock_name(cfg.name))


def lock_name(config_name: str) -> str:
    return f"spoken_digits_{config_name}"


@dataclasses.dataclass
class Recording:
    audio: np.ndarray  # float32 at the model rate
    label: int
    speaker: str
    index: int
    filename: str


def read_recordings(folder: str = "", source: str = "folder", data_dir: str = "",
                    rate: int = 8000) -> list[Recording]:
    """Every recording of our built folder dataset, or of a stock TFDS spoken_digit, at `rate`."""
    if source == "folder":
        records_source = prepare_recordings(folder, data_dir).as_data_source()[SPLIT]
    elif source == "tfds":
        try:
            records_source = tfds.data_source("spoken_digit", split="train", data_dir=data_dir or None)
        except Exception as e:  # noqa: BLE001 - TFDS raises many types for a missing / unreadable dataset
            raise DataError(f"cannot open TFDS's spoken_digit in {data_dir or 'the default data dir'}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0][:200]} (it must be prepared as "
                            "array_record; its Audio feature needs TensorFlow: pip install -r "
                            "requirements-stock-tfds.txt; or use data.source=folder)") from None
    else:
        raise DataError(f"spoken digits source {source!r}: expected folder or tfds")
    out = []
    for rec in records_source.__getitems__(range(len(records_source))):
        name = rec["audio/filename"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        digit, speaker, index = parse_name(name)
        x = np.asarray(rec["audio"]).reshape(-1).astype(np.float32) / 32768.0
        x = resample(x, int(rec.get("sample_rate", 8000)), rate)
        out.append(Recording(x, int(rec["label"]), speaker, index, name))
    return out


def split_recordings(recordings, split_by: str = "speaker", test_speakers: str = "theo",
                     test_below_index: int = 5) -> dict[str, list[Recording]]:
    """{'train': [...], 'test': [...]} by held-out speakers or by recording index."""
    speakers = sorted({r.speaker for r in recordings})
    if split_by == "speaker":
        held = [s.strip() for s in test_speakers.split(",") if s.strip()]
        unknown = [s for s in held if s not in speakers]
        if unknown or not held:
            raise DataError(f"data.test_speakers={test_speakers!r}: {', '.join(unknown) or 'none given'} not among "
                            f"the speakers of the recordings ({', '.join(speakers)})")
        is_test = [r.speaker in held for r in recordings]
    elif split_by == "index":
        is_test = [r.index < test_below_index for r in recordings]
    else:
        raise DataError(f"data.split_by={split_by!r}: expected speaker or index")
    out = {"train": [r for r, t in zip(recordings, is_test) if not t],
           "test": [r for r, t in zip(recordings, is_test) if t]}
    for name, part in out.items():
        if not part:
            raise DataError(f"the {name} split is empty (split_by={split_by}, test_speakers={test_speakers!r}, "
                            f"speakers: {', '.join(speakers)})")
    return out


def mask_waveform(x: np.ndarray, rng: np.random.Generator, time_masks: int, freq_masks: int) -> np.ndarray:
    """SpecAugment in the waveform: silence `time_masks` stretches (up to 1/12 of the clip each)
    and remove `freq_masks` bands (up to 1/8 of the spectrum each, by zeroing FFT bins)."""
    x = x.copy()
    n = len(x)
    for _ in range(time_masks):
        width = int(rng.integers(0, n // 12 + 1))
        start = int(rng.integers(0, n - width + 1))
        x[start:start + width] = 0.0
    if freq_masks:
        spec = np.fft.rfft(x)
        bins = len(spec)
        for _ in range(freq_masks):
            width = int(rng.integers(0, bins // 8 + 1))
            start = int(rng.integers(0, bins - width + 1))
            spec[start:start + width] = 0.0
        x = np.fft.irfft(spec, n).astype(np.float32)
    return x


class SpokenDigitsSource:
    """Transcription examples: "<audio>transcribe:" -> the digit's name."""

    task = "transcribe"

    def __init__(self, tokenizer: MediaTokenizer, audio_spec, *, folder: str = "", source: str = "folder",
                 data_dir: str = "", split_by: str = "speaker", test_speakers: str = "theo",
                 test_below_index: int = 5, augment: bool = True, speed_perturb: float = 0.1, shift: float = 0.05,
                 noise: float = 0.3, time_masks: int = 0, freq_masks: int = 0):
        self.tokenizer, self.spec = tokenizer, audio_spec
        self.augment, self.speed_perturb, self.shift, self.noise = augment, speed_perturb, shift, noise
        self.time_masks, self.freq_masks = time_masks, freq_masks
        recordings = read_recordings(folder, source, data_dir, audio_spec.sample_rate)
        self.splits = split_recordings(recordings, split_by, test_speakers, test_below_index)

    def num_examples(self, split: str) -> int:
        return len(self.splits[split])

    def clip(self, x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Fit a recording to the clip length (centred, or its loudest window); with `rng`, augment it."""
        n = self.spec.clip_samples
        if rng is None or not self.augment:
            return fit_clip(x, n)
        if self.speed_perturb:  # linear interpolation: 10x cheaper than polyphase, fine for augmentation
            factor = rng.uniform(1 - self.speed_perturb, 1 + self.speed_perturb)
            x = np.interp(np.arange(0, len(x) - 1, factor), np.arange(len(x)), x).astype(np.float32)
        # the evaluation placement, jittered by up to `shift` seconds
        offset = centred_offset(x, n)
        jitter = int(self.shift * self.spec.sample_rate)
        out = fit_clip(x, n, offset + int(rng.integers(-jitter, jitter + 1)))
        out = mask_waveform(out, rng, self.time_masks, self.freq_masks)
        if self.noise:
            rms = float(np.sqrt(np.mean(x ** 2)) + 1e-8)
            out = out + rng.normal(size=n).astype(np.float32) * rms * rng.uniform(0, self.noise)
        return out.astype(np.float32)

    def example(self, split: str, index: int, rng: np.random.Generator | None) -> Example:
        rec = self.splits[split][index]
        answer = NAMES[rec.label]
        return make_example(self.tokenizer, "<audio>transcribe:", self.tokenizer.encode_text(answer),
                            audio=[self.clip(rec.audio, rng)], answer=answer, label=rec.label)
