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
