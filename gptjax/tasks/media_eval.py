"""Evaluate a trained multimodal run on one task: caption | vqa | transcribe | generate.

Answers are decoded greedily with the KV cache (gptjax/model/decode.py) from
prompts holding the test media, and compared with the reference text:
`accuracy` is exact match; transcription adds word and character error rates.
Text-to-image generation samples images from "draw a seven:" prompts and
scores them with a separately trained classifier (logistic regression on the
training split's 8x8 images at the same grey levels), whose own test accuracy
is reported too. `zero_media=True` replaces every image / clip by zeros: the
ablation that shows the answers come from the media.

`run` returns the scores; `write_results` writes <workdir>/eval_<task>[_zero_media]
.json, .md (tables) and .png (pictures).
"""
from __future__ import annotations

import pathlib
import time

import jax
import numpy as np

from gptjax import plots
from gptjax.data.digits import dequantize, generation_prompt, prepare_digits, quantize, read_split
from gptjax.data.examples import make_example, prompt_batch
from gptjax.errors import ConfigError
from gptjax.model.audio_frontend import audio_features
from gptjax.model.decode import generate_media
from gptjax.special_tokens import EOS_ID
from gptjax.tasks.metrics import accuracy, confusion, error_rates
from gptjax.tasks.result_files import scores_stem, write_scores
from gptjax.train.restore import load_run, read_run_config

TASKS = ("caption", "vqa", "transcribe", "generate")


def load_media_run(workdir, step=None):
    """(experiment, params, data) of the newest readable checkpoint of a multimodal run (or of checkpoint
    `step`), on one device."""
    if read_run_config(workdir).media is None:
        raise ConfigError(f"{workdir} is a text-only run; evaluate.py scores multimodal runs "
                          "(use scripts/sample.py for text)")
    return load_run(workdir, with_data=True, step=step)


# ------------------------------------------------------------------ answering

def answer(exp, params, data, examples, *, zero_media=False, batch_size=64, n_new=None):
    """Greedy answers (text) to the prompts of `examples`."""
    tok = data.tokenizer
    if n_new is None:
        n_new = max(len(tok.encode_text(ex.answer)) for ex in examples) + 2
    outputs = []
    for lo in range(0, len(examples), batch_size):
        chunk = examples[lo:lo + batch_size]
        padded = chunk + [chunk[-1]] * (batch_size - len(chunk))  # one shape: one compilation
        batch = prompt_batch(padded, data.layout)
        if zero_media:
            for key in ("images", "audio"):
                if key in batch:
                    batch[key] = np.zeros_like(batch[key])
        n = min(n_new, exp.model.max_seq_len - batch["inputs"].shape[1])
        ids = np.asarray(generate_media(params, exp.model, exp.media, batch, n))
        outputs += [tok.answer_text(row) for row in ids[:len(chunk)]]
    return outputs


def evaluate_answers(exp, params, data, task, *, zero_media=False, batch_size=64, limit=None):
    """(scores, examples, predictions) of `task` on the test split."""
    examples = data.task_examples(task, "test", limit)
    t0 = time.time()
    preds = answer(exp, params, data, examples, zero_media=zero_media, batch_size=batch_size)
    refs = [ex.answer for ex in examples]
    result = {"task": task, "zero_media": zero_media, "examples": len(examples),
              **accuracy(preds, refs, [ex.label for ex in examples]),
              "confusion": confusion(refs, [p.strip() for p in preds]),
              "decode_seconds": round(time.time() - t0, 2)}
    if task == "transcribe":
        result.update(error_rates(preds, refs))
    result["samples"] = [{"reference": r, "prediction": p} for p, r in list(zip(preds, refs))[:8]]
    return result, examples, preds


def digit_classifier(levels: int, split_seed: int = 0, test_fraction: float = 0.2, data_dir: str = ""):
    """Logistic regression on the training images at `levels` grey levels; (model, its test accuracy)."""
    from sklearn.linear_model import LogisticRegression

    builder = prepare_digits(test_fraction, split_seed, data_dir)
    (xtr, ytr), (xte, yte) = read_split(builder, "train"), read_split(builder, "test")
    feats = lambda x: dequantize(quantize(x, levels), levels).reshape(len(x), -1)  # noqa: E731
    clf = LogisticRegression(max_iter=5000, C=1.0).fit(feats(xtr), ytr)
    return clf, float(clf.score(feats(xte), yte))


