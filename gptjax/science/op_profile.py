"""Where a compiled step's time goes: a jax.profiler trace of a few calls, summed per kind of XLA op.

The trace is written as Perfetto JSON (`create_perfetto_trace=True`) and read back here: XProf's
own viewer does this and more, but is a separate install and a browser; the benchmark wants a few
shares in its JSON. Only the XLA ops count (the Python, dispatch and profiler frames are left out),
so the shares are of the device's op time, not of the wall time.
"""
from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re
import tempfile

import jax

_NOT_OPS = ("$", "thunkexecutor", "pjitfunction", "commonpjrt", "parsearguments", "handle inputs",
            "allocateoutput", "end: ")
# first match wins: matmuls before the fusions that mention what they feed
_KINDS = (("matmul", ("dot", "convolution")), ("non-finite guard", ("is-finite",)),
          ("gelu", ("tanh", "erf")), ("softmax", ("exponential", "softmax")),
          ("copy/transpose", ("copy", "transpose")), ("reduction", ("reduce",)))


def op_kind(name: str) -> str:
    n = name.lower()
    for kind, marks in _KINDS:
        if any(m in n for m in marks):
            return kind
    return "other element-wise"


def op_times_us(trace_events) -> collections.Counter:
    """Total microseconds per XLA op family (the name without its `.N` suffixes)."""
    times = collections.Counter()
    for e in trace_events:
        if e.get("ph") != "X" or "dur" not in e or str(e.get("name", "")).lower().startswith(_NOT_OPS):
            continue
        times[re.sub(r"(\.\d+)+$", "", e["name"])] += e["dur"]
    return times


def profile_calls(fn, args_fn, calls: int = 2) -> dict:
    """Trace `calls` runs of `fn(*args_fn())` (after one untraced warm-up); op-kind shares and the top families."""
    out = fn(*args_fn())
    jax.block_until_ready(out)
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(calls):
                out = fn(*args_fn())
            jax.block_until_ready(out)
        path = next(pathlib.Path(tmp).rglob("perfetto_trace.json.gz"))
        trace = json.loads(gzip.decompress(path.read_bytes()))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    times = op_times_us(events)
    total = sum(times.values()) or 1
    kinds = collections.Counter()
    for name, us in times.items():
        kinds[op_kind(name)] += us
    return {"op_ms_per_call": round(total / calls / 1e3, 2),
            "op_share_by_kind": {k: round(v / total, 3) for k, v in kinds.most_common()},
            "top_ops_ms_per_call": {n: round(us / calls / 1e3, 2) for n, us in times.most_common(8)}}
