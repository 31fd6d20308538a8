"""Digits data: the TFDS split, the three tasks, the media tokenizer, batches and their purity."""
import dataclasses

import numpy as np
import pytest

from gptjax.config import DigitsData, Experiment, ImageEncoderSpec, MediaSpec, ModelSpec, Train, apply_overrides
from gptjax.data import digits
from gptjax.data.build import build_data
from gptjax.data.examples import Example, Layout, collate, expand_placeholders, prompt_batch
from gptjax.data.media_tokenizer import MediaTokenizer
from gptjax.data.tokenizers import load_tokenizer
from gptjax.errors import ConfigError, DataError
from gptjax.special_tokens import AUDIO_ID, BOS_ID, EOS_ID, IMAGE_ID, PAD_ID


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def experiment(tfds_dir, task="caption", **media):
    return Experiment(model=ModelSpec(n_layer=1, n_head=2, d_model=32, max_seq_len=48),
                      data=DigitsData(task=task, data_dir=tfds_dir),
                      media=MediaSpec(image=ImageEncoderSpec(patch_size=4, width=16, depth=1, heads=2), **media),
                      train=Train(batch_size=8, seed=3)).validate()


def test_split_is_stratified_disjoint_and_deterministic():
    _, labels = digits.load_images()
    train, test = digits.split_indices(labels, 0.2, seed=0)
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == 1797
    assert abs(len(test) - 0.2 * 1797) <= 1
    # every digit is held out in proportion to its frequency
    for d in range(10):
        assert abs((labels[test] == d).sum() / (labels == d).sum() - 0.2) < 0.02
    again, _ = digits.split_indices(labels, 0.2, seed=0)
    other, _ = digits.split_indices(labels, 0.2, seed=1)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)


def test_tfds_builder_writes_the_split_as_array_record(tfds_dir):
    builder = digits.prepare_digits(0.2, 0, tfds_dir)
    assert builder.info.splits["test"].num_examples == 360
    assert any(p.name.endswith(".array_record-00000-of-00001") or "array_record" in p.name
               for p in builder.data_path.iterdir())
    images, labels = digits.load_images()
    _, test = digits.split_indices(labels, 0.2, 0)
    got_images, got_labels = digits.read_split(builder, "test")
    np.testing.assert_array_equal(got_images, images[test])
    np.testing.assert_array_equal(got_labels, labels[test])


