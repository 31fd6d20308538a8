"""What keeps a run safe: preemption signals, non-finite steps, loss spikes.

(Failed saves: gptjax/train/checkpoint.py, Saver.)
"""
from __future__ import annotations

import logging
import math
import signal

import jax
import numpy as np

from gptjax.errors import NonFiniteError

log = logging.getLogger(__name__)

# exit status of a run that stopped for preemption after saving: rerun the same command
EXIT_PREEMPTED = 75


class PreemptionWatch:
    """SIGTERM (and JAX's preemption notice on TPU VMs) asks the loop to save and stop.

    Every process must stop at the same step: with several processes the flag
    is agreed on by an all-gather at each step boundary.
    """

    def __init__(self):
        self.requested = False
        self._previous = {}
        for sig in (signal.SIGTERM,):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass

    def _handle(self, signum, frame):
        self.requested = True

    def should_stop(self, step: int) -> bool:
        stop = self.requested
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            try:
                stop = stop or multihost_utils.reached_preemption_sync_point(step)
            except Exception:  # noqa: BLE001 - the preemption service is optional
                pass
            stop = bool(np.any(multihost_utils.process_allgather(np.array(stop))))
        return stop

    def close(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def nonfinite_leaves(finite_tree) -> list[str]:
    """Names of the parameters whose gradients were not finite."""
    return [jax.tree_util.keystr(path) for path, ok in jax.tree_util.tree_leaves_with_path(finite_tree)
            if not bool(ok)]


class NonFinitePolicy:
    """`stop`: raise with a report at the first bad step. `skip`: the step leaves the
    state unchanged (done inside the jitted step); stop after `max_skips` in a row."""

    def __init__(self, policy: str, max_skips: int, last_checkpoint):
        self.policy, self.max_skips = policy, max_skips
        self.last_checkpoint = last_checkpoint  # callable -> step or None
        self.in_a_row = 0
        self.total = 0

    def observe(self, step: int, metrics) -> None:
        if bool(metrics["finite"]):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.total += 1
        bad = nonfinite_leaves(metrics["grads_finite"])
        where = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "") or "none (the loss itself)"
        report = (f"non-finite loss or gradients at step {step} (loss={float(metrics['loss'])}); "
                  f"parameters with non-finite gradients: {where}; "
                  f"last good checkpoint: step {self.last_checkpoint()}")
        if self.policy == "stop":
            raise NonFiniteError(report + ". Lower schedule.peak_lr, or set train.nonfinite=skip")
        log.warning("skipped update: %s (%d in a row, %d in all)", report, self.in_a_row, self.total)
        if self.in_a_row >= self.max_skips:
            raise NonFiniteError(f"{self.in_a_row} non-finite steps in a row (train.max_skips="
                                 f"{self.max_skips}); last: {report}")


class SpikeDetector:
    """Flags a loss far above its recent running mean (exponential mean and variance)."""

    def __init__(self, sigmas: float, decay: float = 0.99, warmup: int = 50):
        self.sigmas, self.decay, self.warmup = sigmas, decay, warmup
        self.mean = self.var = None
        self.seen = 0

    def observe(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return False
        if self.mean is None:
            self.mean, self.var = loss, 0.0
        spike = (self.sigmas > 0 and self.seen >= self.warmup
                 and loss > self.mean + self.sigmas * math.sqrt(self.var) + 1e-3)
        if not spike:  # keep spikes out of the statistics
            delta = loss - self.mean
            self.mean += (1 - self.decay) * delta
            self.var = self.decay * (self.var + (1 - self.decay) * delta * delta)
        self.seen += 1
        return spike


class Guards:
    """The checks every fetched step passes: non-finite policy and loss-spike detection."""

    def __init__(self, train_cfg, last_checkpoint):
        self.nonfinite = NonFinitePolicy(train_cfg.nonfinite, train_cfg.max_skips, last_checkpoint)
        self.spikes = SpikeDetector(train_cfg.spike_sigmas)

    def spike(self, step: int, metrics) -> bool:
        """Whether this step's loss is a spike (logged as a warning)."""
        loss = float(metrics["loss"])
        spike = self.spikes.observe(loss)
        if spike:
            log.warning("loss spike at step %d: %.4f (running mean %.4f)", step, loss, self.spikes.mean)
        return spike

    def check(self, step: int, metrics) -> None:
        """Apply the non-finite policy (after the step's metrics are written: the report points at them)."""
        self.nonfinite.observe(step, metrics)
