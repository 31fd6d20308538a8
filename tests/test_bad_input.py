"""Bad input and damaged state, as a careless user meets them: each case runs the real script and
checks its exit status, the words of its one-line message, that no Python traceback is shown, and that
what existed before (the finished run, the prepared dataset) is byte for byte as it was."""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from helpers.tmpfs import Tmpfs, rerun_in_mount_namespace

pytestmark = pytest.mark.slow  # every case runs a script on a trained run

ROOT = pathlib.Path(__file__).resolve().parents[1]
E = "experiments/shakespeare_char_cpu.py"
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have "
         "an they you were her she there been one all we their when what no out up so said would").split()


def tiny(corpus) -> list[str]:
    """Overrides that make the CPU experiment a 6-step run on the generated corpus."""
    return [f"--set={kv}" for kv in ("data.dataset=text", f"data.files={corpus}", "train.steps=6",
                                     "train.checkpoint_every=3", "train.eval_every=3", "train.eval_batches=2",
                                     "model.n_layer=1", "model.bias=true", "train.sample_tokens=8",
                                     "mesh.cpu_devices=1")]


def tree_hash(path: pathlib.Path) -> str:
    """Names and contents of everything under `path` (absent: its own marker)."""
    if not path.exists():
        return "absent"
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A generated corpus, a prepared dataset and a finished 6-step run W (checkpoints at 3 and 6)."""
    root = tmp_path_factory.mktemp("bad_input")
    rng = __import__("random").Random(0)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
                                for _ in range(4000)) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "GPTJAX_DATA_DIR"}
    env.update(GPTJAX_CACHE_DIR=str(root / "cache"), JAX_PLATFORMS="cpu")
    world = {"root": root, "corpus": corpus, "env": env, "run": root / "W", "data": root / "tfds"}
    for args in ([sys.executable, "scripts/train.py", E, "--workdir", str(root / "W"), "--no_progress",
                  *tiny(corpus)],
                 [sys.executable, "scripts/prepare_data.py", "--dataset", "mytext", "--files", str(corpus),
                  "--data_dir", str(root / "tfds")]):
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (root / "W" / "checkpoints").iterdir()) == ["3", "6"]
    return world


@pytest.fixture
def case(world, tmp_path):
    """A fresh copy of the finished run (W) for one case, and a runner for the scripts."""
    run = tmp_path / "W"
    shutil.copytree(world["run"], run)

    def script(name, *args):
        return subprocess.run([sys.executable, f"scripts/{name}", *map(str, args)], cwd=ROOT, env=world["env"],
                              capture_output=True, text=True, timeout=600)
    return {**world, "run": run, "tmp": tmp_path, "script": script}


def check_refused(proc, status: int, *words):
    """Exit `status`, one `error:` line holding `words`, and no traceback."""
    assert proc.returncode == status, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-2000:]
    for word in words:
        assert word in last, last


# (name, extra --set overrides, words of the message): each refused with exit 2 before anything is written
BAD_SETTINGS = [
    ("keep_zero", ["train.steps=9", "train.keep_checkpoints=0"], ["train.keep_checkpoints=0", "1 or more"]),
    ("keep_negative", ["train.keep_checkpoints=-1"], ["train.keep_checkpoints=-1"]),
    ("end_lr", ["schedule.end_lr=-1"], ["schedule.end_lr=-1"]),
    ("warmup", ["schedule.warmup_steps=-10"], ["schedule.warmup_steps=-10", "0 or more"]),
    ("b1", ["optimizer.b1=1.5"], ["optimizer.b1=1.5", "[0, 1)"]),
    ("clip", ["optimizer.clip_norm=-1"], ["optimizer.clip_norm=-1"]),
    ("spike", ["train.spike_sigmas=-1"], ["train.spike_sigmas=-1"]),
    ("sample_tokens", ["train.sample_tokens=-5"], ["train.sample_tokens=-5"]),
    ("peak_lr", ["schedule.peak_lr=-1"], ["schedule.peak_lr=-1", "positive"]),
    ("peak_lr_nan", ["schedule.peak_lr=nan"], ["schedule.peak_lr=nan", "finite"]),
    ("eval_every", ["train.eval_every=0"], ["train.eval_every=0", "positive"]),
    ("d_ff", ["model.d_ff=-1"], ["model.d_ff=-1"]),
]


@pytest.mark.parametrize("overrides, words", [c[1:] for c in BAD_SETTINGS], ids=[c[0] for c in BAD_SETTINGS])
def test_bad_settings_are_refused_before_anything_changes(case, overrides, words):
    before = tree_hash(case["run"])
    proc = case["script"]("train.py", E, "--workdir", case["run"], *tiny(case["corpus"]),
                          *[f"--set={o}" for o in overrides])
    check_refused(proc, 2, *words)
    assert tree_hash(case["run"]) == before


def test_a_finished_run_rerun_says_so_and_changes_nothing(case):
    before = tree_hash(case["run"])
    for extra in ([], ["--set=train.steps=3"]):
        proc = case["script"]("train.py", E, "--workdir", case["run"], "--no_progress", *tiny(case["corpus"]), *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "already at step 6 of" in proc.stdout
        assert tree_hash(case["run"]) == before
    sampled = case["script"]("sample.py", "--workdir", case["run"], "--max_new_tokens", 5)
    assert sampled.returncode == 0 and "sample 0" in sampled.stdout, sampled.stderr[-2000:]


@pytest.mark.parametrize("where", ["missing", "other_shape", "partial"])
def test_init_from_must_fit_unless_partial_is_asked(case, where):
    new = case["tmp"] / "new"
    source = case["tmp"] / "nothing_here" if where == "missing" else case["run"]
    shape = {"missing": [], "other_shape": ["--set=model.d_model=64"], "partial": ["--set=model.n_layer=2"]}[where]
    before = tree_hash(case["run"])
    proc = case["script"]("train.py", E, "--workdir", new, *tiny(case["corpus"]), *shape,
                          f"--set=train.init_from={source}")
    words = {"missing": ["not a run folder"], "other_shape": ["parameter arrays match", "different architectures"],
             "partial": ["parameter arrays match", "train.init_from_partial=true"]}[where]
    check_refused(proc, 2, f"train.init_from={source}", *words)
    assert not new.exists() and not (case["tmp"] / "nothing_here").exists()
    assert tree_hash(case["run"]) == before
    if where == "partial":
        ok = case["script"]("train.py", E, "--workdir", new, "--no_progress", *tiny(case["corpus"]), *shape,
                            f"--set=train.init_from={source}", "--set=train.init_from_partial=true")
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert "initialising" in ok.stderr and "from scratch: ['h_1']" in ok.stderr


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_a_workdir_that_cannot_be_a_folder_is_refused(case, kind):
    blocker = case["tmp"] / "a_file"
    blocker.write_text("not a folder")
    workdir = blocker if kind == "file" else blocker / "run"
    proc = case["script"]("train.py", E, "--workdir", workdir, *tiny(case["corpus"]))
    check_refused(proc, 2, "--workdir", "is a file")
    assert blocker.read_text() == "not a folder"


def test_a_read_only_workdir_is_refused(case, request):
    if rerun_in_mount_namespace(request, case["tmp"], case["env"]):
        return
    with Tmpfs(case["tmp"] / "ro", 1 << 20) as disk:
        disk.read_only()
        proc = case["script"]("train.py", E, "--workdir", disk.path / "run", *tiny(case["corpus"]))
        check_refused(proc, 2, "not writable")


def damage(run: pathlib.Path, step: int) -> None:
    """Truncate every data file of a checkpoint step (what a full disk or a killed copy leaves)."""
    for f in (run / "checkpoints" / str(step) / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:10])


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(case):
    damage(case["run"], 6)
    before = tree_hash(case["run"])
    sampled = case["script"]("sample.py", "--workdir", case["run"], "--max_new_tokens", 5)
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    assert "step 6" in sampled.stderr and "cannot be read" in sampled.stderr and "restored step 3" in sampled.stderr
    assert tree_hash(case["run"]) == before  # sampling only reads
    damaged = tree_hash(case["run"] / "checkpoints" / "6")
    resumed = case["script"]("train.py", E, "--workdir", case["run"], "--no_progress", *tiny(case["corpus"]))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step 3" in resumed.stderr and "done: 6 steps" in resumed.stdout
    kept = list((case["run"] / "damaged_checkpoints").glob("*/6"))
    assert len(kept) == 1 and tree_hash(kept[0]) == damaged  # set aside, not deleted


def test_no_readable_checkpoint_is_an_error_naming_the_folder(case):
    damage(case["run"], 6)
    damage(case["run"], 3)
    before = tree_hash(case["run"])
    proc = case["script"]("sample.py", "--workdir", case["run"])
    check_refused(proc, 2, "no checkpoint in", "can be read", "[6, 3]")
    assert tree_hash(case["run"]) == before


def test_a_corrupt_tokenizer_is_an_error(case):
    (case["run"] / "tokenizer" / "tokenizer.json").write_text("{not json")
    proc = case["script"]("sample.py", "--workdir", case["run"])
    check_refused(proc, 2, "tokenizer", "cannot be read")


@pytest.mark.parametrize("overrides, words", [
    (["data.tokenizer=sentencepiece", "data.sp_vocab_size=5"], ["SentencePiece training failed"]),
    (["data.tokenizer=sentencepiece", "data.sp_model=/no/such.model"], ["data.sp_model=/no/such.model"]),
], ids=["sp_vocab_too_small", "sp_model_missing"])
def test_tokenizer_settings_that_cannot_work_are_refused(case, overrides, words):
    new = case["tmp"] / "new"
    proc = case["script"]("train.py", E, "--workdir", new, *tiny(case["corpus"]), *[f"--set={o}" for o in overrides])
    check_refused(proc, 2, *words)
    assert not new.exists()


@pytest.mark.parametrize("args, words", [
    (["--steps", "-3"], ["--steps=-3"]), (["--steps", "0"], ["--steps=0"]), (["--repeats", "0"], ["--repeats=0"]),
    (["--vocab_size", "-5"], ["--vocab_size=-5"]), (["--loss_share", "1.5"], ["--loss_share=1.5", "(0, 1]"])],
    ids=["steps_negative", "steps_zero", "repeats", "vocab", "loss_share"])
def test_bench_refuses_counts_that_measure_nothing(case, args, words):
    proc = case["script"]("bench.py", "--experiment", E, *args)
    check_refused(proc, 2, *words)


@pytest.mark.parametrize("args, words", [
    (["--chunk_chars", "0"], ["chunk_chars=0"]), (["--chunk_chars", "-4"], ["chunk_chars=-4"]),
    (["--val_fraction", "1.5"], ["val_fraction=1.5", "(0, 1)"])], ids=["chunk_zero", "chunk_negative", "val"])
def test_prepare_data_refuses_settings_before_touching_the_dataset(case, args, words):
    before = tree_hash(case["data"])
    proc = case["script"]("prepare_data.py", "--dataset", "mytext", "--files", case["corpus"], "--data_dir",
                          case["data"], *args)
    check_refused(proc, 2, *words)
    assert tree_hash(case["data"]) == before


def test_convert_refuses_a_truncated_safetensors_file(case):
    hf = case["tmp"] / "hf"
    exported = case["script"]("convert.py", "export", "--workdir", case["run"], "--to", "hf", "--out", hf)
    assert exported.returncode == 0, exported.stderr[-3000:]
    weights = hf / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out = case["tmp"] / "imported"
    proc = case["script"]("convert.py", "import", "--from", "hf", "--dir", hf, "--out", out)
    check_refused(proc, 2, "model.safetensors")
    assert not out.exists()


@pytest.mark.parametrize("grid", ["float('nan')", "float('inf')"])
def test_sweeps_refuse_non_finite_values(case, grid):
    sweep = case["tmp"] / "sweep.py"
    sweep.write_text(f"from gptjax.config import Sweep\nSWEEP = Sweep(base={str(ROOT / E)!r}, "
                     f"grid={{'schedule.peak_lr': [1e-3, {grid}]}})\n")
    proc = case["script"]("sweep.py", "run", sweep, "--root", case["tmp"] / "root", "--dry_run")
    check_refused(proc, 2, "finite")
    assert not (case["tmp"] / "root").exists()


def test_a_sweep_root_that_is_a_file_is_refused(case):
    sweep = case["tmp"] / "sweep.py"
    sweep.write_text(f"from gptjax.config import Sweep\nSWEEP = Sweep(base={str(ROOT / E)!r}, "
                     "grid={'schedule.peak_lr': [1e-3, 2e-3]})\n")
    blocker = case["tmp"] / "root"
    blocker.write_text("x")
    proc = case["script"]("sweep.py", "run", sweep, "--root", blocker)
    check_refused(proc, 2, "--root")
    assert blocker.read_text() == "x"


def test_evaluate_prints_its_scores_before_a_failed_write(case):
    run = case["tmp"] / "digits"
    trained = case["script"]("train.py", "experiments/digits_caption.py", "--workdir", run, "--no_progress",
                             *[f"--set={kv}" for kv in ("train.steps=4", "train.eval_every=4", "train.eval_batches=1",
                                                        "train.checkpoint_every=4", "model.n_layer=1",
                                                        f"data.data_dir={case['tmp'] / 'tfds'}")])
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run / "eval_caption.json").mkdir()  # a folder where the results file goes: the write must fail
    proc = case["script"]("evaluate.py", "--workdir", run, "--task", "caption", "--limit", 8, "--batch_size", 8)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    scores = json.loads(proc.stdout)
    assert scores["examples"] == 8 and 0 <= scores["accuracy"] <= 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "writing the results" in proc.stderr.strip().splitlines()[-1]
