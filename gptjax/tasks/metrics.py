"""How answers are scored: exact-match accuracy (overall and per class), error rates, confusion tables.

Word and character error rates are jiwer's (corpus level: all edits over all
reference words or characters, as speech-recognition papers report them).
"""
from __future__ import annotations

import numpy as np


def error_rates(predictions, references) -> dict:
    """Corpus word and character error rates: total edits / total reference length."""
    import jiwer

    predictions = [p.strip() for p in predictions]
    return {"wer": float(jiwer.wer(list(references), predictions)),
            "cer": float(jiwer.cer(list(references), predictions))}


def accuracy(predictions, references, labels=None) -> dict:
    """Exact-match accuracy (answers stripped), and per label when `labels` are given."""
    correct = np.asarray([p.strip() == r for p, r in zip(predictions, references)])
    out = {"accuracy": float(correct.mean()) if len(correct) else 0.0}
    if labels is not None:
        labels = np.asarray(labels)
        out["per_digit_accuracy"] = {str(d): float(correct[labels == d].mean()) for d in sorted(set(labels.tolist()))}
    return out


def confusion(references, predictions) -> dict:
    """{reference: {prediction: count}}, references in first-seen order; a prediction that is no
    reference's text counts as "other"."""
    known = list(dict.fromkeys(references))
    table = {r: {p: 0 for p in [*known, "other"]} for r in known}
    for r, p in zip(references, predictions):
        table[r][p if p in table else "other"] += 1
    return {r: {p: n for p, n in row.items() if n} for r, row in table.items()}


def translation_scores(hypotheses, references) -> dict:
    """sacreBLEU's BLEU (with its signature) and chrF on detokenized text, and BLEU on lowercased,
    tokenized text (lowercase, 13a tokenization) as older papers report Multi30k. `references` is one
    reference per hypothesis, or several such streams."""
    import sacrebleu

    refs = [list(r) for r in references] if references and not isinstance(references[0], str) else [list(references)]
    bleu = sacrebleu.BLEU()
    score = bleu.corpus_score(list(hypotheses), refs)
    lc = sacrebleu.BLEU(lowercase=True, tokenize="13a")
    return {"bleu": round(score.score, 2), "bleu_signature": str(bleu.get_signature()),
            "chrf": round(sacrebleu.CHRF().corpus_score(list(hypotheses), refs).score, 2),
            "bleu_lc_tok": round(lc.corpus_score(list(hypotheses), refs).score, 2),
            "bleu_lc_tok_signature": str(lc.get_signature())}


def babi_scores(predictions, references, tasks) -> dict:
    """Error per bAbI task, their mean (a fraction) and how many tasks fail (error > 0.05)."""
    wrong = np.asarray([p.strip() != r for p, r in zip(predictions, references)])
    tasks = np.asarray(tasks)
    per_task = {str(t): float(wrong[tasks == t].mean()) for t in sorted(set(tasks.tolist()))}
    return {"per_task": per_task, "mean_error": float(np.mean(list(per_task.values()))),
            "failed_tasks": int(sum(e > 0.05 for e in per_task.values()))}
