"""Where an evaluation's scores go: eval_<task>[<variant>][_step<N>].json and .md beside the run.

A scored earlier checkpoint (`evaluate.py --step N`) gets files of its own and says its step in the
JSON, so scoring it never overwrites the newest checkpoint's scores."""
from __future__ import annotations

import pathlib

from gptjax import atomic


def scores_stem(workdir, task: str, result: dict, *, variant: str = "", step: int | None = None) -> pathlib.Path:
    """The path, less its suffix, that `result` is written to; records `step` in `result` when one was asked."""
    if step is not None:
        result["step"] = step
    return pathlib.Path(workdir) / f"eval_{task}{variant}{'' if step is None else f'_step{step}'}"


def write_scores(stem: pathlib.Path, result: dict, markdown: str) -> None:
    """Write `result` as JSON and its `markdown` table next to it, each file whole or not at all."""
    atomic.write_json(f"{stem}.json", result)
    atomic.write_text(f"{stem}.md", markdown)
