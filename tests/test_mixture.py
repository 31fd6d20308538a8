"""Mixtures of tasks: each source appears in the batches as often as its weight says."""
import numpy as np
import pytest

from gptjax.config import (AudioEncoderSpec, Experiment, ImageEncoderSpec, MediaSpec, MixtureData, ModelSpec,
                           SpokenDigitsData, Train)
from gptjax.data.build import build_data


@pytest.mark.parametrize("weights", ["3,1,0.5", "1,2,1"])
def test_sources_appear_in_batches_in_proportion_to_their_weights(weights, tone_recordings, text_corpus, tmp_path,
                                                                  monkeypatch):
    """caption rows hold an image, transcription rows a clip, text rows neither; over 40 batches of 20 each
    source's share is its weight over the sum, in training and in evaluation."""
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    exp = Experiment(
        model=ModelSpec(n_layer=1, n_head=2, d_model=32, max_seq_len=40),
        media=MediaSpec(image=ImageEncoderSpec(patch_size=4, width=16, depth=1, heads=2),
                        audio=AudioEncoderSpec(width=16, depth=1, heads=2), n_audio_tokens=4),
        data=MixtureData(sources="caption,transcribe,text", weights=weights,
                         spoken=SpokenDigitsData(folder=str(tone_recordings), test_speakers="cid"),
                         text_dataset="generated", text_files=str(text_corpus), text_len=24),
        train=Train(batch_size=20)).validate()
    data = build_data(exp)
    text = text_corpus.read_text()
    want = np.array([float(w) for w in weights.split(",")])
    want /= want.sum()
    train = data.train_batches(20)
    for batches in ([next(train) for _ in range(40)], list(data.eval_batches(20, 10))):
        counts = np.zeros(3)
        for batch in batches:
            image, audio = batch["image_count"] > 0, batch["audio_count"] > 0
            assert not (image & audio).any()
            counts += [image.sum(), audio.sum(), (~image & ~audio).sum()]
            for row in np.nonzero(~image & ~audio)[0][:2]:  # a text row is a window of the corpus
                window = data.tokenizer.decode(batch["inputs"][row], skip_special=True)
                assert len(window) >= 20 and window in text
        np.testing.assert_allclose(counts / counts.sum(), want, atol=0.03)
