"""What every data object a run reads shares: per-process row blocks, capped eval batches, grain reads.

A data object (TextLMData, MediaLMData) offers `train_batches(global_batch,
start_step, process_index, process_count)` and `eval_batches(global_batch,
num_batches, ...)`. Process p of P gets the contiguous rows p*B/P .. (p+1)*B/P - 1
of each global batch, so stacking the processes' batches in process order gives
the global batch (what `jax.make_array_from_process_local_data` does).
"""
from __future__ import annotations

import logging
from typing import Iterator

import grain

from gptjax.errors import DataError

log = logging.getLogger(__name__)


class BatchSource:
    """Base of the data objects: see the module docstring."""

    num_threads: int = 1  # grain read threads; batches are built `prefetch` ahead of the trainer
    prefetch: int = 4
    _warned_eval_cap: bool = False

    @staticmethod
    def local_batch(global_batch: int, process_index: int, process_count: int) -> int:
        if process_count < 1 or not 0 <= process_index < process_count:
            raise DataError(f"process_index {process_index} must be in [0, {process_count})")
        if global_batch < 1 or global_batch % process_count:
            raise DataError(f"global_batch {global_batch} must be a positive multiple of process_count "
                            f"{process_count}")
        return global_batch // process_count

    def eval_count(self, global_batch: int, num_batches: int | None, available: int, holds: str) -> int:
        """How many eval batches to read: `num_batches` (all when None) capped at the `available` ones.

        `holds` says what the eval split holds, for the messages ("the test split holds 40 examples").
        """
        if available == 0:
            raise DataError(f"{holds}, fewer than one batch of {global_batch}")
        if num_batches is not None and num_batches > available and not self._warned_eval_cap:
            log.warning("eval: %d batches of %d asked; %s: using all %d", num_batches, global_batch, holds,
                        available)
            self._warned_eval_cap = True  # once: evaluation runs many times per run
        return available if num_batches is None else min(num_batches, available)

    def read(self, dataset: grain.MapDataset) -> Iterator:
        """Iterate a grain dataset with this object's threads and prefetch."""
        options = grain.ReadOptions(num_threads=self.num_threads,
                                    prefetch_buffer_size=self.prefetch if self.num_threads else 0)
        return iter(dataset.to_iter_dataset(options))
