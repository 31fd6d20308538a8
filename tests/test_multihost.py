"""Several processes: two CPU processes of two devices each train like one process of four.

The pair (jax.distributed on localhost, gloo collectives) trains the CPU
experiment on mesh 4x1x1 (each process owns half of every batch) and 1x1x4 (the
batch is replicated over a tensor axis that spans both processes, so both must
load all of it); a single 4-device process is the reference. Also: the
multi-host pieces that need no cluster (environment detection, argument
checks, the TPU VM launcher's dry run, the SLURM template).
"""
import os
import pathlib
import shlex
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers.jobs import Job, run_jobs  # noqa: E402
HELPER = ROOT / "tests" / "helpers" / "run_train.py"
EXPERIMENT = ROOT / "experiments" / "shakespeare_char_cpu.py"
OVERRIDES = ["model.n_layer=2", "train.batch_size=16", "train.steps=4", "model.dtype=float32",
             "model.param_dtype=float32", "train.eval_every=1000", "train.eval_batches=1",
             "train.log_every=2", "train.sample_tokens=0"]
STEPS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def job(devices, meshes, workdir, out, sets, cache, extra=()) -> Job:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
               GPTJAX_CACHE_DIR=str(cache))
    cmd = [sys.executable, str(HELPER), str(EXPERIMENT), "--workdir", str(workdir), "--out", str(out),
           "--record", *[a for m in meshes for a in ("--mesh", m)], *[a for o in sets for a in ("--set", o)],
           *extra]
    return Job(cmd, env, log=pathlib.Path(f"{out}.log"), out=out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus_overrides, text_corpus):
    tmp = tmp_path_factory.mktemp("multihost")
    sets = OVERRIDES + corpus_overrides
    # build the dataset once: three processes preparing it into one empty cache at once would take turns
    subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "--dataset", "generated",
                    "--files", str(text_corpus)],
                   env=dict(os.environ, GPTJAX_CACHE_DIR=str(tmp / "cache")), check=True, capture_output=True,
                   timeout=300)
    coordinator = f"localhost:{free_port()}"
    pair = [job(2, ["4x1x1", "1x1x4"], tmp / "two", f"{tmp / 'two.json'}.p{i}", sets, tmp / "cache",
                ["--coordinator", coordinator, "--num_processes", "2", "--process_id", str(i)])
            for i in range(2)]
    *two, one = run_jobs(pair + [job(4, ["4x1x1"], tmp / "one", tmp / "one.json", sets, tmp / "cache")])
    return {"two": two, "one": one, "tmp": tmp}


@pytest.mark.slow
def test_two_processes_train_like_one(runs):
    reference = runs["one"]["4x1x1"]["losses"]
    assert sorted(reference, key=int) == [str(s) for s in range(STEPS)]
    for mesh in ("4x1x1", "1x1x4"):
        for proc in runs["two"]:
            assert proc[mesh]["process_count"] == 2 and proc[mesh]["device_count"] == 4
            got = proc[mesh]["losses"]
            for step, loss in reference.items():
                assert got[step] == pytest.approx(loss, rel=1e-5), (mesh, proc["4x1x1"]["process_index"], step)


@pytest.mark.slow
def test_each_process_reads_a_disjoint_half_of_every_batch(runs):
    one = runs["one"]["4x1x1"]["inputs_read"]
    p0, p1 = (r["4x1x1"]["inputs_read"] for r in runs["two"])
    assert len(one) == len(p0) == len(p1) == STEPS
    for step in range(STEPS):
        assert len(p0[step]) == len(p1[step]) == 8 and len(one[step]) == 16
        assert not {tuple(r) for r in p0[step]} & {tuple(r) for r in p1[step]}
        assert p0[step] + p1[step] == one[step]  # process order = row order of the global batch


@pytest.mark.slow
def test_processes_sharing_a_tensor_group_read_the_same_rows(runs):
    one = runs["one"]["4x1x1"]["inputs_read"]
    p0, p1 = (r["1x1x4"]["inputs_read"] for r in runs["two"])
    for step in range(STEPS):
        assert p0[step] == p1[step] == one[step]


@pytest.mark.slow
def test_parameters_span_both_processes(runs):
    for proc in runs["two"]:
        qkv = proc["1x1x4"]["params"]["['h_0']['attn']['qkv_kernel']"]
        assert qkv["n_devices"] == 4 and qkv["spec"] == ["fsdp", None, "tensor", None]
        assert qkv["shard_shapes"] == [[128, 3, 1, 32]]  # 4 heads over tensor=4; this process holds 2


