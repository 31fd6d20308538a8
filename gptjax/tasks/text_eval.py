"""Score a run trained on a downstream task (translate | sentiment | qa | jsonl) on any file of that task.

Prompts are written as in training (gptjax/data/task_formats.py), answers decoded
with the KV cache, greedily or by beam search, cut at <eos>:

  translate  `bleu` (sacreBLEU, with `bleu_signature`), `chrf`, `bleu_lc_tok` (lowercased, tokenized)
  sentiment  `accuracy` of the generated label word, and `accuracy_loglik`: the likelier label word (a run
             trained with data.both_ways: averaged over the forward and reversed readings, each also alone)
  qa         `per_task` error, `mean_error` (a fraction), `failed_tasks` (error > 0.05)
  jsonl      `accuracy` (exact match)

`run` returns the scores and a function that writes eval_<task>.json / .md next to the run; with
`ensemble` (more run folders) the runs' averaged predictions are scored (gptjax/model/ensemble.py).
"""
from __future__ import annotations

import pathlib
import time

import jax
import numpy as np

from gptjax.data import task_files
from gptjax.data.both_ways import reversed_words
from gptjax.data.task_formats import answer_of, format_prompt
from gptjax.errors import ConfigError
from gptjax.model.beam import beam_search
from gptjax.model.decode import decode
from gptjax.model.ensemble import Ensemble
from gptjax.model.scoring import loglikelihood, width_bucket
from gptjax.model.transformer import Transformer
from gptjax.tasks.metrics import accuracy, babi_scores, confusion, translation_scores
from gptjax.tasks.result_files import scores_stem, write_scores
from gptjax.train.restore import load_ensemble, load_run

TEXT_TASKS = ("translate", "sentiment", "qa", "jsonl")
HELD_OUT = "<held-out validation split>"  # `run(data=HELD_OUT)`: the run's own, not a file
MAX_NEW = {"translate": 80, "sentiment": 4, "qa": 8, "jsonl": 64}  # subword pieces
MAX_NEW_CHARS = {"translate": 400, "sentiment": 16, "qa": 48, "jsonl": 256}  # one token per character or byte
# qa with data.supporting_facts: room for the story lines written before the answer (subword pieces, characters)
SUPPORT_BUDGET, SUPPORT_BUDGET_CHARS = 64, 256
CHARACTER_TOKENIZERS = ("char", "byte")


def answer_budget(task: str, tokenizer, supporting_facts: bool = False) -> int:
    """How many tokens an answer may take: the task's budget in the tokenizer's own unit (for qa with
    supporting lines, room for them too), and for sentiment never fewer than the longest label word and its <eos>."""
    characters = tokenizer.name in CHARACTER_TOKENIZERS
    table = MAX_NEW_CHARS if characters else MAX_NEW
    if task == "qa" and supporting_facts:
        n = SUPPORT_BUDGET_CHARS if characters else SUPPORT_BUDGET
    else:
        n = table[task]
    if task == "sentiment":
        n = max(n, 1 + max(len(tokenizer.encode(label)) for label in task_files.SENTIMENT_LABELS))
    return n


def read_examples(exp, task: str, path) -> list:
    """The examples of `path`, read as the task's format (DataError naming file and line); with
    path HELD_OUT, the validation examples the run's own data held out (its data.folder, else
    GPTJAX_DATA_DIR), for choosing settings without touching a test set."""
    cfg = exp.data
    if path == HELD_OUT:
        from gptjax.data.task_builder import read_splits, task_folder

        return read_splits(cfg, task_folder(cfg))["validation"]
    if task == "translate":
        return task_files.read_parallel(path, cfg.source_lang, cfg.target_lang)
    if task == "sentiment":
        return task_files.read_glue_tsv(path)
    if task == "qa":
        return task_files.read_babi(path, cfg.context_lines, cfg.line_ages)
    return task_files.read_jsonl(path)


def prompt_batch(ids_list, width: int, prefix: bool = False) -> dict:
    """Right-padded prompts (padding: segment id 0) with their lengths; with `prefix`, each prompt is a
    bidirectional prefix (a run trained with data.attention=prefix)."""
    b = len(ids_list)
    batch = {"inputs": np.zeros((b, width), np.int32), "positions": np.zeros((b, width), np.int32),
             "segment_ids": np.zeros((b, width), np.int32), "prompt_len": np.zeros((b,), np.int32)}
    for r, ids in enumerate(ids_list):
        batch["inputs"][r, :len(ids)], batch["segment_ids"][r, :len(ids)] = ids, 1
        batch["positions"][r, :len(ids)], batch["prompt_len"][r] = np.arange(len(ids)), len(ids)
    if prefix:
        batch["prefix"] = batch["segment_ids"] > 0
    return batch


