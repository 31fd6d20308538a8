"""Experiments as data: overrides are type-checked, bad ones exit 2 and write nothing."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from gptjax import config
from gptjax.config import Experiment, apply_overrides, load_experiment
from gptjax.errors import ConfigError
from gptjax.train.optim import build_schedule

ROOT = pathlib.Path(__file__).resolve().parents[1]
REQUIRED_KEYS = ["train.steps", "train.batch_size", "train.seed", "train.eval_every", "train.checkpoint_every",
                 "model.n_layer", "model.n_head", "model.d_model", "model.max_seq_len", "schedule.peak_lr",
                 "mesh.data", "mesh.fsdp", "mesh.tensor"]


def test_documented_keys_exist():
    keys = config.valid_keys()
    for key in REQUIRED_KEYS:
        assert key in keys


def test_overrides_are_parsed_to_field_types():
    exp = apply_overrides(Experiment(), ["model.d_model=128", "schedule.peak_lr=3e-4", "model.scan_layers=true",
                                         "data.files=a b.txt", "mesh.data=-1"])
    assert exp.model.d_model == 128 and isinstance(exp.model.d_model, int)
    assert exp.schedule.peak_lr == 3e-4
    assert exp.model.scan_layers is True
    assert exp.data.files == "a b.txt"


@pytest.mark.parametrize("override,fragment", [
    ("model.d_modl=3", "model.d_model"),  # unknown key: lists the valid ones
    ("nosuch.key=1", "train.steps"),
    ("model.n_layer=2.5", "expected an int"),
    ("schedule.peak_lr=fast", "expected a float"),
    ("model.scan_layers=maybe", "expected a bool"),
    ("model=3", "is a section"),
    ("train.steps", "key=value"),
])
def test_bad_overrides_name_what_is_accepted(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        apply_overrides(Experiment(), [override])


@pytest.mark.parametrize("override,fragment", [
    ("model.n_head=5", "not divisible by model.n_head"),
    ("model.flavour=bert", "gpt2"),
    ("train.batch_size=0", "positive"),
    ("model.dropout=1.5", "dropout"),
    ("mesh.data=0", "mesh.data"),
])
def test_impossible_shapes_are_refused(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        apply_overrides(Experiment(), [override]).validate()


def test_config_json_round_trips():
    exp = load_experiment(ROOT / "experiments" / "llama_1b.py")
    again = config.from_dict(Experiment, json.loads(exp.to_json()))
    assert again == exp


def test_every_shipped_experiment_loads_and_validates(monkeypatch, tmp_path):
    # validation checks that a data folder is named, not that it holds data
    monkeypatch.setenv("GPTJAX_DATA_DIR", os.environ.get("GPTJAX_DATA_DIR") or str(tmp_path))
    for path in sorted((ROOT / "experiments").glob("*.py")):
        if "EXPERIMENT" not in path.read_text():  # sweep files name a base experiment instead
            continue
        exp = load_experiment(path)
        exp.validate()
        assert exp.name == path.stem  # runs and sweep tables are named after the file


def test_every_shipped_sweep_plans(monkeypatch, tmp_path):
    """Each sweep file loads, finds its base experiment and validates every run it expands to."""
    from gptjax.config.sweep import load_sweep, plan

    monkeypatch.setenv("GPTJAX_DATA_DIR", os.environ.get("GPTJAX_DATA_DIR") or str(tmp_path))
    files = sorted((ROOT / "experiments" / "sweeps").glob("*.py"))
    assert files
    for path in files:
        runs = plan(*load_sweep(path))
        assert runs and len({r.name for r in runs}) == len(runs), path
    speakers = plan(*load_sweep(ROOT / "experiments" / "sweeps" / "spoken_digits_speakers.py"))
    assert sorted(r.experiment.data.test_speakers for r in speakers) == [
        "george", "jackson", "nicolas", "theo", "yweweler"]


def test_experiment_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("EXPERIMENT = (\n")
    with pytest.raises(ConfigError, match="syntax error"):
        load_experiment(bad)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="EXPERIMENT"):
        load_experiment(empty)


@pytest.mark.parametrize("args", [
    ["--set", "model.d_modl=3"],
    ["--set", "train.steps=many"],
    ["--set", "model.n_head=5"],
])
def test_cli_exits_2_and_writes_nothing(tmp_path, args):
    workdir = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"),
                           str(ROOT / "experiments" / "shakespeare_char_cpu.py"), "--workdir", str(workdir), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ")
    assert not workdir.exists()


def test_cli_unknown_experiment_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), str(tmp_path / "nope.py"),
                           "--workdir", str(tmp_path / "w")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_schedules_shape():
    warm = build_schedule(config.Schedule("warmup_cosine", peak_lr=1.0, warmup_steps=10, end_lr=0.1), 100)
    assert float(warm(0)) == 0.0 and abs(float(warm(10)) - 1.0) < 1e-6 and abs(float(warm(100)) - 0.1) < 1e-6
    wsd = build_schedule(config.Schedule("wsd", peak_lr=1.0, warmup_steps=10, end_lr=0.0, decay_fraction=0.2), 100)
    assert abs(float(wsd(50)) - 1.0) < 1e-6 and abs(float(wsd(79)) - 1.0) < 1e-6 and float(wsd(100)) < 1e-6
    const = build_schedule(config.Schedule("constant", peak_lr=0.5, warmup_steps=0), 100)
    assert float(const(0)) == 0.5 == float(const(99))


def test_cli_refuses_a_url_workdir(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"),
                           str(ROOT / "experiments" / "shakespeare_char_cpu.py"), "--workdir", "gs://bucket/run"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "gcsfuse" in proc.stderr
    assert not any(tmp_path.iterdir())  # no local "gs:" folder
