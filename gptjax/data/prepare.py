"""The work of scripts/prepare_data.py: build (or reuse) a text corpus as an array_record dataset and
read it back, or train a SentencePiece model on a corpus."""
from __future__ import annotations

import logging

from gptjax.data import corpora, text_builder, tokenizers
from gptjax.errors import DataError


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)
    if args.train_sentencepiece:
        return train_sentencepiece(args)
    builder = text_builder.prepare_text_dataset(
        args.dataset, files=args.files, data_dir=args.data_dir, val_fraction=args.val_fraction,
        split_by=args.split_by, chunk_chars=args.chunk_chars)
    check_readable(builder)
    meta = dict(builder.info.metadata)
    print(f"dataset: {text_builder.BUILDER_NAME}/{builder.builder_config.name}  source: {meta.get('source')}")
    for name, split in sorted(builder.info.splits.items()):
        chars = meta.get("num_chars", {}).get(name, "?")
        print(f"  {name:<11} {split.num_examples:>7} records  {chars:>9} chars")
    print(f"path: {builder.data_path}")
    return 0


def check_readable(builder) -> None:
    """Read every record of every split: a dataset reused from disk may be damaged since it was built, and
    its metadata (the record counts printed) would not show it."""
    try:
        sources = builder.as_data_source()
        for source in sources.values():
            text_builder.read_documents(source)
    except DataError:
        raise  # read_documents names the folder and what to do
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        raise DataError(f"the dataset in {builder.data_path} cannot be read ({type(e).__name__}: {e}). Delete "
                        "that dataset folder and run scripts/prepare_data.py again") from None


def train_sentencepiece(args) -> int:
    if not args.out:
        raise DataError("--train_sentencepiece needs --out PREFIX (writes PREFIX.model)")
    if args.vocab_size < 2:
        raise DataError(f"--vocab_size={args.vocab_size}: expected an integer >= 2")
    corpus = corpora.load_corpus(args.dataset, args.files)
    try:
        tok = tokenizers.train_sentencepiece(list(corpus.documents), args.out, args.vocab_size, args.model_type)
    except (ValueError, RuntimeError) as e:  # the trainer refuses settings this corpus cannot meet
        raise DataError(str(e)) from None
    print(f"sentencepiece {args.model_type}: vocab {tok.vocab_size}, trained on {corpus.source}"
          f" ({corpus.num_chars} chars) -> {args.out}.model")
    return 0