def prompt_window(spec, n_new: int) -> int:
    """How many prompt tokens decoding keeps: the context window less the room always left for the answer."""
    return spec.max_seq_len - min(n_new, spec.max_seq_len // 2)


def generate_answers(params, spec, tokenizer, prompts: list[str], n_new: int, beam: int = 1, alpha: float = 0.6,
                     batch_size: int = 64, prefix: bool = False, members: int = 0) -> list[str]:
    """Decoded answers to `prompts` (greedy with beam 1), each cut at <eos>; up to `n_new` tokens each, fewer
    where a long prompt leaves less of the context window. With `members`, `params` are that many runs'
    stacked (gptjax/model/ensemble.py) and their averaged predictions decode."""
    ids = [tokenizer.encode(p)[-prompt_window(spec, n_new):] for p in prompts]  # oldest context goes first
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    model, answers = Transformer(spec, decode=True), [""] * len(ids)
    if members:
        model = Ensemble(model, members)
    batch_axis = (1 if spec.scan_layers else 0) + (1 if members else 0)  # of the cache's arrays
    for lo in range(0, len(order), batch_size):
        chunk = order[lo:lo + batch_size]
        rows = [ids[i] for i in chunk] + [ids[chunk[-1]]] * (batch_size - len(chunk))  # one shape per width
        batch = prompt_batch(rows, width_bucket(max(map(len, rows)), prompt_window(spec, n_new)), prefix)
        n = min(n_new, spec.max_seq_len - batch["inputs"].shape[1])
        if beam > 1:
            out, _ = beam_search(params, batch, model=model, n_new=n, beam=beam, eos_id=tokenizer.eos_id,
                                 alpha=alpha, batch_axis=batch_axis)
        else:
            out = decode(params, batch, jax.random.key(0), model=model, n_new=n)
        for r, i in enumerate(chunk):
            row = np.asarray(out[r]).tolist()
            answers[i] = tokenizer.decode(row[:row.index(tokenizer.eos_id)] if tokenizer.eos_id in row else row)
    return answers


def label_loglik(params, spec, tokenizer, prompts, labels=task_files.SENTIMENT_LABELS,
                 prefix: bool = False, members: int = 0) -> np.ndarray:
    """[prompt, label] log-likelihood of each label word's tokens (and <eos>) after each prompt."""
    requests = [(tokenizer.encode(p), tokenizer.encode(label) + [tokenizer.eos_id]) for p in prompts for label in labels]
    scores = loglikelihood(params, spec, requests, prefix_context=prefix, members=members)
    return np.asarray([s for s, _ in scores]).reshape(len(prompts), len(labels))


def label_by_likelihood(params, spec, tokenizer, prompts, labels=task_files.SENTIMENT_LABELS,
                        prefix: bool = False, members: int = 0) -> list[str]:
    """The label word whose tokens (and <eos>) are likeliest after each prompt."""
    return likeliest(label_loglik(params, spec, tokenizer, prompts, labels, prefix, members), labels)


def likeliest(scores: np.ndarray, labels) -> list[str]:
    """The label of the highest score in each row of [prompt, label] `scores`."""
    return [labels[i] for i in scores.argmax(axis=1)]


def both_readings(params, spec, tokenizer, task: str, examples, members: int = 0) -> dict[str, np.ndarray]:
    """A run trained with data.both_ways: {'forward', 'reversed'}: [example, label] log-likelihoods of the label
    words after the prompt as written and after its words reversed behind the marker (gptjax/data/both_ways.py)."""
    return {way: label_loglik(params, spec, tokenizer, [format_prompt(task, text(ex.source)) for ex in examples],
                              members=members)
            for way, text in (("forward", str), ("reversed", reversed_words))}


def both_ways_accuracy(readings: dict[str, np.ndarray], refs, labels=task_files.SENTIMENT_LABELS) -> dict:
    """`accuracy_loglik` of the label likeliest on average over the two readings, as a BiLSTM joins its two
    directions, and each reading's own accuracy."""
    def correct(scores):
        return accuracy(likeliest(scores, labels), refs)["accuracy"]
    return {"accuracy_loglik": correct((readings["forward"] + readings["reversed"]) / 2),
            **{f"accuracy_loglik_{way}": correct(s) for way, s in readings.items()}}


def score(task: str, exp, params, tokenizer, examples, beam: int, alpha: float, members: int = 0) -> dict:
    prompts = [format_prompt(task, ex.source) for ex in examples]
    refs = [ex.target for ex in examples]
    t0 = time.time()
    prefix = exp.data.attention == "prefix"
    supporting = exp.data.supporting_facts
    n_new = answer_budget(task, tokenizer, supporting)
    hyps = generate_answers(params, exp.model, tokenizer, prompts, n_new, beam, alpha, prefix=prefix, members=members)
    window = prompt_window(exp.model, n_new)
    cut = sum(len(tokenizer.encode(p)) > window for p in prompts)  # these lost their oldest tokens
    result = {"task": task, "examples": len(examples), "prompts_cut": cut, "beam": beam,
              "length_penalty": alpha if beam > 1 else None}
    if task == "translate":
        result.update(translation_scores(hyps, refs))
    elif task == "qa":
        answers = [answer_of(h, supporting) for h in hyps]
        result.update(babi_scores(answers, refs, [ex.group for ex in examples]))
    else:
        result.update(accuracy(hyps, refs))
        result["confusion"] = confusion(refs, [h.strip() for h in hyps])
    if task == "sentiment" and exp.data.both_ways:
        result.update(both_ways_accuracy(both_readings(params, exp.model, tokenizer, task, examples, members), refs))
    elif task == "sentiment":
        by_likelihood = label_by_likelihood(params, exp.model, tokenizer, prompts, prefix=prefix, members=members)
        result["accuracy_loglik"] = accuracy(by_likelihood, refs)["accuracy"]
    result["decode_seconds"] = round(time.time() - t0, 2)
    result["samples"] = [{"prompt": p[-200:], "reference": r, "prediction": h} for p, r, h in
                         list(zip(prompts, refs, hyps))[:8]]
    return result


def markdown(result: dict) -> str:
    keys = [k for k in ("bleu", "bleu_lc_tok", "chrf", "accuracy", "accuracy_loglik", "accuracy_loglik_forward",
                        "accuracy_loglik_reversed", "mean_error", "failed_tasks", "examples", "prompts_cut", "beam")
            if k in result]
    lines = [f"# {result['task']} ({result['data']})", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
             "| " + " | ".join(str(result[k]) for k in keys) + " |"]
    if "bleu_signature" in result:
        lines += ["", f"sacreBLEU signature: `{result['bleu_signature']}`"]
    if "per_task" in result:
        lines += ["", "| bAbI task | error |", "|---|---|"] + [f"| {t} | {e:.3f} |" for t, e in result["per_task"].items()]
    lines += ["", "| reference | prediction |", "|---|---|"]
    lines += [f"| {s['reference']} | {s['prediction']} |" for s in result["samples"]]
    return "\n".join(lines) + "\n"


def run(workdir, task: str, data, *, beam: int = 1, alpha: float = 0.6, limit: int | None = None,
        step: int | None = None, ensemble=()):
    """Evaluate the run in `workdir` (its newest checkpoint, or checkpoint `step`) on the `task` examples at
    `data`: (scores, a function writing them; a `step`'s into files of their own). With `ensemble` (more run
    folders of the same shape, tokenizer and task format) the runs' averaged predictions are scored, into
    eval_<task>[_held_out]_ensemble<M>.* of `workdir`."""
    if task not in TEXT_TASKS:
        raise ConfigError(f"--task {task!r}: expected one of {', '.join(TEXT_TASKS)}")
    workdir = pathlib.Path(workdir)
    members = 1 + len(ensemble) if ensemble else 0
    if members:
        exp, params, tokenizer = load_ensemble([workdir, *map(pathlib.Path, ensemble)], step=step)
    else:
        exp, params, tokenizer = load_run(workdir, step=step)
    trained = getattr(exp.data, "task", None)
    if getattr(exp.data, "kind", None) != "task" or trained != task:
        raise ConfigError(f"{workdir} was not trained on the {task} task (its data: "
                          f"{trained or getattr(exp.data, 'kind', '?')}); pass the task it learned")
    examples = read_examples(exp, task, data)[:limit]
    result = {**score(task, exp, params, tokenizer, examples, beam, alpha, members), "data": str(data)}
    variant = "_held_out" if data == HELD_OUT else ""
    if members:
        result["ensemble"] = [str(workdir), *map(str, ensemble)]
        variant += f"_ensemble{members}"
    stem = scores_stem(workdir, task, result, variant=variant, step=step)
    return result, lambda: write_scores(stem, result, markdown(result))