@pytest.mark.slow
def test_two_process_checkpoint_restores_in_one_process(runs):
    """The pair's checkpoint (each process wrote its shards) loads on one device, equal to the reference."""
    from gptjax.train.restore import load_run

    _, params_two, _ = load_run(runs["tmp"] / "two" / "4x1x1")
    exp, params_one, tokenizer = load_run(runs["tmp"] / "one" / "4x1x1")
    assert tokenizer.vocab_size == 65 and exp.mesh.data == 4
    import jax

    flat_two = dict(jax.tree_util.tree_leaves_with_path(params_two))
    for path, leaf in jax.tree_util.tree_leaves_with_path(params_one):
        assert len(leaf.sharding.device_set) == 1
        np.testing.assert_allclose(np.asarray(flat_two[path]), np.asarray(leaf), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- no cluster needed

@pytest.mark.parametrize("env, expected", [
    ({}, ""),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16", "SLURM_PROCID": "0"}, ""),  # the batch script itself
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16", "SLURM_STEP_NUM_TASKS": "16", "SLURM_PROCID": "3"}, "slurm"),
    ({"OMPI_COMM_WORLD_SIZE": "4"}, "mpi"),
    ({"TPU_WORKER_HOSTNAMES": "w-0,w-1"}, "tpu"),
    ({"TPU_WORKER_HOSTNAMES": "w-0"}, ""),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     "explicit-env"),
])
def test_detect_multi_process_environment(monkeypatch, env, expected):
    from gptjax.parallel import distributed

    for key in list(os.environ):
        if key.startswith(("SLURM_", "OMPI_", "TPU_", "JAX_COORDINATOR", "JAX_NUM_PROC", "JAX_PROCESS")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert distributed.detect() == expected


@pytest.mark.parametrize("args, message", [
    (("localhost", 2, 0), "expected host:port"),
    (("localhost:1234", 0, 0), "--num_processes >= 1"),
    (("localhost:1234", 2, 2), r"--process_id=2 must be in \[0, 2\)"),
    (("", 2, 0), "need --coordinator host:port"),
])
def test_initialize_refuses_bad_arguments_before_starting(args, message):
    from gptjax.errors import ConfigError
    from gptjax.parallel import distributed

    with pytest.raises(ConfigError, match=message):
        distributed.initialize(*args)


def load_script(name):
    """A scripts/ entry point as a module (they import _bootstrap from their folder)."""
    import importlib.util

    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_bad_process_id_exits_2(tmp_path, capsys):
    train = load_script("train")
    with pytest.raises(SystemExit) as exit_:
        train.main([str(EXPERIMENT), "--workdir", str(tmp_path / "run"), "--coordinator", "localhost:1234",
                    "--num_processes", "2", "--process_id", "5"])
    assert exit_.value.code == 2 and "--process_id=5 must be in [0, 2)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- launchers

LAUNCH = ["--name", "lm-v5p", "--zone", "us-east5-a", "--accelerator_type", "v5p-16", "--project", "my-proj",
          "--experiment", str(ROOT / "experiments" / "gpt2_124m.py"), "--workdir", "gs://my-bucket/runs/gpt2",
          "--set", "train.steps=1000", "--set", "mesh.data=-1"]


def launch(capsys, *extra) -> tuple[int, str, str]:
    """Run the launcher's dry run in-process: (exit status, stdout, stderr)."""
    launcher = load_script("launch_tpu_vm")
    code = 0
    try:
        launcher.main(LAUNCH + list(extra) + ["--dry_run"])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tpu_launcher_dry_run_prints_gcloud_commands(capsys):
    code, stdout, stderr = launch(capsys, "--spot")
    assert code == 0, stderr
    commands = [shlex.split(line) for line in stdout.splitlines()]
    assert all(c[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] for c in commands), stdout
    verbs = [c[4] for c in commands]
    assert verbs == ["describe", "create", "scp", "ssh", "ssh"]
    for c in commands:
        assert "--zone=us-east5-a" in c and "--project=my-proj" in c
        assert c[5] == "lm-v5p" or (c[4] == "scp" and c[6] == "lm-v5p:~/gptjax.tar.gz")
    create = commands[1]
    assert "--accelerator-type=v5p-16" in create and "--version=v2-alpha-tpuv5" in create and "--spot" in create
    assert "--worker=all" in commands[2]
    setup, train = (dict(a.split("=", 1) for a in c if a.startswith("--"))["--command"] for c in commands[3:])
    assert all("--worker=all" in c for c in commands[3:])
    assert "-r ~/gptjax/requirements.txt" in setup and "jax[tpu]==0.10.2" in setup
    assert "gcsfuse --implicit-dirs my-bucket /tmp/gcs/my-bucket" in setup
    train_args = shlex.split(train.split("&&", 1)[1])
    assert train_args[train_args.index("--workdir") + 1] == "/tmp/gcs/my-bucket/runs/gpt2"
    assert "experiments/gpt2_124m.py" in train_args and "--coordinator" in train_args
    assert train_args.count("--set") == 2 and "mesh.data=-1" in train_args


def test_tpu_launcher_refuses_bad_input_before_any_command(capsys):
    code, stdout, stderr = launch(capsys, "--set", "mesh.tensor=3")  # 8 devices: a tensor axis of 3 won't fit
    assert code == 2 and "mesh" in stderr and not stdout
    code, stdout, stderr = launch(capsys, "--accelerator_type", "v5x-16")
    assert code == 2 and "accelerator_type" in stderr and not stdout
    code, stdout, stderr = launch(capsys, "--set", "model.n_head=5")  # 12 heads: d_model 768 % 5
    assert code == 2 and "model.n_head" in stderr and not stdout


def test_slurm_template_is_valid_bash_and_runs_one_process_per_gpu():
    path = ROOT / "scripts" / "slurm" / "train.sbatch"
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    text = path.read_text()
    directives = dict(line.split()[1].lstrip("-").split("=", 1) for line in text.splitlines()
                      if line.startswith("#SBATCH --") and "=" in line.split()[1])
    assert directives["ntasks-per-node"] == directives["gpus-per-node"]
    assert "srun" in text and "scripts/train.py" in text
