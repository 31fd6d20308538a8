"""Shared prompts: examples whose prompts grow one from the other are laid once, as a tree.

A bAbI story asks several questions as it goes: "story so far + question 1", then "the same story,
more lines + question 2", ... Laid one by one, a row reads the story's first lines once per question
(2.2 times the tokens of the 20 tasks' training files). With `data.share_prompts`, training rows lay
such a chain once: each example's *stem* (its prompt up to its last line: the story) goes on branch
0, seen by every later token, and its *ending* (the last line, the question, then the target) on a
branch of its own, which no later token sees (gptjax/model/masks.py). Positions count the stem, then
the ending, as the example alone would have them, so every target token is predicted from exactly
the tokens, at exactly the positions, it would see alone: the loss is the same, in fewer tokens.

Example b chains onto example a (the one before it in the data) when they are in the same group,
a's stem is where b's prompt starts, and b's stem is at least as long; b then adds only its prompt
past a's stem and its target. A story longer than `data.context_lines` (its window slides) or than
a row starts a new chain. Written here: packing libraries (grain's, seqio's) concatenate or pad
whole examples; none lays a prefix once for several examples.
"""
from __future__ import annotations

import numpy as np


def stems(ex: dict, newline_id: int) -> np.ndarray:
    """Each example's stem length: its prompt up to the start of its last line (0 when one line)."""
    out = np.zeros(len(ex["lengths"]), np.int64)
    for i, (start, p) in enumerate(zip(ex["starts"], ex["prompt_lens"])):
        breaks = np.flatnonzero(ex["tokens"][start:start + p - 1] == newline_id)  # not the prompt's own last
        out[i] = breaks[-1] + 1 if len(breaks) else 0
    return out


def chains_onto(ex: dict, stem: np.ndarray, a: int, b: int) -> bool:
    """Whether example b's prompt starts with a's stem and b's stem holds all of it."""
    if ex["groups"][a] != ex["groups"][b] or stem[b] < stem[a] or not stem[a]:
        return False
    sa, sb = ex["starts"][a], ex["starts"][b]
    return bool(np.array_equal(ex["tokens"][sa:sa + stem[a]], ex["tokens"][sb:sb + stem[a]]))


def chain_units(ex: dict, stem: np.ndarray, room: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The examples, in order, cut into chains that fit in `room` tokens (an example longer than a row
    stays alone), and each chain's token count."""
    units, lengths, current, used = [], [], [], 0
    for b, n in enumerate(ex["lengths"]):
        if current and chains_onto(ex, stem, current[-1], b) and used + n - stem[current[-1]] <= room:
            used += n - stem[current[-1]]
            current.append(b)
            continue
        if current:
            units.append(np.asarray(current, np.int64))
            lengths.append(used)
        current, used = [b], n
    if current:
        units.append(np.asarray(current, np.int64))
        lengths.append(used)
    return units, np.minimum(np.asarray(lengths, np.int64), room)
