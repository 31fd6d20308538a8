"""Evaluate a trained multimodal run on one task: caption | vqa | transcribe | generate.

Answers are decoded greedily with the KV cache (`gptjax.multimodal.generate`)
from prompts holding the test media, and compared with the reference text:
`accuracy` is exact match; transcription adds word and character error rates.
Text-to-image generation samples images from "draw a seven:" prompts and
scores them with a separately trained classifier (logistic regression on the
training split's 8x8 images at the same grey levels), whose own test accuracy
is reported too. `zero_media=True` replaces every image / clip by zeros: the
ablation that shows the answers come from the media.

Writes <workdir>/eval_<task>[_zero_media].json, .md (tables) and .png (pictures).
"""
from __future__ import annotations

import json
import pathlib
import time

import jax
import numpy as np

from gptjax import config
from gptjax.data.mixture import prompt_batch

TASKS = ("caption", "vqa", "transcribe", "generate")


# ------------------------------------------------------------------ loading

def load_media_run(workdir):
    """(experiment, params, data) of the newest checkpoint of a multimodal run, on one device."""
    from gptjax import sharding
    from gptjax.checkpoint import Checkpointer
    from gptjax.optim import make_optimizer
    from gptjax.train_step import make_state_fns

    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").is_file():
        raise config.ConfigError(f"{workdir} is not a run folder: no config.json (train one with scripts/train.py)")
    exp = config.from_dict(config.Experiment, json.loads((workdir / "config.json").read_text()))
    if exp.media is None:
        raise config.ConfigError(f"{workdir} is a text-only run; evaluate.py scores multimodal runs "
                                 "(use scripts/sample.py for text)")
    ckpt = Checkpointer(workdir, async_save=False)
    if ckpt.latest_step() is None:
        raise config.ConfigError(f"{workdir} has no checkpoint yet")
    data = exp.data.build(exp, tokenizer_dir=workdir / "tokenizer")
    mesh = sharding.make_mesh(config.Mesh(1, 1, 1), jax.devices()[:1])
    tx, _ = make_optimizer(exp.optimizer, exp.schedule, exp.train.steps)
    example = next(iter(data.eval_batches(1, 1)))
    _, _, abstract, _ = make_state_fns(exp, exp.model, tx, mesh, example)
    state, _ = ckpt.restore(abstract)
    ckpt.close()
    return exp, state.params, data


# ------------------------------------------------------------------ metrics

def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences (words or characters)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def error_rates(predictions, references) -> dict:
    """Corpus word and character error rates: total edits / total reference length."""
    w_err = sum(edit_distance(p.split(), r.split()) for p, r in zip(predictions, references))
    c_err = sum(edit_distance(p, r) for p, r in zip(predictions, references))
    return {"wer": w_err / max(sum(len(r.split()) for r in references), 1),
            "cer": c_err / max(sum(len(r) for r in references), 1)}


# ------------------------------------------------------------------ answering

def answer(exp, params, data, examples, *, zero_media=False, batch_size=64, n_new=None):
    """Greedy answers (text) to the prompts of `examples`."""
    from gptjax.multimodal import generate

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
        ids = np.asarray(generate(params, exp.model, exp.media, batch, n))
        outputs += [tok.answer_text(row) for row in ids[:len(chunk)]]
    return outputs


def evaluate_answers(exp, params, data, task, *, zero_media=False, batch_size=64, limit=None) -> dict:
    examples = data.task_examples(task, "test", limit)
    t0 = time.time()
    preds = answer(exp, params, data, examples, zero_media=zero_media, batch_size=batch_size)
    refs = [ex.answer for ex in examples]
    correct = np.asarray([p.strip() == r for p, r in zip(preds, refs)])
    labels = np.asarray([ex.label for ex in examples])
    result = {"task": task, "zero_media": zero_media, "examples": len(examples),
              "accuracy": float(correct.mean()),
              "per_digit_accuracy": {str(d): float(correct[labels == d].mean()) for d in range(10)
                                     if (labels == d).any()},
              "confusion": confusion(refs, [p.strip() for p in preds]),
              "decode_seconds": round(time.time() - t0, 2)}
    if task == "transcribe":
        result.update(error_rates(preds, refs))
    result["samples"] = [{"reference": r, "prediction": p} for p, r in list(zip(preds, refs))[:8]]
    return result, examples, preds


def confusion(references, predictions) -> dict:
    """{reference: {prediction: count}}, references in first-seen order; a prediction that is no
    reference's text counts as "other"."""
    known = list(dict.fromkeys(references))
    table = {r: {p: 0 for p in [*known, "other"]} for r in known}
    for r, p in zip(references, predictions):
        table[r][p if p in table else "other"] += 1
    return {r: {p: n for p, n in row.items() if n} for r, row in table.items()}


