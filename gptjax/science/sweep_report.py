"""A sweep's results: one row per run (markdown + CSV), plots, and scaling fits.

Rows are read from each run folder: ``config.json`` (the resolved experiment,
vocab_size filled), ``metrics.jsonl``, ``sweep_run.json`` / ``DONE`` /
``FAILED`` and ``train.log``; ``sweep.json`` at the sweep root lists the runs
(pending ones included) and the swept keys. CSV columns match the defaults of
``scripts/scaling.py``: ``loss`` (eval loss at the final step, done runs
only), ``params``, ``tokens``, ``flops``; ``params_non_embedding`` is Kaplan's N.
Runs evaluated with ``scripts/evaluate.py`` add a column per task and score
(``eval_transcribe.json`` -> ``transcribe_accuracy``, ``transcribe_wer``, ...),
so a sweep over held-out speakers or seeds reads as one table.
"""
from __future__ import annotations

import csv
import io
import pathlib
import re
import time
import types

from gptjax import atomic, plots
from gptjax.config.sweep import SEED_KEY, short_names
from gptjax.errors import ConfigError
from gptjax.model import flops as flops_lib
from gptjax.science.sweep_backends import DONE, FAILED, LOG, RECORD, attempt_alive, log_tail, read_json
from gptjax.train.metrics import read_metrics

MANIFEST = "sweep.json"
NUMERIC_COLUMNS = ("steps", "target_steps", "tokens", "params", "params_non_embedding", "flops", "loss",
                   "best_loss", "train_loss", "wall_s")
EVAL_SCORES = ("accuracy", "wer", "cer")
_EVAL_SUFFIXES = tuple(f"_{s}" for s in EVAL_SCORES)
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


# ---------------------------------------------------------------- reading runs

def run_status(workdir: pathlib.Path, target_steps: int | None, metrics: list) -> str:
    """done | running | interrupted | running/interrupted | failed | launched | pending."""
    if (workdir / DONE).exists() or any(
            "eval_loss" in m and m.get("step") == target_steps for m in metrics):
        return "done"
    if (workdir / FAILED).exists():
        return "failed"
    record = read_json(workdir / RECORD) or {}
    attempts = record.get("attempts") or []
    if attempts:
        last = attempts[-1]
        if last.get("end") is None:
            return "running" if attempt_alive(last) else "interrupted"
        if last.get("returncode") == 0 and record.get("launch_only"):
            return "launched"  # handed to a TPU VM; its metrics are where the VM writes them
        return "interrupted" if last.get("returncode", 0) < 0 else "failed"
    if metrics or (workdir / LOG).exists():
        return "running/interrupted"  # e.g. a slurm run: no local record of its process
    return "pending"


def wall_time(workdir: pathlib.Path) -> float | None:
    """Seconds across attempts from sweep_run.json, else first to last log timestamp."""
    attempts = (read_json(workdir / RECORD) or {}).get("attempts") or []
    if attempts:
        return sum((a.get("end") or time.time()) - a["start"] for a in attempts)
    stamps = []
    if (workdir / LOG).exists():
        for line in (workdir / LOG).read_text(errors="replace").splitlines():
            m = _LOG_TIME.match(line)
            if m:
                stamps.append(time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1e3)
    return stamps[-1] - stamps[0] if len(stamps) >= 2 else None


def curves(metrics: list) -> tuple[dict, dict]:
    """{step: train loss}, {step: eval loss}; a resumed run's repeated steps keep the latest value."""
    train, evals = {}, {}
    for m in metrics:
        if "loss" in m:
            train[m["step"]] = m["loss"]
        if "eval_loss" in m:
            evals[m["step"]] = m["eval_loss"]
    return dict(sorted(train.items())), dict(sorted(evals.items()))


def ema(values, alpha: float = 0.1) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else (1 - alpha) * acc + alpha * v
        out.append(acc)
    return out


