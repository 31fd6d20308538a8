#!/usr/bin/env python
"""Build a text corpus as a TFDS array_record dataset, or train a SentencePiece model.

  python scripts/prepare_data.py --dataset tinyshakespeare [--files GLOB] [--data_dir DIR]
  python scripts/prepare_data.py --train_sentencepiece --vocab_size 4096 --out PREFIX \\
      [--dataset tinyshakespeare | --files GLOB] [--model_type bpe|unigram]
"""
import argparse
import logging
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from gptjax.data import corpora, text_builder, tokenizers  # noqa: E402
from gptjax.data.corpora import DataError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="tinyshakespeare",
                   help="corpus name: tinyshakespeare, or a name for --files")
    p.add_argument("--files", default="",
                   help="text file, directory or glob (one document per file)")
    p.add_argument("--data_dir", default="",
                   help="TFDS data dir (default <cache>/tensorflow_datasets)")
    p.add_argument("--val_fraction", type=float, default=0.1)
    p.add_argument("--split_by", choices=("fraction", "files"), default="fraction")
    p.add_argument("--chunk_chars", type=int, default=2048)
    p.add_argument("--train_sentencepiece", action="store_true",
                   help="train a SentencePiece model on the corpus instead")
    p.add_argument("--vocab_size", type=int, default=4096)
    p.add_argument("--model_type", choices=("bpe", "unigram"), default="bpe")
    p.add_argument("--out", default="", help="output prefix of the SentencePiece model")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("absl",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.train_sentencepiece:
            return _train_sp(args)
        builder = text_builder.prepare_text_dataset(
            args.dataset, files=args.files, data_dir=args.data_dir, val_fraction=args.val_fraction,
            split_by=args.split_by, chunk_chars=args.chunk_chars)
    except (DataError, OSError, RuntimeError) as e:  # RuntimeError: sentencepiece trainer
        print(f"prepare_data: error: {e}", file=sys.stderr)
        return 2
    meta = dict(builder.info.metadata)
    print(f"dataset: {text_builder.BUILDER_NAME}/{builder.builder_config.name}  "
          f"source: {meta.get('source')}")
    for name, split in sorted(builder.info.splits.items()):
        chars = meta.get("num_chars", {}).get(name, "?")
        print(f"  {name:<11} {split.num_examples:>7} records  {chars:>9} chars")
    print(f"path: {builder.data_path}")
    return 0


def _train_sp(args) -> int:
    if not args.out:
        raise DataError("--train_sentencepiece needs --out PREFIX (writes PREFIX.model)")
    if args.vocab_size < 2:
        raise DataError(f"--vocab_size must be >= 2, got {args.vocab_size}")
    corpus = corpora.load_corpus(args.dataset, args.files)
    tok = tokenizers.train_sentencepiece(list(corpus.documents), args.out, args.vocab_size,
                                         args.model_type)
    print(f"sentencepiece {args.model_type}: vocab {tok.vocab_size}, trained on {corpus.source}"
          f" ({corpus.num_chars} chars) -> {args.out}.model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
