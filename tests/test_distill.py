"""Knowledge distillation: the KL term, alpha=0 is plain training bit for bit, a student equal to its
teacher at temperature 1 has nothing to learn, the teacher's soft targets pull the student toward it, the
task experiments distil too, and a teacher that reads other tokens is refused before anything is written."""
import json
import pathlib
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.train.step import Distill, distill_loss, kl_divergence
from helpers.tiny_runs import experiment, tiny_world

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def test_kl_divergence_is_the_softened_kl_over_the_mask():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(2, 3, 5)) * 3, rng.normal(size=(2, 3, 5)) * 3
    mask = np.array([[1, 1, 0], [1, 0, 1]])

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    for temp in (1.0, 2.5):
        p, q = softmax(t / temp), softmax(s / temp)
        expected = np.sum(np.sum(p * (np.log(p) - np.log(q)), -1) * mask)
        assert float(kl_divergence(jnp.asarray(t), jnp.asarray(s), jnp.asarray(mask), temp)) == pytest.approx(
            expected, rel=1e-5)
    assert float(kl_divergence(jnp.asarray(t), jnp.asarray(t), jnp.asarray(mask), 1.0)) == 0.0


# ------------------------------------------------------------------ runs

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root, text = tiny_world(tmp_path_factory, "distill")
    from gptjax.train.loop import run

    run(experiment(text, steps=20, n_layer=2, d_model=48), root / "teacher", progress=False)
    return {"root": root, "text": text, "teacher": root / "teacher", "run": run}


def metrics(workdir):
    """The training steps' records of metrics.jsonl (evaluations left out)."""
    return [m for m in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines()) if "loss" in m]


def bits_of(params):
    return [np.asarray(x).view(np.uint32) for x in jax.tree.leaves(params)]


@pytest.mark.slow
def test_alpha_zero_is_plain_training_bit_for_bit(world):
    run, text, root = world["run"], world["text"], world["root"]
    plain = run(experiment(text, steps=3), root / "plain", progress=False)
    zero = run(experiment(text, steps=3, train={"distill_from": str(world["teacher"]), "distill_alpha": 0.0}),
               root / "alpha0", progress=False)
    assert [m["loss"] for m in metrics(root / "plain")] == [m["loss"] for m in metrics(root / "alpha0")]
    assert all(m["distill_kl"] > 0 for m in metrics(root / "alpha0") if "distill_kl" in m)  # the teacher did run
    for a, b in zip(bits_of(plain.state.params), bits_of(zero.state.params)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_student_equal_to_its_teacher_at_temperature_one_has_zero_kl(world):
    from gptjax.model.transformer import Transformer
    from gptjax.train.restore import load_run

    run, text, root = world["run"], world["text"], world["root"]
    exp, params, tok = load_run(world["teacher"])
    model = Transformer(exp.model)
    ids = jnp.asarray([tok.encode("the cat was here and there")[:9]], jnp.int32)
    batch = {"inputs": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": jnp.ones((1, 8), jnp.float32)}
    loss, (count, kl) = distill_loss(params, params, batch, model, Distill(model, 1.0, 1.0), None)
    assert float(kl) == 0.0 and float(loss) == 0.0 and float(count) == 8
    # the same inside the jitted step: a copy of the teacher as its own student (dropout off) starts at KL 0
    run(experiment(text, steps=1, n_layer=2, d_model=48, train={
        "distill_from": str(world["teacher"]), "distill_temperature": 1.0, "init_from": str(world["teacher"])}),
        root / "copy", progress=False)
    assert abs(metrics(root / "copy")[0]["distill_kl"]) < 1e-6


@pytest.mark.slow
def test_soft_targets_pull_the_student_toward_the_teacher(world):
    run, text, root = world["run"], world["text"], world["root"]
    run(experiment(text, steps=12, train={"distill_from": str(world["teacher"]), "distill_alpha": 1.0,
                                          "distill_temperature": 1.0}), root / "alpha1", progress=False)
    kl = [m["distill_kl"] for m in metrics(root / "alpha1") if "distill_kl" in m]
    assert len(kl) == 12 and np.mean(kl[-3:]) < 0.7 * np.mean(kl[:3])


@pytest.mark.slow
def test_task_experiments_distil(world, tmp_path):
    from gptjax.config import TaskData

    run = world["run"]
    folder = tmp_path / "task"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 400), ("validation", 40)):
        with open(folder / f"{name}.jsonl", "w") as f:
            for _ in range(n):
                seq = list(rng.choice("red green blue black".split(), rng.integers(2, 4)))
                f.write(json.dumps({"prompt": " ".join(seq) + " =", "target": " ".join(seq[::-1])}) + "\n")
    task = {"data": TaskData(task="jsonl", folder=str(folder), tokenizer="byte")}
    exp = experiment(folder, steps=6, n_layer=2)
    import dataclasses

    run(dataclasses.replace(exp, **task), tmp_path / "teacher", progress=False)
    student = dataclasses.replace(experiment(folder, steps=3, train={"distill_from": str(tmp_path / "teacher")}),
                                  **task)
    result = run(student, tmp_path / "student", progress=False)
    kl = [m["distill_kl"] for m in metrics(tmp_path / "student") if "distill_kl" in m]
    assert len(kl) == 3 and all(np.isfinite(kl)) and kl[0] > 0 and np.isfinite(result.eval_loss)


def _teacher_copy(world, tmp_path, case):
    bad = tmp_path / "teacher"
    shutil.copytree(world["teacher"], bad)
    if case == "tokenizer":
        shutil.rmtree(bad / "tokenizer")
        from gptjax.data.tokenizers import ByteTokenizer

        ByteTokenizer().save(bad / "tokenizer")
    elif case == "vocabulary":
        cfg = json.loads((bad / "config.json").read_text())
        cfg["model"]["vocab_size"] += 7
        (bad / "config.json").write_text(json.dumps(cfg))
    elif case == "not_a_run":
        shutil.rmtree(bad / "checkpoints")
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("case", ["tokenizer", "vocabulary", "not_a_run", "context"])
def test_a_teacher_that_cannot_teach_exits_2_and_writes_nothing(world, tmp_path, capsys, case):
    import train

    teacher = _teacher_copy(world, tmp_path, case)
    sets = ("data.dataset=text", f"data.files={world['text']}", "model.n_layer=1", "mesh.cpu_devices=1",
            f"model.max_seq_len={64 if case == 'context' else 32}", f"train.distill_from={teacher}")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train.main([str(ROOT / "experiments/shakespeare_char_cpu.py"), "--workdir", str(tmp_path / "out"),
                    "--no_progress", *[f"--set={s}" for s in sets]])
    err = capsys.readouterr().err
    words = {"tokenizer": "tokenizer", "vocabulary": "vocabulary", "not_a_run": "not a trained run folder",
             "context": "at most 32 positions"}[case]
    assert e.value.code == 2 and err.strip().splitlines()[-1].startswith("error: ") and words in err, err
    assert not (tmp_path / "out").exists()
