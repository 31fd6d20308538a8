"""Sharding over a device mesh, on 8 virtual CPU devices.

The same experiment trains to the same losses on meshes 8x1x1 (data), 1x8x1
(FSDP), 2x2x2 (data x FSDP x tensor) and 1x1x1; parameters and optimizer state
are really split (read from the arrays' shards); a checkpoint written on 2x2x2
resumes on 8x1x1 and 1x1x1 with the same next losses; meshes that do not divide
the model or batch are refused before compiling; the dry run reports per-device
memory and shardings.

Runs needing several devices are subprocesses (tests/helpers/run_train.py):
the device count is fixed when JAX starts, and this process has one. They share
a persistent compilation cache, so a resumed run reuses the first run's compile.
They train on the generated corpus (its char vocabulary is tiny Shakespeare's 65).
"""
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers.jobs import Job, run_jobs  # noqa: E402
HELPER = ROOT / "tests" / "helpers" / "run_train.py"
EXPERIMENT = ROOT / "experiments" / "shakespeare_char_cpu.py"
# the CPU experiment, smaller and shorter: 2 layers, batch 16 (divides 8 devices), fp32
OVERRIDES = ["model.n_layer=2", "train.batch_size=16", "train.steps=20", "model.dtype=float32",
             "model.param_dtype=float32", "train.eval_every=1000", "train.eval_batches=1",
             "train.checkpoint_every=10", "train.log_every=5", "train.sample_tokens=0"]
MESHES_8 = ("8x1x1", "1x8x1", "2x2x2")
E, H, D, F, V = 128, 4, 32, 512, 65  # d_model, heads, head dim, MLP hidden, char vocab


