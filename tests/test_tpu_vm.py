"""scripts/launch_tpu_vm.py refuses a flag that cannot work before any VM or file exists."""
import pathlib
import shlex
import subprocess
import sys

import pytest

from gptjax.errors import ConfigError
from gptjax.parallel.tpu_vm import check_name, gcs_bucket, parse_accelerator

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "launch_tpu_vm.py"


def launch(tmp_path, **flags):
    args = {"name": "lm-v5p", "zone": "us-east5-a", "accelerator_type": "v5p-8",
            "experiment": str(ROOT / "experiments" / "shakespeare_char_cpu.py"), "workdir": str(tmp_path / "run"),
            **flags}
    cmd = [sys.executable, str(SCRIPT), *[a for k, v in args.items() for a in (f"--{k}", v)], "--dry_run"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)


@pytest.mark.parametrize("flag, value, words", [
    ("accelerator_type", "v5p-3", ["not a v5p slice", "8, 16, 32, 64 or a multiple of 128", "TensorCores"]),
    ("accelerator_type", "v4-96", ["not a v4 slice", "a multiple of 128"]),
    ("accelerator_type", "v6e-2", ["not a v6e slice", "1, 4, 8, 16", "chips"]),
    ("accelerator_type", "v5x-16", ["expected GENERATION-SIZE", "v5p-16"]),
    ("workdir", "s3://bucket/runs/a", ["expected gs://BUCKET/path", "s3:// URLs cannot be mounted"]),
    ("workdir", "https://example.com/run", ["expected gs://BUCKET/path", "https:// URLs"]),
    ("name", "My_TPU!", ["lowercase letter first", "digits or hyphens", "63 characters"]),
    ("name", "tpu-", ["not ending in a hyphen"]),
    ("name", "7-tpu", ["lowercase letter first"]),
    ("name", "a" * 64, ["at most 63 characters"]),
])
def test_bad_flags_exit_2_with_one_line_and_create_nothing(tmp_path, flag, value, words):
    before = sorted(tmp_path.iterdir())
    proc = launch(tmp_path, **{flag: value})
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # no gcloud command printed, let alone run
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --{flag}={value!r}"), proc.stderr
    for w in words:
        assert w in lines[0]
    assert sorted(tmp_path.iterdir()) == before


def test_good_flags_print_the_gcloud_commands(tmp_path):
    proc = launch(tmp_path, name="a" * 62 + "1", accelerator_type="v5p-8")
    assert proc.returncode == 0, proc.stderr
    verbs = [shlex.split(line)[4] for line in proc.stdout.splitlines()]
    assert verbs == ["describe", "create", "scp", "ssh", "ssh"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("accelerator, expected", [
    ("v5p-8", ("v5p", 8, 4, 1)), ("v5p-384", ("v5p", 384, 192, 48)), ("v4-64", ("v4", 64, 32, 8)),
    ("v3-32", ("v3", 32, 32, 4)), ("v5litepod-1", ("v5litepod", 1, 1, 1)), ("v6e-16", ("v6e", 16, 16, 4)),
])
def test_real_slices_are_accepted(accelerator, expected):
    assert parse_accelerator(accelerator) == expected


def test_names_and_workdirs_that_gcp_accepts_pass():
    for name in ("a", "gpt2-v5p-16", "x" * 63):
        check_name(name)
    assert gcs_bucket("gs://my-bucket/runs/a") == "my-bucket" and gcs_bucket("/mnt/shared/run") == ""
    with pytest.raises(ConfigError, match="--name"):
        check_name("x" * 64)
