"""Spoken digits: the folder -> TFDS build, splits by speaker and by index, clips and errors; training on tones."""
import pathlib
import threading
import wave

import numpy as np
import pytest

from gptjax.config import AudioEncoderSpec, Experiment, MediaSpec, ModelSpec, SpokenDigitsData, Train, apply_overrides
from gptjax.data import spoken_digits as sd
from gptjax.data.build_lock import build_lock
from gptjax.data.media_tokenizer import MediaTokenizer
from gptjax.errors import ConfigError, DataError

SPEC = AudioEncoderSpec()


def write_tone(path, freq, n=4000, rate=8000):
    x = (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / rate) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())


@pytest.fixture()
def folder(tmp_path):
    rec = tmp_path / "recordings"
    rec.mkdir()
    for speaker in ("ann", "bob", "cid"):
        for digit in range(10):
            for index in range(3):
                write_tone(rec / f"{digit}_{speaker}_{index}.wav", 200 + 50 * digit)
    (rec / "README.txt").write_text("not audio: ignored")
    return rec


def test_split_by_speaker_holds_out_exactly_the_named_speakers(folder, tmp_path):
    recs = sd.read_recordings(str(folder), data_dir=str(tmp_path / "tfds"))
    assert len(recs) == 90 and {r.speaker for r in recs} == {"ann", "bob", "cid"}
    split = sd.split_recordings(recs, "speaker", "bob")
    assert {r.speaker for r in split["test"]} == {"bob"} and len(split["test"]) == 30
    assert {r.speaker for r in split["train"]} == {"ann", "cid"}
    two = sd.split_recordings(recs, "speaker", "bob, cid")
    assert len(two["train"]) == 30
    with pytest.raises(DataError, match="zed.*ann, bob, cid"):
        sd.split_recordings(recs, "speaker", "zed")
    with pytest.raises(DataError, match="train split is empty"):
        sd.split_recordings(recs, "speaker", "ann,bob,cid")


def test_a_build_waits_while_another_process_builds_the_same_folder(folder, tmp_path):
    """Two runs of a sweep starting at once must not both write the dataset: TFDS's final rename of
    the second would fail with FileExistsError. The build holds a lock; while someone else holds it,
    nothing is written, and once it is free the build completes."""
    out = tmp_path / "tfds"
    name = sd.lock_name(f"fsdd_{sd.folder_fingerprint(sd.list_recordings(folder))}")
    result = {}
    with build_lock(str(out), name):
        t = threading.Thread(target=lambda: result.update(b=sd.prepare_recordings(folder, str(out))))
        t.start()
        t.join(timeout=3.0)
        assert t.is_alive(), "the build did not wait for the lock"
        assert not (out / "gptjax_spoken_digits").exists()
    t.join(timeout=120)
    assert not t.is_alive() and result["b"].data_path.exists()
    assert len(sd.read_recordings(str(folder), data_dir=str(out))) == 90


def test_split_by_index_tests_the_low_indices(folder, tmp_path):
    recs = sd.read_recordings(str(folder), data_dir=str(tmp_path / "tfds"))
    split = sd.split_recordings(recs, "index", test_below_index=1)
    assert {r.index for r in split["test"]} == {0} and {r.index for r in split["train"]} == {1, 2}


def test_audio_survives_the_tfds_round_trip_and_is_resampled(folder, tmp_path):
    write_tone(folder / "3_dee_0.wav", 350, n=8000, rate=16000)  # a 16 kHz file among 8 kHz ones
    recs = {r.filename: r for r in sd.read_recordings(str(folder), data_dir=str(tmp_path / "tfds"))}
    x = recs["3_ann_1.wav"].audio
    expected = (0.3 * np.sin(2 * np.pi * 350 * np.arange(4000) / 8000) * 32767).astype(np.int16) / 32768
    np.testing.assert_allclose(x, expected, atol=1e-6)
    assert recs["3_dee_0.wav"].audio.shape == (4000,)  # 0.5 s at 16 kHz -> 8 kHz


