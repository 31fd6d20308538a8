"""Checkpoint averaging (`scripts/convert.py average`): the new workdir holds the mean of the chosen
checkpoints' parameters, loads and evaluates like any run, and what cannot be averaged is refused
with exit 2 before anything is written."""
import jax
import numpy as np
import pytest

from helpers.scripts import call_main
from helpers.tiny_runs import experiment, tiny_world


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny run that saved its checkpoints of steps 2, 4 and 6."""
    root, text = tiny_world(tmp_path_factory, "average")
    from gptjax.train.loop import run

    run(experiment(text, steps=6, train={"checkpoint_every": 2}), root / "run", progress=False)
    return root / "run"


def convert(capsys, *args):
    return call_main("convert", capsys, *args)


def leaves(params):
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]


@pytest.mark.parametrize("how,steps", [(("--steps", "2,6"), (2, 6)), (("--last", "3"), (2, 4, 6))],
                         ids=["steps", "last"])
def test_the_average_holds_the_mean_of_the_chosen_checkpoints(run_dir, tmp_path, capsys, how, steps):
    from gptjax.convert.quantize import eval_loss
    from gptjax.train.restore import load_run

    code, out = convert(capsys, "average", "--workdir", run_dir, *how, "--out", tmp_path / "avg")
    assert code == 0 and f"steps {', '.join(map(str, steps))}" in out.out, out
    each = [leaves(load_run(run_dir, step=s)[1]) for s in steps]
    exp, averaged, data = load_run(tmp_path / "avg", with_data=True)
    for i, got in enumerate(leaves(averaged)):
        np.testing.assert_allclose(got, np.mean([e[i] for e in each], axis=0), atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(each[0], each[-1])) > 1e-3  # the checkpoints differ
    # the average is a model of its own: its eval loss is finite and not that of either end
    loss = eval_loss(exp, averaged, data, 2)
    assert np.isfinite(loss)
    assert exp.optimizer.lora_rank == 0 and exp.train.init_from == ""


@pytest.mark.parametrize("case", ["unsaved_step", "one_step", "last_too_many", "last_one", "bad_list",
                                  "neither", "out_not_empty", "quantized"])
def test_what_cannot_be_averaged_exits_2_and_writes_nothing(run_dir, tmp_path, capsys, case):
    out = tmp_path / "out"
    workdir = run_dir
    if case == "out_not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    if case == "quantized":
        from gptjax.convert.quantize import quantize_workdir

        workdir = tmp_path / "int8"
        quantize_workdir(run_dir, workdir, sample_tokens=0)
    which = {"unsaved_step": ["--steps", "3,6"], "one_step": ["--steps", "6,6"], "last_too_many": ["--last", "9"],
             "last_one": ["--last", "1"], "bad_list": ["--steps", "2,six"], "neither": []}.get(case, ["--last", "2"])
    code, said = convert(capsys, "average", "--workdir", workdir, *which, "--out", out)
    words = {"unsaved_step": "no checkpoint of step 3; its checkpoints: steps 2, 4, 6",
             "one_step": "two or more different checkpoints", "last_too_many": "expected 2 to 3",
             "last_one": "expected 2 to 3", "bad_list": "expected comma-separated step numbers",
             "neither": "one of the arguments --steps --last is required", "out_not_empty": "not empty",
             "quantized": "is quantized"}[case]
    assert code == 2 and words in said.err, said
    if case == "out_not_empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()