def collect(root, convention: str = "6N+attn") -> tuple[dict, list[dict], dict]:
    """(manifest, rows, curves by run name) for a sweep folder."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise ConfigError(f"sweep folder {str(root)!r} not found; pass the --root of `scripts/sweep.py run`")
    if convention not in flops_lib.CONVENTIONS:
        raise ConfigError(f"FLOPs convention {convention!r}: choose from {', '.join(flops_lib.CONVENTIONS)}")
    manifest = read_json(root / MANIFEST) or {"name": root.name, "swept_keys": [], "runs": []}
    runs = {r["name"]: r for r in manifest["runs"]}
    for path in sorted(root.glob(f"*/{RECORD}")):  # runs of an older version of the sweep file
        record = read_json(path) or {}
        runs.setdefault(path.parent.name, {"name": path.parent.name, "swept": record.get("swept", {})})
    if not runs:
        raise ConfigError(f"{root} holds no sweep runs (no {MANIFEST} and no */{RECORD})")
    keys = list(manifest.get("swept_keys") or dict.fromkeys(k for r in runs.values() for k in r["swept"]))
    rows, all_curves = [], {}
    for name, run in runs.items():
        workdir = root / name
        config = read_json(workdir / "config.json")
        target = run.get("target_steps") or (config or {}).get("train", {}).get("steps")
        metrics = read_metrics(workdir)
        train, evals = curves(metrics)
        all_curves[name] = (train, evals)
        steps = max([s + 1 for s in train] + list(evals) + [0])
        row = {"name": name, "status": run_status(workdir, target, metrics)}
        row.update({k: run["swept"].get(k) for k in keys})
        row.update(steps=steps, target_steps=target, tokens=None, params=None, params_non_embedding=None,
                   flops=None, flops_convention=convention,
                   loss=evals.get(target) if row["status"] == "done" else None,
                   best_loss=min(evals.values()) if evals else None,
                   train_loss=ema(train.values())[-1] if train else None, wall_s=wall_time(workdir))
        if config:
            model = types.SimpleNamespace(**config["model"])
            seq_len, batch = int(model.max_seq_len), int(config["train"]["batch_size"])
            row["tokens"] = steps * batch * seq_len
            try:
                counts = flops_lib.param_counts(model)
                row.update(params=counts["total"], params_non_embedding=counts["non_embedding"],
                           flops=flops_lib.training_flops(model, seq_len, row["tokens"], convention))
            except (ValueError, AttributeError, TypeError):
                pass  # a config flops.py cannot count (e.g. multimodal): leave the columns empty
        row.update(eval_scores(workdir))
        if row["status"] in ("failed", "interrupted"):
            row["log_tail"] = log_tail(workdir)
        rows.append(row)
    eval_cols = sorted({k for r in rows for k in r if k.endswith(_EVAL_SUFFIXES)},
                       key=lambda k: (k.rsplit("_", 1)[0], EVAL_SCORES.index(k.rsplit("_", 1)[1])))
    return {**manifest, "swept_keys": keys, "eval_columns": eval_cols}, rows, all_curves


def eval_scores(workdir: pathlib.Path) -> dict:
    """{"<task>[_zero_media]_<score>": value} from the run's eval_*.json files (scripts/evaluate.py)."""
    scores = {}
    for path in sorted(workdir.glob("eval_*.json")):
        result = read_json(path)
        if not isinstance(result, dict):
            continue  # unreadable or not an evaluate.py result
        stem = path.stem[len("eval_"):]
        scores.update({f"{stem}_{k}": float(result[k]) for k in EVAL_SCORES
                       if isinstance(result.get(k), (int, float)) and not isinstance(result.get(k), bool)})
    return scores


# ---------------------------------------------------------------- table

def _fmt(key: str, v) -> str:
    if v is None:
        return ""
    if key in ("params", "params_non_embedding"):
        return f"{v / 1e6:.3f}M" if v >= 1e5 else f"{v / 1e3:.1f}k"
    if key in ("tokens", "flops"):
        return f"{v:.3g}"
    if key in ("loss", "best_loss", "train_loss"):
        return f"{v:.4f}"
    if key == "wall_s":
        return f"{v:.0f}s"
    if isinstance(v, float) and key.endswith(_EVAL_SUFFIXES):
        return f"{v:.3f}"
    return str(v)


