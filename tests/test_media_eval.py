"""Scoring multimodal runs: error rates, the classifier that judges generated digits, the zero-media
ablation, and scripts/evaluate.py on a small trained run."""
import json
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import DigitsData, Experiment, ImageEncoderSpec, MediaSpec, Mesh, ModelSpec, Optimizer, Schedule, Train
from gptjax.data.build import build_data
from gptjax.special_tokens import EOS_ID
from gptjax.tasks import media_eval
from gptjax.tasks.metrics import accuracy, error_rates

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "media_eval_cache"))


def test_error_rates_count_edits_over_all_reference_words_and_characters():
    refs = ["a handwritten seven", "two", "nine"]
    preds = [" a handwriten seven", "too", "nine nine"]  # (answers are stripped first)
    # words: 1 substitution + 1 substitution + 1 insertion over 3 + 1 + 1 reference words
    # characters: 1 deletion + 1 substitution + 5 insertions (" nine") over 19 + 3 + 4
    assert error_rates(preds, refs) == pytest.approx({"wer": 3 / 5, "cer": 7 / 26})
    assert error_rates(refs, refs) == {"wer": 0.0, "cer": 0.0}
    assert accuracy([" seven ", "two", "nine nine"], ["seven", "too", "nine"], [7, 2, 9]) == {
        "accuracy": pytest.approx(1 / 3), "per_digit_accuracy": {"2": 0.0, "7": 1.0, "9": 0.0}}


# ---------------------------------------------------------------- text-to-image, judged by a classifier

