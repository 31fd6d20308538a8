"""Loss against model size and compute: seven char-level GPTs on tiny Shakespeare, on a CPU.

Sizes run from 1 layer x 16 wide to 4 layers x 128 wide (3.1k to 788k
non-embedding parameters, 250x), context 64, batch 12, peak lr 2e-3. Each size
gets a token budget that grows slowly with its size, steps ~ 1000 (N / N_max)^(1/4)
(250 steps for the smallest, 1000 for the largest): small models stop improving
early, and the largest budget is what two shared CPU cores can afford (the whole
sweep takes 5 to 15 minutes with --parallel 2, depending on what else runs). So
the L(N) fit sits between a fixed-data curve and a compute-optimal one; no model
is trained to convergence.

    python scripts/sweep.py run experiments/scaling_shakespeare.py --root runs/scaling --parallel 2
    python scripts/sweep.py report runs/scaling --scaling

Expect: final eval loss falling monotonically with size, from about 2.95 to about
2.0 nats. One run (2 shared, busy CPU cores, 13 minutes) gave L = 0.58 + 4.7 / N^0.085
(95% bootstrap CI of alpha 0.05-0.44: seven points barely pin down E) with R^2 = 0.98
on log-loss, and alpha_C = 0.11 against 6N+attn FLOPs. The fitted E and alpha depend
strongly on this short budget; they are a smoke test of the pipeline, not a law.
"""
from gptjax.config.sweep import Sweep

# (n_layer, d_model, n_head) from tiny to the nanoGPT CPU shape; non-embedding params with bias=False
SHAPES = [(1, 16, 2), (1, 32, 2), (2, 32, 2), (2, 48, 4), (3, 64, 4), (4, 96, 4), (4, 128, 4)]
STEPS = [250, 350, 400, 500, 650, 850, 1000]  # ~ 1000 * (N / N_max) ** 0.25, rounded to 50

SWEEP = Sweep(
    base="experiments/shakespeare_char_cpu.py",
    zip={"model.n_layer": [s[0] for s in SHAPES], "model.d_model": [s[1] for s in SHAPES],
         "model.n_head": [s[2] for s in SHAPES], "train.steps": STEPS},
    fixed={"schedule.peak_lr": 2e-3, "schedule.warmup_steps": 50, "train.eval_every": 250,
           "train.eval_batches": 40, "train.checkpoint_every": 250, "train.log_every": 25,
           "train.sample_tokens": 0},
)