def digit_classifier(levels: int, split_seed: int = 0, test_fraction: float = 0.2, data_dir: str = ""):
    """Logistic regression on the training images at `levels` grey levels; (model, its test accuracy)."""
    from sklearn.linear_model import LogisticRegression

    from gptjax.data.digits import dequantize, prepare_digits, quantize, read_split

    builder = prepare_digits(test_fraction, split_seed, data_dir)
    (xtr, ytr), (xte, yte) = read_split(builder, "train"), read_split(builder, "test")
    feats = lambda x: dequantize(quantize(x, levels), levels).reshape(len(x), -1)  # noqa: E731
    clf = LogisticRegression(max_iter=5000, C=1.0).fit(feats(xtr), ytr)
    return clf, float(clf.score(feats(xte), yte))


def evaluate_generation(exp, params, data, *, num_samples=10, temperature=1.0, top_k=0, seed=0) -> dict:
    """Sample `num_samples` images per digit; the classifier's verdict against the requested digit."""
    from gptjax.data.digits import dequantize, generation_prompt
    from gptjax.data.media_tokenizer import EOS_ID
    from gptjax.data.mixture import make_example
    from gptjax.multimodal import generate

    tok, levels = data.tokenizer, data.tokenizer.pixel_levels
    src = data.source("generate")
    digits = np.repeat(np.arange(10), num_samples)
    examples = [make_example(tok, generation_prompt(int(d)), [], label=int(d)) for d in digits]
    batch = prompt_batch(examples, data.layout)
    allowed = np.zeros((65, tok.vocab_size), bool)
    allowed[:64, tok.pixel_offset:tok.pixel_offset + levels] = True  # 64 pixels, then <eos>
    allowed[64, EOS_ID] = True
    t0 = time.time()
    ids = np.asarray(generate(params, exp.model, exp.media, batch, 65, jax.random.key(seed), temperature, top_k,
                              allowed_NxV=allowed))
    images = dequantize(tok.ids_to_pixels(ids[:, :64]).reshape(-1, 8, 8), levels)
    clf, clf_acc = digit_classifier(levels, **src.split_config)
    predicted = clf.predict(images.reshape(len(images), -1))
    hits = predicted == digits
    return {"task": "generate", "samples": int(len(digits)), "temperature": temperature, "top_k": top_k,
            "accuracy": float(hits.mean()),
            "per_digit_accuracy": {str(d): float(hits[digits == d].mean()) for d in range(10)},
            "classifier": "logistic regression on training images", "classifier_test_accuracy": clf_acc,
            "confusion": confusion([str(d) for d in digits], [str(p) for p in predicted]),
            "decode_seconds": round(time.time() - t0, 2)}, images, digits, predicted


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


def _figure(n, cols, size=1.6):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size * 1.15), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def picture_answers(path, examples, preds, audio_spec=None, n=24):
    """A grid of test inputs (images, or log-mel of clips) titled with the model's answers."""
    from gptjax.encoders import audio_features

    n = min(n, len(examples))
    fig, axes = _figure(n, 6, 1.9)
    for ax, ex, pred in zip(axes, examples[:n], preds[:n]):
        if ex.images:
            ax.imshow(ex.images[0], cmap="gray_r", vmin=0, vmax=1)
        else:
            feats = audio_features(audio_spec, ex.audio[0][None])
            ax.imshow(np.asarray(feats)[0].T, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(pred[:22], fontsize=7, color="black" if pred.strip() == ex.answer else "red")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def picture_generated(path, images, digits, predicted):
    per = int((digits == 0).sum())
    cols = min(per, 10)
    keep = np.concatenate([np.nonzero(digits == d)[0][:cols] for d in range(10)])
    fig, axes = _figure(len(keep), cols, 1.0)
    for ax, i in zip(axes, keep):
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{digits[i]}->{predicted[i]}", fontsize=6, color="black" if digits[i] == predicted[i] else "red")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(workdir, task: str, *, zero_media=False, batch_size=64, limit=None, num_samples=10, temperature=1.0,
        top_k=0, seed=0) -> dict:
    """Evaluate `task` on the run in `workdir`; writes the JSON, markdown and PNG next to it."""
    if task not in TASKS:
        raise config.ConfigError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    if task == "generate" and zero_media:
        raise config.ConfigError("--zero_media does not apply to --task generate (its prompts hold no media)")
    workdir = pathlib.Path(workdir)
    exp, params, data = load_media_run(workdir)
    if task not in data.sources:
        raise config.ConfigError(f"{workdir} was not trained on {task!r}; its tasks: {', '.join(data.sources)}")
    if task == "generate":
        result, images, digits, predicted = evaluate_generation(
            exp, params, data, num_samples=num_samples, temperature=temperature, top_k=top_k, seed=seed)
    else:
        result, examples, preds = evaluate_answers(exp, params, data, task, zero_media=zero_media,
                                                   batch_size=batch_size, limit=limit)
    stem = f"eval_{task}{'_zero_media' if zero_media else ''}"
    (workdir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (workdir / f"{stem}.md").write_text(markdown(result))
    if task == "generate":
        picture_generated(workdir / f"{stem}.png", images, digits, predicted)
    else:
        picture_answers(workdir / f"{stem}.png", examples, preds, exp.media.audio)
    return result

