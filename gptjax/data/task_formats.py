"""How a task's example is written as text: the prompt the model reads and the target it learns.

One rule for the benchmarks: the prompt is the source (sentence, or bAbI story and question)
followed by a newline, which the SentencePiece models keep as a token of its own; the target is
the translation, label word or answer. JSONL examples are used verbatim.

A bAbI answer is written with a leading space, as its words appear inside a story line: the
SentencePiece models are trained without a dummy prefix, so " bedroom" is the story's one piece while
"bedroom" after the newline would be split into pieces seen nowhere else ("b edroom"). Scoring
strips the space. On the joint bAbI recipe the two formats score alike, 0.395 with it against 0.406
bare (one run each, standard error 0.011), and it stays the default by that; on task 1 alone bare
answers learned the lookup in two seeds of two and these in none, so qa_babi.py, which trains task 1
first, writes them bare (docs/tasks.md).
"""
from __future__ import annotations


def format_prompt(task: str, source: str) -> str:
    return source if task == "jsonl" else source + "\n"


def format_example(task: str, example, answer_space: bool = True) -> tuple[str, str]:
    """(prompt, target) text of a TaskExample; `answer_space` (data.answer_space) opens a bAbI answer with a space."""
    target = " " + example.target if task == "qa" and answer_space else example.target
    return format_prompt(task, example.source), target
