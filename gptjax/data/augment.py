"""Word-class permutation: more training examples from the same ones, with their entities renamed.

`data.permute` names classes of interchangeable words ("Mary John Sandra; kitchen garden office").
Each of `data.augment_copies` copies of a training example draws, for every class, a random
permutation of its words and renames them consistently in the prompt and the target: "Mary went to
the kitchen. Where is Mary? kitchen" may become "Sandra went to the office. Where is Sandra? office".
The answer still follows from the story, but no longer from which names or places it holds, so
memorising the stories gains a model nothing over reading them (the bAbI models' failure:
docs/tasks.md). Validation examples are never changed.

Written here: the text-augmentation libraries (nlpaug, TextAttack) replace words with synonyms or
embeddings' neighbours, one word at a time; none renames a closed class consistently across an
example's prompt and target.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np


def permuted_copies(examples: list, classes: list[list[str]], copies: int, groups: set[int] | None = None,
                    seed: int = 0) -> list:
    """`examples`, then `copies` rounds of renamed copies of each example whose group is in `groups`
    (None: every example). Each copy draws its own permutation of every class."""
    if not copies or not classes:
        return list(examples)
    words = sorted((w for c in classes for w in c), key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b")
    rng = np.random.default_rng(seed)
    out = list(examples)
    for _ in range(copies):
        for ex in examples:
            if groups is not None and ex.group not in groups:
                continue
            mapping = {w: c[j] for c in classes for w, j in zip(c, rng.permutation(len(c)))}
            rename = lambda text: pattern.sub(lambda m: mapping[m.group(1)], text)  # noqa: E731
            out.append(dataclasses.replace(ex, source=rename(ex.source), target=rename(ex.target),
                                           support=tuple(map(rename, ex.support))))
    return out
