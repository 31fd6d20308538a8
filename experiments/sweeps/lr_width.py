"""Learning rate against width for the CPU Shakespeare model.

Two widths x four log-uniform learning rates x two seeds = 16 runs of 500 steps.
Tests whether the best learning rate moves with width (muP says it should
shrink as the model widens under standard parametrisation).

    python scripts/sweep.py run experiments/sweeps/lr_width.py --root runs/lr_width --parallel 2
    python scripts/sweep.py report runs/lr_width

Expect: the 128-wide model below the 64-wide one at every learning rate, and a
flat-bottomed optimum near 1e-3 to 3e-3 for both; seeds differ by ~0.01.
"""
from gptjax.config import LogUniform, Sweep

SWEEP = Sweep(
    base="experiments/shakespeare_char_cpu.py",
    grid={"model.d_model": [64, 128]},
    random={"schedule.peak_lr": LogUniform(1e-4, 3e-3)}, samples=4,
    seeds=[0, 1],
    fixed={"train.steps": 500, "train.eval_every": 100, "train.sample_tokens": 0},
)