def evaluate_generation(exp, params, data, *, num_samples=10, temperature=1.0, top_k=0, seed=0):
    """Sample `num_samples` images per digit; the classifier's verdict against the requested digit."""
    tok, levels = data.tokenizer, data.tokenizer.pixel_levels
    digits = np.repeat(np.arange(10), num_samples)
    examples = [make_example(tok, generation_prompt(int(d)), [], label=int(d)) for d in digits]
    batch = prompt_batch(examples, data.layout)
    allowed = np.zeros((65, tok.vocab_size), bool)
    allowed[:64, tok.pixel_offset:tok.pixel_offset + levels] = True  # 64 pixels, then <eos>
    allowed[64, EOS_ID] = True
    t0 = time.time()
    ids = np.asarray(generate_media(params, exp.model, exp.media, batch, 65, jax.random.key(seed), temperature,
                                    top_k, allowed_NxV=allowed))
    images = dequantize(tok.ids_to_pixels(ids[:, :64]).reshape(-1, 8, 8), levels)
    clf, clf_acc = digit_classifier(levels, **data.source("generate").split_config)
    predicted = clf.predict(images.reshape(len(images), -1))
    result = {"task": "generate", "samples": int(len(digits)), "temperature": temperature, "top_k": top_k,
              **accuracy([str(p) for p in predicted], [str(d) for d in digits], digits),
              "classifier": "logistic regression on training images", "classifier_test_accuracy": clf_acc,
              "confusion": confusion([str(d) for d in digits], [str(p) for p in predicted]),
              "decode_seconds": round(time.time() - t0, 2)}
    return result, images, digits, predicted


# ------------------------------------------------------------------ reports

def markdown(result: dict) -> str:
    head = [k for k in ("accuracy", "wer", "cer", "classifier_test_accuracy", "examples", "samples", "temperature")
            if k in result and not isinstance(result[k], list)]
    lines = [f"# {result['task']}{' (media zeroed)' if result.get('zero_media') else ''}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
             "| " + " | ".join(f"{result[k]:.4f}" if isinstance(result[k], float) else str(result[k])
                              for k in head) + " |", "", "| digit | accuracy |", "|---|---|"]
    lines += [f"| {d} | {a:.3f} |" for d, a in result.get("per_digit_accuracy", {}).items()]
    if result.get("confusion"):
        cols = [*result["confusion"], "other"]
        lines += ["", "Confusion (rows: reference, columns: prediction):", "",
                  "| reference | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
        lines += [f"| {r} | " + " | ".join(str(row.get(c, 0)) for c in cols) + " |"
                  for r, row in result["confusion"].items()]
    if isinstance(result.get("samples"), list):
        lines += ["", "| reference | prediction |", "|---|---|"]
        lines += [f"| {s['reference']} | {s['prediction']} |" for s in result["samples"]]
    return "\n".join(lines) + "\n"


def picture(path, exp, examples, preds, n: int = 24) -> None:
    """Test inputs (images, or the log-mel features of clips) titled with the model's answers."""
    examples, preds = examples[:n], preds[:n]
    spectrograms = not examples[0].images
    pictures = [np.asarray(audio_features(exp.media.audio, ex.audio[0][None]))[0] if spectrograms
                else ex.images[0] for ex in examples]
    plots.answers(path, pictures, preds, [p.strip() == ex.answer for p, ex in zip(preds, examples)], spectrograms)


def run(workdir, task: str, *, zero_media=False, batch_size=64, limit=None, num_samples=10, temperature=1.0,
        top_k=0, seed=0, step=None):
    """Evaluate `task` on the run in `workdir` (its newest checkpoint, or checkpoint `step`): (scores, a
    function writing them next to the run; a `step`'s into files of their own)."""
    if task not in TASKS:
        raise ConfigError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    if task == "generate" and zero_media:
        raise ConfigError("--zero_media does not apply to --task generate (its prompts hold no media)")
    workdir = pathlib.Path(workdir)
    exp, params, data = load_media_run(workdir, step)
    if task not in data.sources:
        raise ConfigError(f"{workdir} was not trained on {task!r}; its tasks: {', '.join(data.sources)}")
    if task == "generate":
        result, images, digits, predicted = evaluate_generation(
            exp, params, data, num_samples=num_samples, temperature=temperature, top_k=top_k, seed=seed)
        draw = lambda: plots.generated_images(f"{stem}.png", images, digits, predicted)  # noqa: E731
    else:
        result, examples, preds = evaluate_answers(exp, params, data, task, zero_media=zero_media,
                                                   batch_size=batch_size, limit=limit)
        draw = lambda: picture(f"{stem}.png", exp, examples, preds)  # noqa: E731
    stem = scores_stem(workdir, task, result, variant="_zero_media" if zero_media else "", step=step)

    def write():
        write_scores(stem, result, markdown(result))
        draw()
    return result, write