def markdown(manifest: dict, rows: list[dict], convention: str) -> str:
    keys = manifest["swept_keys"]
    shorts = short_names(keys)
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    cols = ["status", *keys, "steps", "tokens", "params", "params_non_embedding", "flops", "loss", "best_loss",
            "train_loss", "wall_s", *manifest.get("eval_columns", [])]
    titles = {"params_non_embedding": "non-emb params", "flops": f"FLOPs ({convention})", "loss": "final eval",
              "best_loss": "best eval", "train_loss": "train (EMA)", "wall_s": "wall", "steps": "steps done"}
    titles.update({k: s if s not in cols and s not in titles.values() else k for k, s in shorts.items()})
    lines = [f"# Sweep {manifest.get('name', '')}", "",
             f"Base experiment: `{manifest.get('base', '?')}`. {len(rows)} runs: "
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".", "",
             f"FLOPs = training FLOPs per token under the **{convention}** convention (gptjax/model/flops.py) "
             "x tokens seen; tokens = steps x batch x seq_len. final eval = eval loss at the last step "
             "(done runs only); best eval = lowest eval loss seen; train (EMA) = smoothed train loss.", "",
             "| run | " + " | ".join(titles.get(c, c) for c in cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(_fmt(c, r.get(c)) for c in cols) + " |")
    means = []
    for c in manifest.get("eval_columns", []):
        values = [r[c] for r in rows if r.get(c) is not None]
        means.append(f"{c} {sum(values) / len(values):.3f} ({len(values)} runs, {min(values):.3f}-{max(values):.3f})")
    if means:
        lines += ["", "Evaluations (scripts/evaluate.py), mean over the runs that have them: " + "; ".join(means) + "."]
    for r in rows:
        if r.get("log_tail") is not None:
            lines += ["", f"## {r['status']}: {r['name']}", "", "Last lines of its train.log:", "", "```",
                      *r["log_tail"], "```"]
    return "\n".join(lines) + "\n"


def write_csv(path: pathlib.Path, manifest: dict, rows: list[dict]) -> None:
    cols = ["name", "status", *manifest["swept_keys"], *NUMERIC_COLUMNS, "flops_convention",
            *manifest.get("eval_columns", [])]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, cols, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: "" if r.get(c) is None else r[c] for c in cols})
    atomic.write_text(path, out.getvalue())


# ---------------------------------------------------------------- plots

def plot_axes(path: pathlib.Path, manifest: dict, rows: list[dict]) -> bool:
    """Final eval loss against each swept numeric axis but the seed; False when there is nothing to plot."""
    done = [r for r in rows if r["loss"] is not None]
    axes = [k for k in manifest["swept_keys"] if k != SEED_KEY
            and all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool) for r in done)
            and len({r[k] for r in done}) >= 2]
    if not done or not axes:
        return False
    plots.loss_by_axis(path, f"sweep {manifest.get('name', '')}: final eval loss by swept value",
                       {k: [r[k] for r in done] for k in axes}, [r["loss"] for r in done])
    return True


def plot_curves(path: pathlib.Path, all_curves: dict) -> bool:
    """Eval loss vs step and EMA-smoothed train loss vs step, one line per run."""
    if not any(train or evals for train, evals in all_curves.values()):
        return False
    plots.curves(path, all_curves, ema)
    return True


# ---------------------------------------------------------------- scaling fits

def scaling_fits(root: pathlib.Path, rows: list[dict], params_col: str = "params_non_embedding",
                 bootstrap: int = 200, seed: int = 0) -> dict:
    """Fit L = E + A / x^alpha in N (params_col) and C (flops) over done runs; plot both."""
    import numpy as np

    from gptjax.science.power_law import fit_power

    if params_col not in ("params", "params_non_embedding"):
        raise ConfigError(f"--params_col {params_col!r}: expected params or params_non_embedding")
    usable = [r for r in rows if r["loss"] and r[params_col] and r["flops"]]
    if len(usable) < 4:
        raise ConfigError(f"scaling fits need at least 4 done runs with params and FLOPs; have {len(usable)}")
    loss = np.array([r["loss"] for r in usable])
    fits = {}  # both fits before any plot: a refused fit leaves no figure behind
    for var, col, label in (("N", params_col, f"parameters N ({params_col})"),
                            ("C", "flops", f"training FLOPs C ({usable[0]['flops_convention']})")):
        x = np.array([float(r[col]) for r in usable])
        fits[var] = (col, label, x, fit_power(x, loss, variable=var, bootstrap=bootstrap, seed=seed))
    result = {}
    for var, (col, label, x, fit) in fits.items():
        out = root / f"scaling_{var}.png"
        plots.power_law(out, fit, x, loss, label)
        p = fit.to_dict()["params"]
        result[var] = {"column": col, "alpha": p["alpha"]["value"], "alpha_ci": p["alpha"]["ci"],
                       "E": p["E"]["value"], "A": p["A"]["value"], "r2_log": fit.r2_log,
                       "n_points": fit.n_points, "plot": str(out)}
    return result


def write_report(root, convention: str = "6N+attn") -> tuple[str, list[dict], list[pathlib.Path]]:
    """Write report.md, report.csv and the plots; return (markdown, rows, files written)."""
    root = pathlib.Path(root)
    manifest, rows, all_curves = collect(root, convention)
    text = markdown(manifest, rows, convention)
    written = [root / "report.md", root / "report.csv"]
    atomic.write_text(root / "report.md", text)
    write_csv(root / "report.csv", manifest, rows)
    if plot_axes(root / "loss_vs_axes.png", manifest, rows):
        written.append(root / "loss_vs_axes.png")
    if plot_curves(root / "curves.png", all_curves):
        written.append(root / "curves.png")
    return text, rows, written