def env_for(devices: int, cache_dir: pathlib.Path) -> dict:
    env = dict(os.environ, GPTJAX_CACHE_DIR=str(cache_dir / "gptjax"))
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def job(devices: int, meshes, workdir, out, cache_dir, sets, extra=()) -> Job:
    cmd = [sys.executable, str(HELPER), str(EXPERIMENT), "--workdir", str(workdir), "--out", str(out)]
    cmd += [a for m in meshes for a in ("--mesh", m)] + [a for o in sets for a in ("--set", o)] + list(extra)
    return Job(cmd, env_for(devices, cache_dir), log=pathlib.Path(f"{out}.log"), out=out)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A compilation cache for this file's subprocesses: identical programs compile once (and the
    gptjax cache, where the corpus is built)."""
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def sets(corpus_overrides):
    return OVERRIDES + corpus_overrides


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sets, cache):
    """First 20 steps on four meshes; then the 2x2x2 step-10 checkpoint resumed on 8x1x1 and 1x1x1."""
    tmp = tmp_path_factory.mktemp("sharding")
    r8, r1 = run_jobs([job(8, MESHES_8, tmp / "runs", tmp / "r8.json", cache, sets),
                       job(1, ["1x1x1"], tmp / "runs", tmp / "r1.json", cache, sets)])
    results = {**r8, **r1}

    # resume from the 2x2x2 run's step-10 checkpoint on other meshes, for two steps
    resumed = tmp / "resumed"
    for mesh in ("8x1x1", "1x1x1"):
        shutil.copytree(tmp / "runs" / "2x2x2", resumed / mesh)
        shutil.rmtree(resumed / mesh / "checkpoints" / "20")
        (resumed / mesh / "metrics.jsonl").unlink()
    c8, c1 = run_jobs([job(8, ["8x1x1"], resumed, tmp / "c8.json", cache, sets, ["--stop_after", "12"]),
                       job(1, ["1x1x1"], resumed, tmp / "c1.json", cache, sets, ["--stop_after", "12"])])
    return results, {**c8, **c1}


def losses(run) -> list[float]:
    return [run["losses"][str(s)] for s in range(len(run["losses"]))]


@pytest.mark.slow
def test_losses_agree_on_every_mesh(runs):
    results, _ = runs
    reference = losses(results["1x1x1"])
    assert len(reference) == 20
    assert reference[-1] < reference[0] - 0.5  # it trains
    for mesh in MESHES_8:
        got = losses(results[mesh])
        worst = max(abs(a - b) / abs(b) for a, b in zip(got, reference))
        assert worst < 1e-4, f"mesh {mesh}: losses differ from 1x1x1 by {worst:.2e} relative"


def shards(run, tree, name):
    leaf = run[tree][name]
    return leaf["shape"], [tuple(s) for s in leaf["shard_shapes"]], leaf["n_devices"]


@pytest.mark.slow
def test_data_parallel_replicates_parameters(runs):
    run = runs[0]["8x1x1"]
    assert run["device_count"] == 8
    for name, leaf in run["params"].items():
        assert [tuple(s) for s in leaf["shard_shapes"]] == [tuple(leaf["shape"])], name


@pytest.mark.slow
def test_fsdp_splits_embed_axis_of_params_and_optimizer_state(runs):
    run = runs[0]["1x8x1"]
    assert shards(run, "params", "['wte']['embedding']") == ([V, E], [(V, E // 8)], 8)
    assert shards(run, "params", "['h_0']['mlp']['wi']['weight']") == ([F, E], [(F, E // 8)], 8)
    assert shards(run, "params", "['h_1']['attn']['out_kernel']") == ([H, D, E], [(H, D, E // 8)], 8)
    # Adam's moments are split exactly like their parameters
    for moment in ("mu", "nu"):
        for name, leaf in run["params"].items():
            state = next(v for k, v in run["opt_state"].items() if k.endswith(f".{moment}{name}"))
            assert state["shard_shapes"] == leaf["shard_shapes"] and state["spec"] == leaf["spec"], name


@pytest.mark.slow
def test_tensor_parallel_splits_heads_and_mlp(runs):
    run = runs[0]["2x2x2"]
    # qkv [E, 3, H, D]: embed over fsdp, heads over tensor
    assert shards(run, "params", "['h_0']['attn']['qkv_kernel']") == (
        [E, 3, H, D], [(E // 2, 3, H // 2, D)], 8)
    assert run["params"]["['h_0']['attn']['qkv_kernel']"]["spec"] == ["fsdp", None, "tensor", None]
    assert shards(run, "params", "['h_0']['mlp']['wi']['weight']") == ([F, E], [(F // 2, E // 2)], 8)
    assert shards(run, "params", "['h_0']['mlp']['wo']['weight']") == ([E, F], [(E // 2, F // 2)], 8)
    mu = next(v for k, v in run["opt_state"].items() if k.endswith(".mu['h_0']['attn']['qkv_kernel']"))
    assert [tuple(s) for s in mu["shard_shapes"]] == [(E // 2, 3, H // 2, D)]


@pytest.mark.slow
def test_checkpoint_from_2x2x2_resumes_on_other_meshes(runs):
    results, resumes = runs
    original = results["2x2x2"]["losses"]
    for mesh in ("8x1x1", "1x1x1"):
        got = resumes[mesh]["losses"]
        assert sorted(got) == ["10", "11"], f"{mesh} did not resume at step 10: {sorted(got)}"
        for step in ("10", "11"):  # step 11 also needs the restored optimizer state
            assert got[step] == pytest.approx(original[step], rel=1e-5), (mesh, step)
    assert resumes["1x1x1"]["params"]["['h_0']['attn']['qkv_kernel']"]["n_devices"] == 1
    assert resumes["8x1x1"]["params"]["['h_0']['attn']['qkv_kernel']"]["n_devices"] == 8


# ---------------------------------------------------------------- refusals, before compiling

def test_check_divisible_names_dimension_and_axis():
    from jax.sharding import AbstractMesh

    from gptjax.config import apply_overrides, load_experiment
    from gptjax.errors import ConfigError
    from gptjax.parallel.mesh import MESH_AXES, check_divisible

    exp = load_experiment(EXPERIMENT)
    heads3 = apply_overrides(exp, ["model.n_head=3", "model.d_model=96", "train.batch_size=16"])
    with pytest.raises(ConfigError, match=r"model\.n_head=3 .*mesh\.tensor=2"):
        check_divisible(heads3, AbstractMesh((2, 2, 2), MESH_AXES))
    batch12 = apply_overrides(exp, ["train.batch_size=12"])
    with pytest.raises(ConfigError, match=r"train\.batch_size=12.*data x fsdp = 4x2 = 8"):
        check_divisible(batch12, AbstractMesh((4, 2, 1), MESH_AXES))
    check_divisible(apply_overrides(exp, ["train.batch_size=16"]), AbstractMesh((4, 2, 1), MESH_AXES))


def run_cli(args, devices, cache):
    env = env_for(devices, cache)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), str(EXPERIMENT), *args],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("overrides, devices, message", [
    (["model.n_head=3", "model.d_model=96", "train.batch_size=16", "mesh.data=-1", "mesh.tensor=2"], 2,
     r"model\.n_head=3 is not divisible by mesh\.tensor=2"),
    (["train.batch_size=6", "mesh.data=4"], 4,
     r"train\.batch_size=6 .*not divisible by mesh data x fsdp = 4x1 = 4"),
])
@pytest.mark.parametrize("dry_run", [False, True])
def test_cli_refuses_indivisible_mesh(tmp_path, corpus_overrides, cache, overrides, devices, message, dry_run):
    workdir = tmp_path / "run"
    args = ["--workdir", str(workdir)] + [a for o in overrides + corpus_overrides for a in ("--set", o)]
    proc = run_cli(args + (["--dry_run"] if dry_run else []), devices, cache)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert re.search(message, proc.stderr), proc.stderr[-2000:]
    assert not workdir.exists()


# ---------------------------------------------------------------- one process, several CPU devices

@pytest.mark.slow
def test_cpu_devices_split_one_process_into_data_parallel_devices(tmp_path, sets, cache):
    """mesh.cpu_devices (2 in the CPU experiment) gives one process a 2-device data mesh, with the
    losses of a 1-device run up to summation order; a device count in XLA_FLAGS wins."""
    def train(name, extra=(), xla_flags=None):
        env = env_for(1, cache)
        env.pop("XLA_FLAGS") if xla_flags is None else env.update(XLA_FLAGS=xla_flags)
        args = [a for o in sets + ["train.steps=6", "train.log_every=1", *extra] for a in ("--set", o)]
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), str(EXPERIMENT), "--workdir",
                               str(tmp_path / name), "--no_progress", *args],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        mesh = re.search(r"mesh \{'data': (\d+),", proc.stderr)
        losses = [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
                  if "loss" in json.loads(line)]
        return int(mesh[1]), losses

    split, split_losses = train("split")
    one, one_losses = train("one", ["mesh.cpu_devices=0"])
    user, _ = train("user", xla_flags="--xla_force_host_platform_device_count=1")
    assert (split, one, user) == (2, 1, 1)
    assert len(split_losses) == 6
    np.testing.assert_allclose(split_losses, one_losses, rtol=2e-5)


# ---------------------------------------------------------------- dry run

@pytest.mark.slow
def test_dry_run_reports_memory_and_shardings(sets, cache):
    """No XLA_FLAGS: the dry run itself creates the 8 CPU devices the mesh asks for.

    (Same program as the 2x2x2 training run above: its compile comes from the cache.)
    """
    env = env_for(8, cache)
    env.pop("XLA_FLAGS")
    args = ["--dry_run"] + [a for o in sets + ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]
                            for a in ("--set", o)]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), str(EXPERIMENT), *args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout[proc.stdout.index("dry run:"):]
    assert "mesh data=2 x fsdp=2 x tensor=2 (8 cpu devices)" in out
    assert "vocab_size 65" in out
    units = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    memory = {m[1]: float(m[2]) * units[m[3]] for m in re.finditer(
        r"^  (parameters|optimizer state|batch|activations|total)\s+([\d.]+) (B|KiB|MiB|GiB)", out, re.M)}
    assert len(memory) == 5, out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    params = 4 * (V * E + 64 * E + E + 2 * (E * 3 * H * D + H * D * E + E * F + F * E + 2 * E))
    assert memory["parameters"] < params / 3  # matrices split four ways (fsdp x tensor), embeddings two
    assert memory["optimizer state"] == pytest.approx(2 * memory["parameters"], rel=0.02)  # Adam: mu, nu
    assert memory["activations"] > 0 and "memory_analysis" in lines["activations"]
    qkv = next(line for name, line in lines.items() if "qkv_kernel" in name)
    assert "(embed,stack,heads,kv) -> (fsdp,-,tensor,-)" in qkv and "shard 64x3x2x32" in qkv
    wte = next(line for name, line in lines.items() if "wte" in name)
    assert "shard 65x64" in wte


def test_dry_run_assumes_vocab_when_data_is_missing(tmp_path):
    from gptjax.config import TextData, load_experiment
    from gptjax.train.dry_run import ASSUMED_VOCAB, resolve_vocab

    exp = load_experiment(EXPERIMENT)
    missing = dataclasses.replace(exp, data=TextData("text", files=str(tmp_path / "nothing" / "*.txt")))
    vocab, source = resolve_vocab(missing)
    assert vocab == ASSUMED_VOCAB and source.startswith("ASSUMED") and "model.vocab_size" in source
    byte = dataclasses.replace(exp, data=TextData("text", files=str(tmp_path / "x.txt"), tokenizer="byte"))
    assert resolve_vocab(byte) == (257, "byte tokenizer")
