#!/usr/bin/env python
"""Build a text corpus as a TFDS array_record dataset, or train a SentencePiece model.

  python scripts/prepare_data.py --dataset tinyshakespeare [--files GLOB] [--data_dir DIR]
  python scripts/prepare_data.py --train_sentencepiece --vocab_size 4096 --out PREFIX \\
      [--dataset tinyshakespeare | --files GLOB] [--model_type bpe|unigram]

A dataset already built is reused, after reading back every record: a damaged
one exits 2 naming the folder to delete. The work is done by gptjax/data/prepare.py.
"""
import argparse
import sys

import _bootstrap  # noqa: F401

from gptjax.cli import main_guard
from gptjax.data import prepare


def parse_args(argv=None):
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
    return p.parse_args(argv)


@main_guard
def main(argv=None) -> int:
    return prepare.run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
