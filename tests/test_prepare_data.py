"""scripts/prepare_data.py: a dataset reused from disk is read back, and a damaged one is refused."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "prepare_data.py"


def prepare(tmp_path, *args):
    env = {**os.environ, "GPTJAX_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture
def built(tmp_path):
    """A small corpus built once: (command arguments, dataset folder)."""
    (tmp_path / "d").mkdir()
    for i in range(3):
        (tmp_path / "d" / f"f{i}.txt").write_text(f"line {i} of the notes\n" * 200)
    args = ["--dataset", "notes", "--files", str(tmp_path / "d" / "*.txt")]
    first = prepare(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    folder = pathlib.Path(first.stdout.split("path: ")[1].strip())
    assert folder.is_dir() and "train" in first.stdout
    return args, folder


def _flip(path: pathlib.Path, start: int, n: int) -> None:
    data = bytearray(path.read_bytes())
    data[start:start + n] = bytes(b ^ 0xFF for b in data[start:start + n])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped bytes", "truncated"])
def test_a_corrupt_dataset_is_refused_with_the_folder_to_delete(tmp_path, built, damage):
    args, folder = built
    train = next(folder.glob("*-train.array_record-*"))
    if damage == "flipped bytes":
        _flip(train, 200, 60)
    else:
        train.write_bytes(train.read_bytes()[:5000])
    proc = prepare(tmp_path, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "records" not in proc.stdout  # no counts reported for data that cannot be read
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: corrupt array_record data in ") and str(folder) in last
    assert "Delete that dataset folder" in last

    # the advice works: without the folder the dataset is built again and reads back whole
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    again = prepare(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert "validation" in again.stdout and train.exists()


def test_an_intact_dataset_is_reused(tmp_path, built):
    args, folder = built
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    proc = prepare(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert f"path: {folder}" in proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp  # not rebuilt
