"""Run metrics: one JSON object per line in metrics.jsonl, and TensorBoard event files."""
from __future__ import annotations

import json
import math
import pathlib


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
