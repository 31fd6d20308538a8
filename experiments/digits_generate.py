"""Text to image: draw 8x8 digits as tokens, in the spirit of image GPT.

Each training image is quantised to 8 grey levels, and each level is a token
of the extended vocabulary (<p0>..<p7>); the prompt "draw a seven:" is followed
by the 64 pixel tokens in row-major order and <eos>. No encoder: the same
decoder (3 layers, 128 wide) writes the image, the loss is on the pixels.

Expect: sampled images (temperature 1, 10 per digit, only pixel tokens allowed)
recognised as the requested digit >= 0.8 of the time by a logistic-regression
classifier trained separately on the training images (its own held-out
accuracy, at 8 grey levels, is printed alongside):
  python scripts/train.py experiments/digits_generate.py --workdir runs/digits_generate
  python scripts/evaluate.py --workdir runs/digits_generate --task generate
The picture runs/digits_generate/eval_generate.png shows the samples.
"""
from gptjax.config import DigitsData, Experiment, MediaSpec, ModelSpec, Optimizer, Schedule, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=3, n_head=4, d_model=128, max_seq_len=80),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=100, end_lr=1e-4),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.1, clip_norm=1.0),
    data=DigitsData(task="generate"),
    media=MediaSpec(pixel_levels=8, mask="causal"),
    train=Train(steps=2000, batch_size=32, eval_every=500, eval_batches=10, checkpoint_every=500,
                log_every=50, sample_tokens=0),
)
