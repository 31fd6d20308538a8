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

With data.supporting_facts, a bAbI target is the story lines the answer rests on, each as the story
writes it and ending in a newline, then the answer: the model writes out the lines it looks up, as a
chain of thought, and `answer_of` reads the answer from the last line of what it generated.
"""
from __future__ import annotations


def format_prompt(task: str, source: str) -> str:
    return source if task == "jsonl" else source + "\n"


def format_example(task: str, example, answer_space: bool = True,
                   supporting_facts: bool = False) -> tuple[str, str]:
    """(prompt, target) text of a TaskExample; `answer_space` (data.answer_space) opens a bAbI answer with a
    space; `supporting_facts` (data.supporting_facts) writes its supporting lines before it."""
    target = " " + example.target if task == "qa" and answer_space else example.target
    if task == "qa" and supporting_facts:
        target = "".join(line + "\n" for line in example.support) + target
    return format_prompt(task, example.source), target


def answer_of(generated: str, supporting_facts: bool = False) -> str:
    """The answer in a bAbI model's generated text: its last line when the model writes supporting lines first."""
    return generated.rsplit("\n", 1)[-1] if supporting_facts else generated