def test_building_leaves_no_temporary_folder_behind(tmp_path, monkeypatch):
    """TFDS's lookup of a dataset's info on its GCS bucket made an empty /tmp folder per builder."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    builder = digits.prepare_digits(0.2, 0, str(tmp_path / "tfds"))
    assert builder.info.splits["train"].num_examples == 1437
    assert list(scratch.iterdir()) == []


def test_media_tokenizer_round_trip_and_specials(tmp_path):
    tok = MediaTokenizer(pixel_levels=4)
    ids = tok.encode("<bos><image>is it even?<p3>")
    assert ids[:2] == [BOS_ID, IMAGE_ID] and ids[-1] == tok.pixel_id(3)
    assert tok.decode(ids) == "<bos><image>is it even?<p3>"
    assert tok.encode_text("<image>") != [IMAGE_ID]  # literal text stays text
    assert tok.answer_text(tok.encode_text("seven") + [EOS_ID] + tok.encode_text("junk")) == "seven"
    tok.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded == tok and loaded.vocab_size == tok.vocab_size == 5 + 4 + 96
    with pytest.raises(ValueError, match="alphabet"):
        tok.encode_text("café")


def test_caption_vqa_and_generation_examples(tfds_dir):
    tok = MediaTokenizer(8)
    cap = digits.DigitsSource("caption", tok, data_dir=tfds_dir)
    ex = cap.example("test", 0, None)
    assert ex.answer == digits.caption_for(ex.label) and len(ex.images) == 1
    assert tok.decode(ex.tokens[:ex.prompt_len]) == "<bos><image>caption:"
    assert tok.decode(ex.tokens[ex.prompt_len:]) == ex.answer + "<eos>"
    assert ex.images[0].shape == (8, 8) and 0 <= ex.images[0].min() and ex.images[0].max() <= 1

    vqa = digits.DigitsSource("vqa", tok, data_dir=tfds_dir)
    assert vqa.num_examples("test") == 5 * 360
    answers = {}
    for i in range(5 * 40):
        e = vqa.example("test", i, None)
        q = tok.decode(e.tokens[:e.prompt_len])
        answers.setdefault(q.split("<image>")[1].split(" a ")[0], []).append((e.label, e.answer))
    assert all(a == ("yes" if d % 2 == 0 else "no") for d, a in answers["is it even?"])
    assert all(a == digits.NAMES[d + 1] for d, a in answers["what is it plus one?"])
    yes_no = [a for _, a in answers["is it"]]
    assert 0.3 < yes_no.count("yes") / len(yes_no) < 0.7  # "is it a seven?" is balanced

    gen = digits.DigitsSource("generate", tok, data_dir=tfds_dir)
    g = gen.example("train", 3, np.random.default_rng(0))
    answer_ids = g.tokens[g.prompt_len:-1]
    assert len(answer_ids) == 64 and not g.images
    levels = tok.ids_to_pixels(answer_ids).reshape(8, 8)
    np.testing.assert_array_equal(levels, digits.quantize(gen.splits["train"][0][3], 8))


def test_quantisation_uses_every_level_and_dequantises_into_unit_range():
    q = digits.quantize(np.arange(17), 8)
    assert q.min() == 0 and q.max() == 7 and set(q) == set(range(8))
    assert (np.diff(q) >= 0).all()
    d = digits.dequantize(q, 8)
    assert 0 < d.min() and d.max() < 1


def test_augmentation_shifts_training_images_only(tfds_dir):
    src = digits.DigitsSource("caption", MediaTokenizer(8), data_dir=tfds_dir, augment=True)
    plain = src.example("train", 5, None).images[0]
    shifted = [src.example("train", 5, np.random.default_rng(s)).images[0] for s in range(20)]
    assert any(not np.array_equal(plain, s) for s in shifted)
    assert all(np.isclose(s.sum(), plain.sum()) or s.sum() < plain.sum() for s in shifted)  # no new ink
    np.testing.assert_array_equal(digits.shift_image(np.eye(3), 1, 0), [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


def test_collate_expands_placeholders_masks_the_loss_and_pads():
    layout = Layout(seq_len=16, image_tokens=3, audio_tokens=2, image_size=2, audio_samples=4)
    tok = MediaTokenizer(4)
    ex = Example(np.asarray([BOS_ID, IMAGE_ID, AUDIO_ID] + tok.encode_text("q") + tok.encode_text("ab") + [EOS_ID]),
                 prompt_len=4, images=[np.ones((2, 2))], audio=[np.ones(4)])
    b = collate([ex, Example(np.asarray([BOS_ID] + tok.encode_text("xy")), 1)], layout)
    row = b["inputs"][0]
    assert list(row[:7]) == [BOS_ID, IMAGE_ID, IMAGE_ID, IMAGE_ID, AUDIO_ID, AUDIO_ID, tok.encode_text("q")[0]]
    assert b["prefix_len"][0] == 7  # bos + 3 image + 2 audio + "q"
    # loss on "a", "b", <eos>: the targets at inputs 6, 7, 8
    np.testing.assert_array_equal(np.nonzero(b["loss_mask"][0])[0], [6, 7, 8])
    assert tok.decode(b["targets"][0][b["loss_mask"][0] > 0]) == "ab<eos>"
    assert b["segment_ids"][0].sum() == 9 and (b["inputs"][0][9:] == PAD_ID).all()
    np.testing.assert_array_equal(b["positions"][0][:9], np.arange(9))
    assert b["image_count"].tolist() == [1, 0] and b["audio_count"].tolist() == [1, 0]
    assert b["images"][1].sum() == 0 and b["audio"][1].sum() == 0  # absent modality: zeros
    np.testing.assert_array_equal(np.nonzero(b["loss_mask"][1])[0], [0, 1])  # text: every character
    with pytest.raises(DataError, match="2 <image> placeholder"):
        expand_placeholders([BOS_ID, IMAGE_ID, IMAGE_ID], 3, 1, 0, layout)
    with pytest.raises(DataError, match="does not fit"):
        collate([Example(np.zeros(40, np.int32) + BOS_ID, 1)], layout)


def test_prompt_batch_holds_only_prompts_with_lengths():
    layout = Layout(seq_len=16, image_tokens=3, image_size=2)
    tok = MediaTokenizer(4)
    exs = [Example(np.asarray([BOS_ID, IMAGE_ID] + tok.encode_text(q) + tok.encode_text("ans") + [EOS_ID]),
                   prompt_len=2 + len(q), images=[np.ones((2, 2))]) for q in ("a", "abc")]
    b = prompt_batch(exs, layout)
    assert b["inputs"].shape == (2, 7) and b["prompt_len"].tolist() == [5, 7]
    assert tok.decode(b["inputs"][1]) == "<bos><image><image><image>abc"
    assert b["segment_ids"][0].tolist() == [1] * 5 + [0, 0] and b["prefix_len"].tolist() == [5, 7]


def test_train_batches_are_a_pure_function_of_the_step(tfds_dir):
    exp = experiment(tfds_dir)
    data = build_data(exp)
    it = data.train_batches(8, 0)
    first = [next(it) for _ in range(4)]
    resumed = next(data.train_batches(8, 3))
    for key in first[3]:
        np.testing.assert_array_equal(first[3][key], resumed[key])
    # two processes' local batches stack into the global batch
    halves = [next(data.train_batches(8, 2, p, 2)) for p in range(2)]
    for key in first[2]:
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), first[2][key])
    assert not np.array_equal(first[0]["images"], first[1]["images"])
    ev1, ev2 = next(data.eval_batches(8, 1)), next(data.eval_batches(8, 1))
    np.testing.assert_array_equal(ev1["images"], ev2["images"])


def test_config_overrides_and_validation(tfds_dir):
    exp = experiment(tfds_dir)
    exp2 = apply_overrides(exp, ["media.image.depth=3", "data.task=vqa", "media.image_projector=linear"]).validate()
    assert exp2.media.image.depth == 3 and exp2.data.task == "vqa" and exp2.media.image_tokens == 4
    with pytest.raises(ConfigError, match="data.task"):
        apply_overrides(exp, ["data.task=draw"]).validate()
    with pytest.raises(ConfigError, match="patch_size"):
        apply_overrides(exp, ["media.image.patch_size=3"]).validate()
    with pytest.raises(ConfigError, match="n_image_tokens"):
        apply_overrides(exp, ["media.image_projector=resampler"]).validate()
    with pytest.raises(ConfigError, match="no 'audio' section"):
        apply_overrides(exp, ["media.audio.width=3"])
    no_image = dataclasses.replace(exp, media=MediaSpec())
    with pytest.raises(ConfigError, match="media.image"):
        no_image.validate()
    dataclasses.replace(no_image, data=DigitsData(task="generate", data_dir=tfds_dir)).validate()
