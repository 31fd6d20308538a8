"""Baby GPT on tiny Shakespeare, characters (nanoGPT's `train_shakespeare_char`).

6 layers, 6 heads, 384 wide, context 256, dropout 0.2, batch 64, 5000 steps.
Expect: validation loss about 1.47 after 5000 steps (nanoGPT's figure for this
shape, on a GPU in a few minutes; on a 2-core CPU this takes hours, use
shakespeare_char_cpu.py there).
"""
from gptjax.config import Experiment, ModelSpec, Optimizer, Schedule, TextData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=6, n_head=6, d_model=384, max_seq_len=256, dropout=0.2,
                    bias=False),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=100, end_lr=1e-4),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.1, clip_norm=1.0),
    data=TextData("tinyshakespeare", tokenizer="char"),
    train=Train(steps=5000, batch_size=64, eval_every=250, eval_batches=200, checkpoint_every=500),
)
