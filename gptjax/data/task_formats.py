"""How a task's example is written as text: the prompt the model reads and the target it learns.

One rule for the benchmarks: the prompt is the source (sentence, or bAbI story and question)
followed by a newline, which the SentencePiece models keep as a token of its own; the target is
the translation, label word or answer. JSONL examples are used verbatim.

A bAbI answer is written bare, after the prompt's newline. The SentencePiece models train without a
dummy prefix, so "bedroom" there is split into pieces the stories do not use ("b edroom"); writing
it " bedroom", the story's own piece, was tried and on bAbI task 1 alone stopped the model from
learning the lookup (error 0.72 and 0.62 in two seeds, against 0.14 and 0.165 bare; docs/tasks.md).
"""
from __future__ import annotations


def format_prompt(task: str, source: str) -> str:
    return source if task == "jsonl" else source + "\n"


def format_example(task: str, example) -> tuple[str, str]:
    """(prompt, target) text of a TaskExample."""
    return format_prompt(task, example.source), example.target
