"""Reading a phrase both ways: a decoder-only analogue of a bidirectional LSTM's two directions.

With `data.both_ways`, every training example gains a copy whose prompt holds the same words in reverse
order behind a marker ("<<< film good a" for "a good film"), with the same target. One model so learns two
readings of each phrase: left to right, where a word sees what came before it, and right to left, where it
sees what comes after. Scoring (gptjax/tasks/text_eval.py) averages the label words' log-likelihoods over
the two readings, as a BiLSTM joins its two directions. Validation examples are never copied, so the
held-out loss stays the forward reading's.

Written here: a word-order reversal with a marker is two lines of text handling; no augmentation library
(nlpaug, TextAttack) has it, and the scoring side is the model's own.
"""
from __future__ import annotations

import dataclasses

REVERSED_MARK = "<<<"  # opens a reversed prompt; SST-2's phrases never hold it


def reversed_words(text: str) -> str:
    """`text` with its words (runs of non-space) in reverse order, behind REVERSED_MARK."""
    return " ".join([REVERSED_MARK, *reversed(text.split())])


def with_reversed_copies(examples: list) -> list:
    """`examples`, then one copy of each with its source's words reversed (same target, group and story)."""
    return list(examples) + [dataclasses.replace(ex, source=reversed_words(ex.source)) for ex in examples]
