"""The multimodal model: splicing, masks, loss masking, freezing, cached decoding, a short training run."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.data.build import build_data
from gptjax.parallel import mesh as sharding, rules
from gptjax.config import (AudioEncoderSpec, DigitsData, Experiment, ImageEncoderSpec, MediaSpec, Mesh, ModelSpec,
                           Optimizer, Schedule, Train)
from gptjax.data.examples import Example, Layout, collate, prompt_batch
from gptjax.errors import DataError
from gptjax.data.media_tokenizer import MediaTokenizer
from gptjax.model.decode import generate_media as generate
from gptjax.model.multimodal import MultimodalLM, splice, splice_row
from helpers.reference_decode import greedy_without_cache
from gptjax.special_tokens import AUDIO_ID, BOS_ID, IMAGE_ID
from gptjax.train.optim import make_optimizer, param_path
from gptjax.train.step import compile_steps, loss_fn

TOK = MediaTokenizer(8)
SPEC = ModelSpec(n_layer=1, n_head=2, d_model=32, max_seq_len=40, vocab_size=TOK.vocab_size)
MEDIA = MediaSpec(image=ImageEncoderSpec(patch_size=4, width=16, depth=1, heads=2),  # 4 tokens per image
                  audio=AudioEncoderSpec(width=16, depth=1, heads=2), n_audio_tokens=3, max_images=2)
LAYOUT = Layout(seq_len=40, image_tokens=4, audio_tokens=3, max_images=2, max_audio=1)


def example(rng, prompt="<image>q:", answer="seven", n_images=1, n_audio=0):
    return Example(np.asarray([BOS_ID] + TOK.encode(prompt) + TOK.encode_text(answer) + [2], np.int32),
                   1 + len(TOK.encode(prompt)), [rng.random((8, 8)).astype(np.float32) for _ in range(n_images)],
                   [rng.normal(size=8000).astype(np.float32) * 0.1 for _ in range(n_audio)], answer)


@pytest.fixture(scope="module")
def model_and_params():
    rng = np.random.default_rng(0)
    batch = collate([example(rng, "<image><audio><image>q:", n_images=2, n_audio=1)], LAYOUT)
    model = MultimodalLM(SPEC, MEDIA)
    params = model.init(jax.random.key(0), batch, method="from_batch")["params"]
    return model, jax.tree.map(lambda x: x, __import__("flax").linen.meta.unbox(params))


def test_splice_puts_media_vectors_at_placeholders_in_order():
    tokens = jnp.asarray([[5, IMAGE_ID, 6, IMAGE_ID, IMAGE_ID], [IMAGE_ID, IMAGE_ID, 7, 7, IMAGE_ID]])
    embeds = jnp.zeros((2, 5, 3)) - 1.0
    media = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)  # 4 slots, 3 used per row
    out = np.asarray(splice(embeds, tokens, media, IMAGE_ID))
    np.testing.assert_array_equal(out[0, [1, 3, 4]], media[0, :3])
    np.testing.assert_array_equal(out[1, [0, 1, 4]], media[1, :3])
    np.testing.assert_array_equal(out[0, [0, 2]], -1.0)  # text untouched
    np.testing.assert_array_equal(splice_row(embeds[0], tokens[0], media[0], AUDIO_ID), embeds[0])


def test_placeholder_count_mismatch_is_refused():
    rng = np.random.default_rng(1)
    batch = collate([example(rng, "<image>q:"), example(rng, "<image><image>q:", n_images=2)], LAYOUT)
    ex = example(rng, "<image><image>q:", n_images=2)
    ex.images.pop()
    with pytest.raises(DataError, match="2 <image> placeholder.*but 1 image"):
        collate([ex], LAYOUT)


def test_logits_depend_on_each_media_item_and_not_on_empty_slots(model_and_params):
    model, params = model_and_params
    rng = np.random.default_rng(2)
    batch = collate([example(rng, "<image><audio>q:", n_images=1, n_audio=1)], LAYOUT)
    f = jax.jit(lambda b: model.apply({"params": params}, b, method="from_batch"))
    base = np.asarray(f(batch))
    last = int(np.nonzero(np.asarray(batch["segment_ids"][0]))[0][-1])  # the prompt's last token, not padding
    for key in ("images", "audio"):
        changed = dict(batch, **{key: batch[key].copy()})
        changed[key][0, 0] += rng.normal(0.0, 0.5, changed[key][0, 0].shape).astype(changed[key].dtype)
        assert np.abs(np.asarray(f(changed)) - base)[0, last].max() > 1e-4, key
    empty_slot = dict(batch, images=batch["images"].copy())
    empty_slot["images"][0, 1] = 1.0  # slot 2 is unused: image_count is 1
    np.testing.assert_allclose(np.asarray(f(empty_slot)), base, atol=1e-6)


@pytest.mark.parametrize("mask", ["prefix", "causal"])
def test_prefix_mask_is_bidirectional_over_media_and_prompt_only(model_and_params, mask):
    _, params = model_and_params
    model = MultimodalLM(SPEC, dataclasses.replace(MEDIA, mask=mask))
    rng = np.random.default_rng(3)
    batch = collate([example(rng, "<image>ab:", answer="seven")], LAYOUT)
    p = int(batch["prefix_len"][0])  # bos + 4 image + "ab:"
    f = jax.jit(lambda b: model.apply({"params": params}, b, method="from_batch"))
    base = np.asarray(f(batch))
    last_prompt = dict(batch, inputs=batch["inputs"].copy())
    last_prompt["inputs"][0, p - 1] = TOK.encode_text("z")[0]
    diff = np.abs(np.asarray(f(last_prompt)) - base)[0].max(axis=-1)
    if mask == "prefix":
        assert diff[:p - 1].max() > 1e-5  # earlier prompt and image tokens see the last prompt token
    else:
        np.testing.assert_allclose(diff[:p - 1], 0, atol=1e-6)
    answer = dict(batch, inputs=batch["inputs"].copy())
    answer["inputs"][0, p + 1] = TOK.encode_text("z")[0]
    diff = np.abs(np.asarray(f(answer)) - base)[0].max(axis=-1)
    np.testing.assert_allclose(diff[:p + 1], 0, atol=1e-6)  # answers stay causal in both modes
    assert diff[p + 1:].max() > 1e-5


def test_loss_counts_only_the_answer(model_and_params):
    model, params = model_and_params
    rng = np.random.default_rng(4)
    batch = collate([example(rng, "<image>q:", answer="seven")], LAYOUT)
    assert batch["loss_mask"].sum() == len("seven") + 1  # the answer and <eos>
    loss, count = loss_fn(params, batch, model, jax.random.key(0))
    outside = dict(batch, targets=batch["targets"].copy())
    outside["targets"][batch["loss_mask"] == 0] = 7  # targets of the prompt and padding do not count
    loss2, _ = loss_fn(params, outside, model, jax.random.key(0))
    assert float(count) == 6 and float(loss) == pytest.approx(float(loss2), abs=1e-6)
    inside = dict(batch, targets=batch["targets"].copy())
    inside["targets"][0, int(batch["prefix_len"][0]) - 1] = 7
    assert abs(float(loss_fn(params, inside, model, jax.random.key(0))[0]) - float(loss)) > 1e-3


@pytest.mark.slow
def test_cached_greedy_decoding_matches_recomputation(model_and_params):
    _, params = model_and_params
    rng = np.random.default_rng(5)
    exs = [example(rng, "<image>q:"), example(rng, "<audio><image>longer prompt:", n_audio=1)]
    batch = prompt_batch(exs, LAYOUT)
    cached = np.asarray(generate(params, SPEC, MEDIA, batch, 6))
    reference = greedy_without_cache(params, SPEC, MEDIA, batch, 6)
    np.testing.assert_array_equal(cached, reference)
    allowed = np.zeros((6, SPEC.vocab_size), bool)
    allowed[:, TOK.pixel_offset:TOK.pixel_offset + 8] = True
    pixels = np.asarray(generate(params, SPEC, MEDIA, batch, 6, jax.random.key(1), 1.0, allowed_NxV=allowed))
    assert (TOK.ids_to_pixels(pixels) >= 0).all()


def tiny_caption_experiment(tmp_path, **optimizer):
    return Experiment(
        model=ModelSpec(n_layer=1, n_head=2, d_model=32, max_seq_len=40),
        schedule=Schedule("constant", peak_lr=3e-3, warmup_steps=5),
        optimizer=Optimizer(**optimizer),
        data=DigitsData(task="caption", data_dir=str(tmp_path / "tfds")),
        media=MediaSpec(image=ImageEncoderSpec(patch_size=4, width=16, depth=1, heads=2)),
        train=Train(steps=40, batch_size=16, eval_every=40, eval_batches=2, checkpoint_every=0, log_every=10,
                    sample_tokens=0),
        mesh=Mesh(1, 1, 1)).validate()


@pytest.mark.slow
def test_frozen_parameters_stay_bit_identical(tmp_path):
    exp = tiny_caption_experiment(tmp_path, freeze="^llm/|^image_encoder/")
    data = build_data(exp)
    spec = dataclasses.replace(exp.model, vocab_size=data.vocab_size)
    tx, schedule = make_optimizer(exp.optimizer, exp.schedule, 10)
    mesh = sharding.make_mesh(exp.mesh, jax.devices()[:1])
    batches = data.train_batches(16)
    first = next(batches)
    compiled = compile_steps(exp, spec, tx, schedule, mesh, first)
    state = compiled.init(jax.random.key(0))
    before = jax.device_get(state.params)
    for batch in [first, next(batches), next(batches)]:
        state, _ = compiled.train_step(state, {k: jnp.asarray(v) for k, v in batch.items()})
    after = jax.device_get(state.params)
    flat_before = {param_path(p): v for p, v in jax.tree_util.tree_leaves_with_path(before)}
    changed = {param_path(p): not np.array_equal(v, flat_before[param_path(p)])
               for p, v in jax.tree_util.tree_leaves_with_path(after)}
    assert not any(c for k, c in changed.items() if k.startswith(("llm/", "image_encoder/")))
    assert all(c for k, c in changed.items() if k.startswith("image_projector/") and "kernel" in k)


@pytest.mark.slow
def test_short_caption_training_lowers_the_loss_and_evaluates(tmp_path):
    from gptjax.tasks import media_eval as evaluate
    from gptjax.train import loop as train

    exp = tiny_caption_experiment(tmp_path)
    result = train.run(exp, tmp_path / "run", progress=False)
    losses = [result.losses[s] for s in sorted(result.losses)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    out, write = evaluate.run(tmp_path / "run", "caption", limit=20, batch_size=20)
    assert 0.0 <= out["accuracy"] <= 1.0 and out["examples"] == 20
    assert not (tmp_path / "run" / "eval_caption.json").exists()  # scores first, files when asked
    write()
    saved = json.loads((tmp_path / "run" / "eval_caption.json").read_text())
    assert saved["accuracy"] == out["accuracy"]
    assert (tmp_path / "run" / "eval_caption.md").read_text().startswith("# caption")
    assert (tmp_path / "run" / "eval_caption.png").stat().st_size > 1000
    counts = out["confusion"]
    assert sum(n for row in counts.values() for n in row.values()) == 20
    hits = sum(row.get(ref, 0) for ref, row in counts.items())
    assert hits == round(out["accuracy"] * 20)
    assert "Confusion (rows: reference" in (tmp_path / "run" / "eval_caption.md").read_text()


def test_confusion_counts_predictions_per_reference():
    from gptjax.tasks.metrics import confusion

    refs = ["two", "two", "six", "six", "six", "zero"]
    preds = ["two", "six", "six", "sixty", "two", "zero"]
    assert confusion(refs, preds) == {"two": {"two": 1, "six": 1}, "six": {"six": 1, "two": 1, "other": 1},
                                      "zero": {"zero": 1}}
