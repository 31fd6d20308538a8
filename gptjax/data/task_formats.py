"""How a task's example is written as text: the prompt the model reads and the target it learns.

One rule for the benchmarks: the prompt is the source (sentence, or bAbI story and question)
followed by a newline, which the SentencePiece models keep as a token of its own; the target is
the translation, label word or answer. JSONL examples are used verbatim.

bAbI's story lines, its question and its answer each start with a space. The tokenizers keep text
as it is (no dummy prefix), so a word after a newline would otherwise be another token than the
same word after a space: "Mary" opening a story line and " Mary" in "Where is Mary?" would be two
symbols, and finding the line the question asks about would mean learning that they name one person.
"""
from __future__ import annotations


def format_prompt(task: str, source: str) -> str:
    if task == "jsonl":
        return source
    if task == "qa":
        return " " + source.replace("\n", "\n ") + "\n"
    return source + "\n"


def format_target(task: str, target: str) -> str:
    return " " + target if task == "qa" else target


def format_example(task: str, example) -> tuple[str, str]:
    """(prompt, target) text of a TaskExample."""
    return format_prompt(task, example.source), format_target(task, example.target)
