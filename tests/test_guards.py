"""The loss-spike detector, step by step against hand-computed running statistics."""
import logging
import math

import pytest

from gptjax.train.guards import Guards, SpikeDetector

# decay 0.5 over the losses 1, 3, 1, 3 (mean += (1 - d) * delta; var = d * (var + (1 - d) * delta^2)):
#   1: mean 1,    var 0
#   3: mean 2,    var 0.5 * (0 + 0.5 * 4)      = 1
#   1: mean 1.5,  var 0.5 * (1 + 0.5 * 1)      = 0.75
#   3: mean 2.25, var 0.5 * (0.75 + 0.5 * 2.25) = 0.9375
MEAN, STD = 2.25, math.sqrt(0.9375)


def warmed(sigmas=2.0, warmup=4):
    d = SpikeDetector(sigmas, decay=0.5, warmup=warmup)
    assert [d.observe(x) for x in (1.0, 3.0, 1.0, 3.0)] == [False] * 4
    assert d.mean == pytest.approx(MEAN) and d.var == pytest.approx(STD ** 2)
    return d


def test_a_loss_above_mean_plus_sigmas_std_is_a_spike_and_stays_out_of_the_statistics():
    d = warmed()
    threshold = MEAN + 2 * STD  # 4.186
    assert d.observe(threshold + 0.05) is True
    assert d.mean == pytest.approx(MEAN) and d.var == pytest.approx(STD ** 2)  # unchanged by the spike
    assert d.observe(threshold - 0.05) is False
    assert d.mean == pytest.approx(MEAN + 0.5 * (threshold - 0.05 - MEAN))  # an ordinary loss moves the mean


def test_no_spike_during_warmup_nor_when_disabled_and_non_finite_losses_are_ignored():
    early = SpikeDetector(2.0, decay=0.5, warmup=4)
    assert [early.observe(x) for x in (1.0, 3.0, 1.0, 100.0)] == [False] * 4  # only 3 seen before the 100
    off = warmed(sigmas=0.0)
    assert off.observe(1e6) is False
    d = warmed()
    assert d.observe(float("nan")) is False and d.observe(float("inf")) is False
    assert d.mean == pytest.approx(MEAN) and d.seen == 4  # not counted either
    assert d.observe(MEAN + 2 * STD + 0.05) is True


def test_guards_log_a_spike_with_its_step(caplog):
    from gptjax.config import Train

    guards = Guards(Train(spike_sigmas=2.0), last_checkpoint=lambda: None)
    guards.spikes = warmed()
    with caplog.at_level(logging.WARNING, logger="gptjax.train.guards"):
        assert guards.spike(17, {"loss": 9.0}) is True
        assert guards.spike(18, {"loss": 2.0}) is False
    assert [r.getMessage() for r in caplog.records] == ["loss spike at step 17: 9.0000 (running mean 2.2500)"]
