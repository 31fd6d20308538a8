"""The parameters' moving average (`optimizer.ema_decay`, gptjax/train/ema.py): it leaves training's own
steps bit-identical, follows ema <- d_t * ema + (1 - d_t) * params with the warmed-up decay
d_t = min(d, t / (9 + t)), is what evaluation, the workdir's readers and `train.init_from` see, survives
a resume, and the settings it cannot work with are refused."""
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gptjax.errors import ConfigError
from gptjax.train.ema import ParamEmaState, with_param_ema
from helpers.tiny_runs import corpus, experiment, tiny_world

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
DECAY = 0.5  # a short memory, so that six steps move the average visibly


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_the_wrapper_changes_no_update_and_averages_the_parameters():
    params = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
    plain, averaged = optax.adam(0.1), with_param_ema(optax.adam(0.1), 0.9)
    s_plain, s_avg, p_plain, p_avg, ema = plain.init(params), averaged.init(params), params, params, params
    for k in range(5):
        grads = jax.tree.map(lambda p: 2.0 * p + k, p_plain)  # the same gradients for both
        u_plain, s_plain = plain.update(grads, s_plain, p_plain)
        u_avg, s_avg = averaged.update(grads, s_avg, p_avg)
        for a, b in zip(leaves(u_plain), leaves(u_avg)):
            np.testing.assert_array_equal(a, b)
        p_plain, p_avg = optax.apply_updates(p_plain, u_plain), optax.apply_updates(p_avg, u_avg)
        d = min(0.9, (k + 1) / (k + 10))  # the warm-up: update t = k + 1 decays by min(0.9, t / (9 + t))
        ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, ema, p_avg)
        for a, b in zip(leaves(s_avg.ema), leaves(ema)):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    assert isinstance(s_avg, ParamEmaState)
    assert float(jnp.abs(s_avg.ema["w"] - p_avg["w"]).max()) > 1e-2  # the average lags the parameters


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny run without and with the average; every step's state of the second kept."""
    root, text = tiny_world(tmp_path_factory, "ema")
    from gptjax.train.loop import run

    plain = run(experiment(text, steps=6), root / "plain", progress=False)
    states = {}
    averaged = run(experiment(text, steps=6, optimizer={"ema_decay": DECAY}), root / "ema", progress=False,
                   on_step=lambda done, state: states.update({done: jax.tree.map(np.asarray, state)}))
    return {"root": root, "text": text, "plain": plain, "ema": averaged, "states": states}


def test_training_steps_the_same_parameters_and_the_average_follows_them(runs):
    for a, b in zip(leaves(runs["plain"].state.params), leaves(runs["ema"].state.params)):
        np.testing.assert_array_equal(a, b)
    states = runs["states"]
    for k in range(2, 7):
        d = min(DECAY, k / (9 + k))  # warmed up: 0.18, 0.25, ... 0.4 here
        assert int(states[k].opt_state.count) == k
        for e, e_prev, p in zip(leaves(states[k].opt_state.ema), leaves(states[k - 1].opt_state.ema),
                                leaves(states[k].params)):
            np.testing.assert_allclose(e, d * e_prev + (1 - d) * p, rtol=1e-5, atol=1e-7)
    gap = max(np.abs(e - p).max() for e, p in zip(leaves(states[6].opt_state.ema), leaves(states[6].params)))
    assert gap > 1e-3


def test_evaluation_and_the_workdirs_readers_use_the_average(runs):
    from gptjax.convert.quantize import eval_loss
    from gptjax.train.checkpoint import load_params
    from gptjax.train.restore import load_run

    ema = leaves(runs["ema"].state.opt_state.ema)
    exp, restored, data = load_run(runs["root"] / "ema", with_data=True)
    for got in (leaves(restored), leaves(load_params(runs["root"] / "ema"))):
        for a, b in zip(got, ema):
            np.testing.assert_array_equal(a, b)
    # the eval loss the run reported is the average's, not the raw parameters'
    assert eval_loss(exp, restored, data, exp.train.eval_batches) == pytest.approx(runs["ema"].eval_loss, abs=1e-5)
    raw = eval_loss(exp, runs["ema"].state.params, data, exp.train.eval_batches)
    assert abs(raw - runs["ema"].eval_loss) > 1e-4


@pytest.mark.slow
def test_a_run_started_from_an_averaged_run_starts_its_average_there(runs):
    from gptjax.train.loop import run

    first = {}
    exp = experiment(runs["text"], steps=2, optimizer={"ema_decay": DECAY},
                     train={"init_from": str(runs["root"] / "ema")})
    run(exp, runs["root"] / "tuned", progress=False,
        on_step=lambda done, state: first.setdefault(done, jax.tree.map(np.asarray, state)))
    start = leaves(runs["ema"].state.opt_state.ema)  # what init_from loads
    d1 = min(DECAY, 1 / 10)  # the first update's warmed-up decay
    for e1, p1, p0 in zip(leaves(first[1].opt_state.ema), leaves(first[1].params), start):
        np.testing.assert_allclose(e1, d1 * p0 + (1 - d1) * p1, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_resumed_run_keeps_its_average(runs, tmp_path):
    from gptjax.train.loop import run

    exp = experiment(runs["text"], steps=6, optimizer={"ema_decay": DECAY}, train={"checkpoint_every": 3})
    assert run(exp, tmp_path / "run", progress=False, stop_after=3).state.step == 3
    resumed = run(exp, tmp_path / "run", progress=False)
    assert resumed.start_step == 3
    for a, b in zip(leaves(resumed.state.opt_state.ema), leaves(runs["ema"].state.opt_state.ema)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sets,words", [("optimizer.ema_decay=1.0", "a number in [0, 1)"),
                                        ("optimizer.ema_decay=0.99 --set=optimizer.lora_rank=2",
                                         "optimizer.ema_decay with optimizer.lora_rank")],
                         ids=["decay_one", "with_lora"])
def test_settings_the_average_cannot_work_with_exit_2_and_write_nothing(tmp_path, capsys, sets, words):
    import train

    text = corpus(tmp_path)
    argv = [str(ROOT / "experiments/shakespeare_char_cpu.py"), "--workdir", str(tmp_path / "out"), "--no_progress",
            "--set=data.dataset=text", f"--set=data.files={text}", *[f"--set={s}" for s in sets.split(" --set=")]]
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err, err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError):
        experiment(text, optimizer={"ema_decay": 1.0}).validate()
