"""What our own TFDS builders share: where they write, how they build once, how they stay quiet.

Our datasets (text corpora, digits, spoken digits) are built on this machine
from local or generated data and written as array_record. `LocalBuilder`
is their base class; `build_local` builds one at most once per data dir,
even when several processes ask at the same moment (a file lock, see
gptjax/data/build_lock.py), and reuses it afterwards.
"""
from __future__ import annotations

import logging
import pathlib

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from gptjax.data import corpora
from gptjax.data.build_lock import build_lock

# TFDS draws a progress bar per split and logs a warning per per-corpus config; our builds are
# small and say what they do in our own log lines
tfds.disable_progress_bar()


def default_data_dir() -> pathlib.Path:
    """Where our TFDS datasets are built unless told otherwise."""
    return corpora.cache_dir() / "tensorflow_datasets"


class LocalDatasetInfo(tfds.core.DatasetInfo):
    """DatasetInfo of a dataset only we build: never looked up on TFDS's GCS bucket.

    TFDS's own lookup runs for every builder of a dataset not yet prepared; it
    leaves an empty temporary folder behind each time, and asks the network.
    """

    def initialize_from_bucket(self) -> None:
        return None


class LocalBuilder(tfds.core.GeneratorBasedBuilder):
    """Base of our builders: configs are made per call, info is never fetched, records keep their order."""

    BUILDER_CONFIGS: list = []  # made per dataset by the prepare functions

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9's default probes `importlib_resources`, a backport package it
        # does not install on Python >= 3.9; the answer is the builder's own file
        import sys

        return epath.Path(sys.modules[cls.__module__].__file__)

    def local_info(self, description: str, features: dict, **kwargs) -> tfds.core.DatasetInfo:
        return LocalDatasetInfo(builder=self, description=description,
                                features=tfds.features.FeaturesDict(features), disable_shuffling=True, **kwargs)


def quiet(fn):
    """Run `fn` with absl's chatter (a warning for every per-corpus config) held back."""
    absl_log = logging.getLogger("absl")
    was_level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        return fn()
    finally:
        absl_log.setLevel(was_level)


def make_builder(cls, config, data_dir, **kwargs):
    return quiet(lambda: cls(config=config, data_dir=str(data_dir), file_format="array_record", **kwargs))


def prepare(builder) -> None:
    """Write the builder's array_record files (never asking TFDS's GCS bucket for them)."""
    quiet(lambda: builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)))


def build_local(cls, config, data_dir="", lock: str = "", **kwargs):
    """The builder of `cls` for `config` in `data_dir`, prepared (once) if it was not yet."""
    directory = pathlib.Path(data_dir or default_data_dir())
    with build_lock(directory, lock or f"{cls.name}_{config.name}"):
        builder = make_builder(cls, config, directory, **kwargs)
        if not builder.data_path.exists():
            prepare(builder)
    return builder
