"""The benchmark runs the real training step and reports honest figures."""
import json
import pathlib
import subprocess
import sys

from gptjax.config import apply_overrides, load_experiment
from gptjax.science.bench import bench_step

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "model.max_seq_len=16", "train.batch_size=4"]


def test_bench_step_reports_throughput_and_omits_cpu_mfu():
    exp = apply_overrides(load_experiment(ROOT / "experiments" / "shakespeare_char_cpu.py"), TINY)
    r = bench_step(exp, steps=3, warmup=1, repeats=2)
    assert r["tokens_per_sec"] > 0 and r["step_ms_min"] <= r["step_ms_median"] <= r["step_ms_max"]
    assert r["mfu"] is None  # the CPU's peak is unknown: never invented
    assert r["flops_per_token"] > 6 * r["params"] * 0.5
    assert r["peak_memory_bytes"] is None or r["peak_memory_bytes"] > 0


def run_bench_cli(*flags) -> dict:
    sets = [a for kv in TINY for a in ("--set", kv)]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--experiment",
                           str(ROOT / "experiments" / "shakespeare_char_cpu.py"), *sets, "--steps", "2",
                           "--repeats", "1", *flags], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_bench_cli_compare_prints_a_ratio():
    out = run_bench_cli("--compare")
    assert out["reference"]["attention"] == "naive"
    assert abs(out["speedup"] - out["run"]["tokens_per_sec"] / out["reference"]["tokens_per_sec"]) < 1e-2


def test_torch_reference_is_the_same_model():
    torch = __import__("pytest").importorskip("torch")
    from gptjax.model import flops
    from gptjax.science.bench_torch import _model

    exp = apply_overrides(load_experiment(ROOT / "experiments" / "shakespeare_char.py"),
                          ["model.vocab_size=65"])
    n_torch = sum(p.numel() for p in _model(exp.model).parameters())
    assert n_torch == flops.param_counts(exp.model)["total"] == 10_745_088
    assert torch.get_num_threads() >= 1


def test_bench_cli_torch_prints_the_ratio():
    __import__("pytest").importorskip("torch")
    out = run_bench_cli("--torch")
    assert out["torch"]["framework"].startswith("torch")
    assert abs(out["vs_torch"] - out["tokens_per_sec"] / out["torch"]["tokens_per_sec"]) < 1e-2
