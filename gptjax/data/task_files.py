"""Readers of the downstream benchmarks' own file formats, each returning `TaskExample`s.

  Multi30k   a prefix P with P.<lang>[.gz] files, one sentence per line, aligned across languages
  GLUE TSV   a header, then `sentence<TAB>label` rows (SST-2: 1 = positive)
  bAbI       numbered story lines; questions as `ID question<TAB>answer<TAB>supporting ids`; the
             number restarting at 1 starts a new story; the task number comes from `qaN_` in the name
  JSONL      one {"prompt": ..., "target": ...} object per line

A file that does not follow its format raises DataError naming the file and line.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import pathlib
import re

from gptjax.errors import DataError

SENTIMENT_LABELS = ("negative", "positive")  # GLUE's 0 and 1


@dataclasses.dataclass(frozen=True)
class TaskExample:
    """The raw fields of one example; gptjax/data/task_formats.py makes its prompt and target."""

    source: str  # sentence to translate or classify; the story and question for bAbI; the prompt for JSONL
    target: str  # translation, label word, answer
    group: int = 0  # bAbI task number (1..20); the label index for sentiment; 0 otherwise
    story: int = -1  # bAbI: the story it belongs to (validation questions are held out by story)
    support: tuple[str, ...] = ()  # bAbI: the story lines the answer rests on, in the file's order


def _open_text(path: pathlib.Path) -> list[str]:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return raw.decode("utf-8").splitlines()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e})") from None


def language_file(prefix, lang: str) -> pathlib.Path:
    """P.<lang>, or P.<lang>.gz; DataError naming both when neither exists."""
    for path in (pathlib.Path(f"{prefix}.{lang}"), pathlib.Path(f"{prefix}.{lang}.gz")):
        if path.is_file():
            return path
    raise DataError(f"no {lang} side for {prefix}: neither {prefix}.{lang} nor {prefix}.{lang}.gz exists "
                    "(translation data is a prefix P with aligned P.<source> and P.<target> files)")


def read_parallel(prefix, source_lang: str, target_lang: str) -> list[TaskExample]:
    """Aligned sentence pairs of P.<source>[.gz] and P.<target>[.gz]."""
    paths = [language_file(prefix, lang) for lang in (source_lang, target_lang)]
    src, tgt = (_open_text(p) for p in paths)
    if len(src) != len(tgt):
        raise DataError(f"{paths[0]} has {len(src)} lines but {paths[1]} has {len(tgt)}: the sides must be "
                        "aligned line by line")
    for path, lines in zip(paths, (src, tgt)):
        for i, line in enumerate(lines, 1):
            if not line.strip():
                raise DataError(f"{path}:{i}: empty line (every line holds one sentence)")
    return [TaskExample(s.strip(), t.strip()) for s, t in zip(src, tgt)]


def read_glue_tsv(path) -> list[TaskExample]:
    """`sentence<TAB>label` rows after a header; labels 0 or 1."""
    path = pathlib.Path(path)
    lines = _open_text(path) if path.is_file() else _missing(path, "a GLUE-format TSV (sentence<TAB>label)")
    if not lines or lines[0].split("\t")[:2] != ["sentence", "label"]:
        raise DataError(f"{path}:1: expected the header 'sentence<TAB>label' (GLUE's SST-2 format)")
    out = []
    for i, line in enumerate(lines[1:], 2):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip():
            raise DataError(f"{path}:{i}: expected 'sentence<TAB>label', got {line[:80]!r}")
        if parts[1].strip() not in ("0", "1"):
            raise DataError(f"{path}:{i}: label {parts[1].strip()!r} is not 0 (negative) or 1 (positive)")
        label = int(parts[1])
        out.append(TaskExample(parts[0].strip(), SENTIMENT_LABELS[label], group=label))
    if not out:
        raise DataError(f"{path} holds a header but no examples")
    return out


def babi_task_number(path: pathlib.Path) -> int:
    m = re.match(r"qa(\d+)_", path.name)
    if not m or not 1 <= int(m.group(1)) <= 20:
        raise DataError(f"{path.name}: bAbI files are named qaN_<name>_<split>.txt with N in 1..20")
    return int(m.group(1))


def read_babi(path, context_lines: int = 0, line_ages: bool = False) -> list[TaskExample]:
    """Every question of a bAbI file (or of every qa*.txt file in a folder), with its story so far.

    With `line_ages`, each story line opens with its age: how many lines before the question it
    was told (1: the latest). That is the temporal encoding of End-To-End Memory Networks, written
    as text, so that "the latest line about Mary" is a comparison of ages.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        files = sorted(path.glob("qa*.txt"), key=babi_task_number)
        if not files:
            raise DataError(f"{path} holds no bAbI files (qaN_<name>_<split>.txt)")
        return [ex for f in files for ex in read_babi(f, context_lines, line_ages)]
    if not path.is_file():
        _missing(path, "a bAbI file or a folder of qaN_*.txt files")
    task, out, story, n_story, last = babi_task_number(path), [], [], 0, 0
    by_number: dict[int, str] = {}  # this story's lines by their ID (questions are numbered too)
    for i, line in enumerate(_open_text(path), 1):
        number, _, rest = line.strip().partition(" ")
        if not number.isdigit() or not rest:
            raise DataError(f"{path}:{i}: expected 'ID text' (a numbered story line or question), got {line[:80]!r}")
        if int(number) <= last:  # numbering restarts: a new story
            story, n_story, by_number = [], n_story + 1, {}
        last = int(number)
        if "\t" in rest:
            fields = rest.split("\t")
            if len(fields) < 2 or not fields[1].strip():
                raise DataError(f"{path}:{i}: a question needs 'question<TAB>answer<TAB>supporting ids'")
            context = story[-context_lines:] if context_lines else story
            if line_ages:
                context = [f"{len(context) - j} {text}" for j, text in enumerate(context)]
            support = fields[2].split() if len(fields) > 2 else []
            if not all(n.isdigit() and int(n) in by_number for n in support):
                raise DataError(f"{path}:{i}: supporting ids {fields[2].strip()!r} must be numbers of this story's "
                                f"lines before the question")
            out.append(TaskExample("\n".join(context + [fields[0].strip()]), fields[1].strip(), task, n_story,
                                   tuple(by_number[int(n)] for n in support)))
        else:
            story.append(rest.strip())
            by_number[int(number)] = rest.strip()
    if not out:
        raise DataError(f"{path} holds no questions (lines with a TAB-separated answer)")
    return out


def read_jsonl(path) -> list[TaskExample]:
    """One {"prompt": str, "target": str} object per line (empty lines refused)."""
    path = pathlib.Path(path)
    lines = _open_text(path) if path.is_file() else _missing(path, 'a JSONL file of {"prompt", "target"} objects')
    out = []
    for i, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise DataError(f"{path}:{i}: not a JSON object ({e})") from None
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) and obj[k] for k in ("prompt", "target")):
            raise DataError(f'{path}:{i}: expected {{"prompt": "...", "target": "..."}} with non-empty strings')
        out.append(TaskExample(obj["prompt"], obj["target"]))
    if not out:
        raise DataError(f"{path} holds no examples")
    return out


def _missing(path, what: str):
    raise DataError(f"{path} does not exist; expected {what}")
