"""Run metrics: one JSON object per line in metrics.jsonl, and TensorBoard event files."""
from __future__ import annotations

import json
import math
import pathlib
import time


class MetricsWriter:
    """Writes scalars to `workdir/metrics.jsonl` and TensorBoard; a no-op when not `enabled`."""

    def __init__(self, workdir, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._file = open(self.path, "a", buffering=1)
        self._tb = SummaryWriter(str(workdir))

    def write(self, step: int, **scalars):
        if not self.enabled:
            return
        clean = {k: (float(v) if v is not None else None) for k, v in scalars.items()}
        record = {"step": int(step), **{k: v for k, v in clean.items() if v is not None}}
        self._file.write(json.dumps(record) + "\n")
        for key, value in clean.items():
            if value is not None and math.isfinite(value):
                self._tb.add_scalar(key, value, int(step))

    def close(self):
        if self.enabled:
            self._file.close()
            self._tb.close()


def read_metrics(workdir) -> list[dict]:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunLog:
    """What a run reports as it goes: metrics.jsonl + TensorBoard, a progress bar, messages.

    Step metrics stay on the device until `flush` fetches them in one transfer
    (waiting for those steps), passes each through `guards`, writes it and
    moves the bar. Only process 0 writes or prints.
    """

    def __init__(self, workdir, primary: bool, progress: bool, start: int, total: int, tokens_per_step: int,
                 guards, mfu=None):
        from tqdm import tqdm

        self.primary, self.guards, self.mfu = primary, guards, mfu
        self.writer = MetricsWriter(workdir, enabled=primary)
        self.bar = tqdm(total=total, initial=start, disable=not (progress and primary), dynamic_ncols=True,
                        desc="train")
        self.tokens_per_step, self.pending, self.losses = tokens_per_step, [], {}
        self.t_log = time.time()

    def say(self, message: str) -> None:
        if self.primary:
            self.bar.write(message) if not self.bar.disable else print(message, flush=True)

    def add(self, step: int, metrics) -> None:
        self.pending.append((step, metrics))

    def flush(self) -> None:
        """Fetch the pending steps' metrics (waits for them), apply the guards, write them."""
        if not self.pending:
            return
        import jax

        fetched = jax.device_get(self.pending)
        now = time.time()
        rate = len(fetched) * self.tokens_per_step / max(now - self.t_log, 1e-9)
        self.pending, self.t_log = [], now
        for s, m in fetched:
            self.losses[s] = float(m["loss"])
            spike = self.guards.spike(s, m)
            self.writer.write(s, loss=m["loss"], lr=m["lr"], grad_norm=m["grad_norm"], tokens_per_sec=rate,
                              mfu=self.mfu(rate) if self.mfu else None, skipped=None if m["finite"] else 1.0,
                              loss_spike=1.0 if spike else None, distill_kl=m.get("distill_kl"))
            self.guards.check(s, m)
        self.bar.update(len(fetched))
        self.bar.set_postfix(loss=f"{self.losses[fetched[-1][0]]:.4f}", tok_s=f"{rate:,.0f}")

    def evaluated(self, step: int, results: dict) -> None:
        self.writer.write(step, **results)
        self.say(f"step {step}: eval loss {results['eval_loss']:.4f}")
        self.t_log = time.time()  # evaluation time is not training throughput

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