def test_bad_names_and_corrupt_files_are_named(folder, tmp_path):
    (folder / "seven.wav").write_bytes(b"x")
    with pytest.raises(DataError, match=r"seven.wav.*\{digit\}_\{speaker\}_\{index\}"):
        sd.read_recordings(str(folder), data_dir=str(tmp_path / "tfds"))
    (folder / "seven.wav").unlink()
    (folder / "4_ann_9.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(DataError, match="4_ann_9.wav"):
        sd.read_recordings(str(folder), data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DataError, match="does not exist"):
        sd.read_recordings(str(tmp_path / "nowhere"))


def test_examples_fit_the_clip_and_augment_deterministically(folder, tmp_path):
    src = sd.SpokenDigitsSource(MediaTokenizer(), SPEC, folder=str(folder), data_dir=str(tmp_path / "tfds"),
                                test_speakers="cid")
    ex = src.example("test", 0, None)
    tok = src.tokenizer
    assert ex.audio[0].shape == (8000,) and ex.answer == "zero" and ex.label == 0
    assert tok.decode(ex.tokens) == "<bos><audio>transcribe:zero<eos>"
    a = src.example("train", 7, np.random.default_rng([1, 2]))
    b = src.example("train", 7, np.random.default_rng([1, 2]))
    c = src.example("train", 7, np.random.default_rng([1, 3]))
    np.testing.assert_array_equal(a.audio[0], b.audio[0])
    assert not np.array_equal(a.audio[0], c.audio[0])
    np.testing.assert_array_equal(src.example("test", 0, None).audio[0], ex.audio[0])


def test_config_validation_and_overrides(folder):
    exp = Experiment(model=ModelSpec(n_layer=1, n_head=2, d_model=32, max_seq_len=32),
                     data=SpokenDigitsData(folder=str(folder)), train=Train(batch_size=4),
                     media=MediaSpec(audio=AudioEncoderSpec(width=16, heads=2, depth=1), n_audio_tokens=4))
    exp = apply_overrides(exp, ["data.test_speakers=bob", "media.audio.n_mels=32"]).validate()
    assert exp.data.test_speakers == "bob" and exp.media.audio.n_mels == 32
    with pytest.raises(ConfigError, match="split_by"):
        apply_overrides(exp, ["data.split_by=random"]).validate()
    with pytest.raises(ConfigError, match="n_audio_tokens"):
        apply_overrides(exp, ["media.n_audio_tokens=0"]).validate()
    with pytest.raises(ConfigError, match="passes the encoder's 25 tokens"):
        apply_overrides(exp, ["media.audio_projector=mlp"]).validate()
    assert apply_overrides(exp, ["media.audio_projector=mlp", "media.n_audio_tokens=0"]).validate().media.audio_tokens == 25
    with pytest.raises(ConfigError, match="needs media.audio"):
        Experiment(model=exp.model, data=exp.data, media=MediaSpec()).validate()


def test_fsdd_split_by_speaker_on_the_real_recordings(data_dir):
    folder = data_dir / "fsdd" / "recordings"
    if not folder.is_dir():
        pytest.skip("no FSDD recordings under GPTJAX_DATA_DIR")
    recs = sd.read_recordings(str(folder))
    speakers = sorted({r.speaker for r in recs})
    assert len(recs) == 2500 and speakers == ["george", "jackson", "nicolas", "theo", "yweweler"]
    split = sd.split_recordings(recs, "speaker", "theo")
    assert len(split["train"]) == 2000 and len(split["test"]) == 500
    assert {r.speaker for r in split["test"]} == {"theo"}
    assert sorted({r.label for r in split["test"]}) == list(range(10))
    by_index = sd.split_recordings(recs, "index")
    assert len(by_index["test"]) == 250 and max(r.index for r in by_index["test"]) == 4


def test_waveform_masks_silence_stretches_and_remove_bands():
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    x = (np.sin(2 * np.pi * 500 * t) + np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    timed = sd.mask_waveform(x, np.random.default_rng(1), time_masks=3, freq_masks=0)
    assert 0 < (timed == 0).sum() <= 3 * (8000 // 12) + 3
    # frequency masks only ever remove energy, each at most 1/8 of the band
    for seed in range(20):
        y = sd.mask_waveform(x, np.random.default_rng(seed), time_masks=0, freq_masks=1)
        before, after = np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(y))
        assert (after <= before + 1e-3).all()
        assert ((before - after) > 1e-3).sum() <= len(before) // 8 + 1
    removed = [np.abs(np.fft.rfft(sd.mask_waveform(x, rng, 0, 2)))[[500, 3000]].min() < 1 for _ in range(60)]
    assert any(removed)  # some masks hit one of the tones


def test_training_placement_jitters_around_the_evaluation_placement(folder, tmp_path):
    kw = dict(folder=str(folder), data_dir=str(tmp_path / "tfds"), test_speakers="cid", speed_perturb=0.0,
              noise=0.0, time_masks=0, freq_masks=0)
    still = sd.SpokenDigitsSource(MediaTokenizer(), SPEC, shift=0.0, **kw)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(still.example("train", 3, rng).audio[0], still.example("train", 3, None).audio[0])
    moving = sd.SpokenDigitsSource(MediaTokenizer(), SPEC, shift=0.05, **kw)
    starts = []
    for seed in range(40):  # a 4000-sample tone sits at 2000 when centred; jitter is at most 0.05 s = 400 samples
        clip = moving.example("train", 3, np.random.default_rng(seed)).audio[0]
        starts.append(int(np.nonzero(np.abs(clip) > 1e-6)[0][0]))
    assert min(starts) >= 1600 and max(starts) <= 2401 and len(set(starts)) > 10



def test_stock_tfds_source_that_cannot_open_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="cannot open TFDS's spoken_digit in .*empty.*data.source=folder"):
        sd.read_recordings(source="tfds", data_dir=str(tmp_path / "empty"))


def test_stock_tfds_spoken_digit_layout_is_read(folder, tmp_path, monkeypatch):
    """TFDS's own `spoken_digit` builder, unchanged, prepares a few of our WAVs laid out as FSDD's release
    archive (only its download is replaced: tests need no network), and source="tfds" reads them back:
    speakers and indices from the file names, the samples as written."""
    pytest.importorskip("tensorflow", reason="needs TensorFlow, which TFDS's stock spoken_digit (its Audio "
                        "feature) imports: pip install -r requirements-stock-tfds.txt (kept out of scripts/test.sh)")
    pytest.importorskip("importlib_resources", reason="needs importlib_resources, which TFDS's stock spoken_digit "
                        "builder imports: pip install -r requirements-stock-tfds.txt")
    import shutil

    import tensorflow_datasets as tfds

    from gptjax.data.wav import read_wav

    files = sorted(folder.glob("*_ann_*.wav")) + sorted(folder.glob("*_bob_0.wav"))
    archive = tmp_path / "download"
    (archive / "free-spoken-digit-dataset-1.0.9" / "recordings").mkdir(parents=True)  # the release's layout
    for p in files:
        shutil.copy(p, archive / "free-spoken-digit-dataset-1.0.9" / "recordings")

    def offline(self, url):
        assert "free-spoken-digit-dataset" in str(url)
        return str(archive)

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    data_dir = tmp_path / "stock"
    builder = tfds.builder("spoken_digit", data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    recs = sd.read_recordings(source="tfds", data_dir=str(data_dir), rate=8000)
    assert len(recs) == len(files) == 40
    r = {x.filename: x for x in recs}["7_ann_2.wav"]
    assert (r.label, r.speaker, r.index) == (7, "ann", 2)
    np.testing.assert_allclose(r.audio, read_wav(folder / "7_ann_2.wav")[0], atol=1e-4)
    split = sd.split_recordings(recs, "speaker", "bob")
    assert len(split["test"]) == 10 and {x.speaker for x in split["train"]} == {"ann"}


@pytest.mark.slow
def test_transcription_trains_end_to_end_on_tone_recordings(tone_recordings, tmp_path, monkeypatch):
    """The spoken-digits experiment, shrunk, on generated recordings (a pure tone per digit; speaker cid
    held out): the loss falls to under half its start in 40 steps, and the held-out clips are scored."""
    from gptjax.config import load_experiment
    from gptjax.tasks import media_eval
    from gptjax.train.loop import run

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    root = pathlib.Path(__file__).resolve().parents[1]
    exp = apply_overrides(load_experiment(root / "experiments" / "spoken_digits.py"), [
        f"data.folder={tone_recordings}", "data.test_speakers=cid", "model.n_layer=1", "model.n_head=2",
        "model.d_model=32", "model.dropout=0", "media.audio.width=16", "media.audio.depth=1", "media.audio.heads=2",
        "media.audio.dropout=0", "media.resampler_heads=2", "train.batch_size=16", "train.steps=40",
        "train.eval_every=40", "train.eval_batches=1", "train.checkpoint_every=0", "train.log_every=10",
        "schedule.kind=constant", "schedule.warmup_steps=5", "schedule.peak_lr=3e-3", "mesh.data=1"])
    result = run(exp, tmp_path / "run", progress=False)
    losses = [result.losses[s] for s in sorted(result.losses)]
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])  # (4.55 -> 1.87 when written)
    assert result.eval_loss < losses[0]
    scores, _ = media_eval.run(tmp_path / "run", "transcribe", limit=30, batch_size=30)
    assert scores["examples"] == 30 and {"wer", "cer"} <= scores.keys()
    assert sum(n for row in scores["confusion"].values() for n in row.values()) == 30
