"""Small GPT on tiny Shakespeare characters, sized for a laptop CPU.

nanoGPT's documented CPU configuration: 4 layers, 4 heads, 128 wide, context 64,
batch 12, 2000 steps, no dropout, no biases (nanoGPT's default), peak lr 1e-3
with cosine decay to 1e-4.
Expect: validation loss about 1.88 after 2000 steps (nanoGPT's figure), in a
few minutes on two CPU cores. Samples read like Shakespeare's layout with
mostly invented words.
"""
from gptjax.config import Experiment, ModelSpec, Optimizer, Schedule, TextData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=4, n_head=4, d_model=128, max_seq_len=64, dropout=0.0,
                    bias=False),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=100, end_lr=1e-4),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.1, clip_norm=1.0),
    data=TextData("tinyshakespeare", tokenizer="char"),
    train=Train(steps=2000, batch_size=12, eval_every=250, eval_batches=20, checkpoint_every=500,
                log_every=50),
)
