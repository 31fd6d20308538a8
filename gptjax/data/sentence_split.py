"""Hold out whole sentences of a phrase-level treebank (SST-2's train.tsv) with every phrase inside them.

GLUE's SST-2 training file holds 67k phrases cut from about 7k sentences, each labelled; its dev
file holds whole sentences only. Holding out random phrases gives a validation split of short
pieces whose sentences (and sub-phrases) stay in training: it scores near 0.90 where dev scores
0.80, and ranked two recipes the other way round from dev (docs/tasks.md). Here a sentence is a
phrase that no other phrase contains (word for word); a share of the sentences is held out as
validation, and every phrase inside a held-out sentence leaves training, so validation is what dev
is: whole sentences the model has seen no part of. No library splits a phrase treebank this way.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def _spaced(text: str) -> str:
    return f" {' '.join(text.split())} "  # word boundaries: ' good ' is not inside ' goodness '


def containing_sentences(texts: list[str]) -> tuple[list[int], list[list[int]]]:
    """(sentences, owners): the indices of the texts no other text contains, and for each text the
    sentences (positions in `sentences`) that contain it, word for word."""
    spaced = [_spaced(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (-len(spaced[i]), i))  # longest first
    sentences: list[int] = []
    by_word: dict[str, list[int]] = defaultdict(list)  # word -> sentences holding it
    owners: list[list[int]] = [[] for _ in texts]
    for i in order:
        words = set(spaced[i].split())
        rarest = min(words, key=lambda w: len(by_word.get(w, ())), default=None)
        owners[i] = [s for s in by_word.get(rarest, ()) if spaced[i] in spaced[sentences[s]]]
        if not owners[i]:  # nothing longer holds it: a sentence of its own
            owners[i] = [len(sentences)]
            for w in words:
                by_word[w].append(len(sentences))
            sentences.append(i)
    return sentences, owners


def sentence_split(texts: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) boolean masks over `texts`: `fraction` of the sentences, chosen at random
    with `seed`, are validation; a phrase inside any of them is in neither split."""
    sentences, owners = containing_sentences(texts)
    chosen = np.random.default_rng(seed).permutation(len(sentences))[:max(1, round(fraction * len(sentences)))]
    held = np.zeros(len(sentences), bool)
    held[chosen] = True
    validation = np.zeros(len(texts), bool)
    validation[np.asarray(sentences)[held]] = True
    train = np.asarray([not held[o].any() for o in owners])
    return train, validation


def with_sentence_copies(examples: list, texts: list[str], copies: int) -> list:
    """`examples` followed by `copies` more of each whose text (`texts`, aligned) no other text contains."""
    sentences, _ = containing_sentences(texts)
    return list(examples) + [examples[i] for _ in range(copies) for i in sorted(sentences)]
