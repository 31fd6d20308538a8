"""BPE-dropout: more training examples from the same ones, each segmented into pieces anew.

A BPE model turns a word into the same pieces every time, so a small corpus teaches each rare word in
one segmentation only. BPE-dropout (Provilkov et al., 2020) skips each merge with probability p while
encoding, so "orangefarbenen" may come out whole, as "orange farb enen" or letter by letter: the model
learns the pieces' composition; Provilkov et al. report 1-2 BLEU on small translation corpora (on
Multi30k within two CPU hours it learned more slowly and scored lower; on SST-2, where every run
overfits after a few passes, it gained 1.5 points of dev accuracy and ships: docs/tasks.md). SentencePiece
does the sampling (`enable_sampling` with `alpha` = p on a BPE model); written here is only which
examples are sampled and with which seed. With `data.bpe_copies` K, the training split gains K copies
of each example, prompt and target each sampled; epochs then hold the K + 1 segmentations, reshuffled
as usual. Validation examples, and every text encoded for decoding, keep the one deterministic
segmentation.
"""
from __future__ import annotations

import sentencepiece as spm

from gptjax.errors import DataError


def sampled_copies(tokenizer, texts: list[tuple[str, str, int]], copies: int, alpha: float,
                   seed: int) -> list[tuple[list[int], list[int], int]]:
    """`copies` rounds of (prompt ids, target ids, group) for each (prompt, target, group) of `texts`,
    with each merge skipped with probability `alpha`; the same for the same seed."""
    if not hasattr(tokenizer, "encode_sampled"):
        raise DataError(f"data.bpe_copies samples SentencePiece segmentations; this run's tokenizer "
                        f"({getattr(tokenizer, 'name', type(tokenizer).__name__)}) has one way to encode a text: "
                        "drop data.bpe_dropout and data.bpe_copies")
    spm.set_random_generator_seed(seed)  # SentencePiece's sampler is global: one seed, then a fixed order
    out = []
    for _ in range(copies):
        for prompt, target, group in texts:
            out.append((tokenizer.encode_sampled(prompt, alpha), tokenizer.encode_sampled(target, alpha), group))
    return out