def real_digits_generator(tokenizer, images, labels, shift: int):
    """Stands in for the model: for a prompt "draw a <digit>:" it 'draws' a real held-out image of
    digit + shift (mod 10), one after another, as pixel tokens followed by <eos>."""
    used = {d: 0 for d in range(10)}

    def generate(params, spec, media, batch, n_new, rng=None, temperature=0.0, top_k=0, allowed_NxV=None):
        assert n_new == 65 and allowed_NxV.shape[0] == 65
        assert allowed_NxV[:64].sum(axis=1).tolist() == [8] * 64 and allowed_NxV[64].tolist().index(True) == EOS_ID
        rows = []
        for row in np.asarray(batch["inputs"]):
            asked = DIGITS.index(re.search(r"draw an? (\w+):", tokenizer.decode(row, skip_special=True))[1])
            drawn = (asked + shift) % 10
            image = images[labels == drawn][used[drawn]]
            used[drawn] += 1
            levels = (image.astype(np.int64) * 8 // 17).reshape(-1)  # 17 grey values -> 8 equal bins
            rows.append(np.concatenate([tokenizer.pixel_offset + levels, [EOS_ID]]))
        return jnp.asarray(np.stack(rows), jnp.int32)
    return generate


@pytest.mark.parametrize("shift", [0, 1], ids=["asked_digit", "next_digit"])
def test_generation_accuracy_is_the_classifiers_verdict_on_the_drawn_digit(monkeypatch, shift):
    """Real held-out digits drawn for each prompt are recognised (the classifier is good); real digits of
    the next class are scored wrong, and the confusion table shows which class they were."""
    from gptjax.data.digits import prepare_digits, read_split

    exp = Experiment(model=ModelSpec(n_layer=1, n_head=2, d_model=32, max_seq_len=80), data=DigitsData(task="generate"),
                     media=MediaSpec(pixel_levels=8, mask="causal")).validate()
    data = build_data(exp)
    images, labels = read_split(prepare_digits(), "test")
    monkeypatch.setattr(media_eval, "generate_media", real_digits_generator(data.tokenizer, images, labels, shift))
    result, drawn, asked, predicted = media_eval.evaluate_generation(exp, None, data, num_samples=10)
    assert result["samples"] == 100 and asked.tolist() == np.repeat(np.arange(10), 10).tolist()
    assert result["classifier_test_accuracy"] > 0.9
    np.testing.assert_allclose(drawn.reshape(100, 64) * 8 - 0.5,  # the images scored are the ones drawn
                               np.round(drawn.reshape(100, 64) * 8 - 0.5), atol=1e-5)
    if shift == 0:
        assert result["accuracy"] > 0.9 and min(result["per_digit_accuracy"].values()) >= 0.6
    else:
        assert result["accuracy"] < 0.1
        # most rows of the confusion table name the digit after the one asked for
        modes = [max(row, key=row.get) for row in (result["confusion"][str(d)] for d in range(10))]
        assert sum(mode == str((d + 1) % 10) for d, mode in enumerate(modes)) >= 8
    assert result["accuracy"] == pytest.approx(np.mean(predicted == asked))


# ---------------------------------------------------------------- the zero-media ablation

def tiny_caption(steps=40, lr=3e-3):
    return Experiment(
        model=ModelSpec(n_layer=1, n_head=2, d_model=32, max_seq_len=40),
        schedule=Schedule("constant", peak_lr=lr, warmup_steps=5), optimizer=Optimizer(),
        data=DigitsData(task="caption"),
        media=MediaSpec(image=ImageEncoderSpec(patch_size=4, width=16, depth=1, heads=2)),
        train=Train(steps=steps, batch_size=16, eval_every=steps, eval_batches=2, checkpoint_every=0, log_every=10,
                    sample_tokens=0),
        mesh=Mesh(1, 1, 1)).validate()


@pytest.mark.slow
def test_zero_media_feeds_zeros_in_place_of_every_image_and_nothing_else_changes(monkeypatch):
    """The ablation's model sees the very prompts of the real evaluation with every image zeroed; prompts
    that differ only in their image then get one answer, and accuracy is the share of test images whose
    caption happens to be it. (Whether a trained model's answers come from its images:
    test_evaluate_script_scores_a_trained_caption_run_and_its_ablation.)"""
    import dataclasses

    import flax.linen as nn

    from gptjax.model.multimodal import MultimodalLM

    exp = tiny_caption()
    data = build_data(exp)
    exp = dataclasses.replace(exp, model=dataclasses.replace(exp.model, vocab_size=data.vocab_size))
    batch = next(iter(data.eval_batches(8, 1)))
    params = jax.jit(lambda key: nn.meta.unbox(MultimodalLM(exp.model, exp.media).init(
        key, batch, method="from_batch")["params"]))(jax.random.key(0))
    fed, real_generate = [], media_eval.generate_media

    def recording(params, spec, media, prompt, n_new, *args, **kwargs):
        fed.append({k: np.asarray(v) for k, v in prompt.items()})
        return real_generate(params, spec, media, prompt, n_new, *args, **kwargs)

    monkeypatch.setattr(media_eval, "generate_media", recording)
    _, examples, _ = media_eval.evaluate_answers(exp, params, data, "caption", limit=24, batch_size=24)
    blind, _, zeroed = media_eval.evaluate_answers(exp, params, data, "caption", zero_media=True, limit=24,
                                                   batch_size=24)
    real, ablated = fed
    np.testing.assert_array_equal(real["images"][:, 0], np.stack([ex.images[0] for ex in examples]))
    assert (real["images"].reshape(24, -1).max(axis=1) > 0).all() and (ablated["images"] == 0).all()
    for key in real.keys() - {"images"}:  # prompts, positions, masks and image counts as they were
        np.testing.assert_array_equal(ablated[key], real[key], err_msg=key)
    assert len(set(zeroed)) == 1 and blind["zero_media"] is True
    refs = [ex.answer for ex in examples]
    assert len(set(refs)) > 5 and blind["accuracy"] == pytest.approx(refs.count(zeroed[0].strip()) / 24)


# ---------------------------------------------------------------- scripts/evaluate.py

@pytest.mark.slow
def test_evaluate_script_scores_a_trained_caption_run_and_its_ablation(tmp_path):
    """A small captioner trained for 300 steps reads many digits; with the images zeroed it is at chance;
    its checkpoint of step 100 is scored apart."""
    import dataclasses
    import os

    from gptjax.train.loop import run

    exp = tiny_caption(steps=300)
    run(dataclasses.replace(exp, train=dataclasses.replace(exp.train, checkpoint_every=100)), tmp_path / "run",
        progress=False)

    def evaluate(*flags):
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--workdir", str(tmp_path / "run"),
                               "--task", "caption", "--limit", "100", "--batch_size", "50", *flags],
                              capture_output=True, text=True, timeout=600, env=dict(os.environ))
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    scored, ablated = evaluate(), evaluate("--zero_media")
    assert scored["examples"] == ablated["examples"] == 100
    (answer,) = {p for row in ablated["confusion"].values() for p in row}  # one answer for every image
    per_reference = {ref: sum(row.values()) for ref, row in ablated["confusion"].items()}
    assert ablated["accuracy"] == per_reference.get(answer, 0) / 100 <= 0.2  # about chance
    assert scored["accuracy"] >= ablated["accuracy"] + 0.25  # (0.56 against 0.12 when written)
    for result in (scored, ablated):
        counts = result["confusion"]
        assert sum(n for row in counts.values() for n in row.values()) == 100
        assert sum(row.get(ref, 0) for ref, row in counts.items()) == round(result["accuracy"] * 100)
    saved = json.loads((tmp_path / "run" / "eval_caption.json").read_text())
    assert saved["accuracy"] == scored["accuracy"]
    assert (tmp_path / "run" / "eval_caption_zero_media.md").read_text().startswith("# caption (media zeroed)")
    assert (tmp_path / "run" / "eval_caption.png").stat().st_size > 1000
    early = evaluate("--step", "100")
    assert early["step"] == 100 and early["accuracy"] < scored["accuracy"]  # 100 steps of 300
    assert json.loads((tmp_path / "run" / "eval_caption_step100.json").read_text())["accuracy"] == early["accuracy"]
    assert json.loads((tmp_path / "run" / "eval_caption.json").read_text())["accuracy"] == scored["accuracy"]
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--workdir", str(tmp_path / "run"),
                          "--task", "transcribe"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "was not trained on 'transcribe'" in bad.stderr
