"""Whole-or-nothing writes: a reader (or a crash) never sees half a file or half a folder.

Every file gptjax writes outside Orbax's checkpoints goes through here: the
content lands in a hidden temporary sibling, which is then renamed over the
target (a rename within one folder is atomic on POSIX filesystems).
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil


@contextlib.contextmanager
def replacing(path, suffix: str = ""):
    """Yield a temporary path next to `path`; on success it is renamed to `path`, on failure removed.

    `suffix` keeps an extension some writers insist on (np.savez appends .npz otherwise).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_bytes(path, data: bytes) -> pathlib.Path:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return pathlib.Path(path)


def write_text(path, text: str) -> pathlib.Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent: int | None = 1) -> pathlib.Path:
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def new_folder(out):
    """Yield a hidden temporary folder that becomes `out` (absent or empty) when the block succeeds."""
    out = pathlib.Path(out)
    tmp = out.parent / f".{out.name}.writing-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if out.exists():
            out.rmdir()  # callers check that it is empty
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
