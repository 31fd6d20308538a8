"""One builder at a time per dataset folder, across processes that share a disk.

Several processes of one run (or runs of a sweep) may find a dataset missing
at the same moment; TFDS would then have two writers renaming the same
folder into place. A lock file next to the dataset (the `filelock` package)
makes the later ones wait, then find the dataset ready and reuse it.
"""
from __future__ import annotations

import contextlib
import logging
import pathlib
import time

import filelock

log = logging.getLogger(__name__)


@contextlib.contextmanager
def build_lock(data_dir, name: str):
    """Hold `data_dir/.{name}.lock` exclusively for the duration of the block."""
    data_dir = pathlib.Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(data_dir / f".{name}.lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        log.info("waiting for another process to finish building %s in %s", name, data_dir)
        start = time.time()
        lock.acquire()
        log.info("%s is ready after %.1f s", name, time.time() - start)
    try:
        yield
    finally:
        lock.release()
