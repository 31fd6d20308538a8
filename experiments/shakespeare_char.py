"""Baby GPT on tiny Shakespeare, characters (the shape of nanoGPT's `train_shakespeare_char`).

6 layers, 6 heads, 384 wide, context 256, dropout 0.2, batch 64, 2000 steps. nanoGPT runs 5000
steps and keeps only its best validation checkpoint (1.4697); here the last step is the model that
quantize.py, distillation and sample.py read, so the schedule ends where validation stops improving.
Measured on one H200 (float32, TF32 matmuls): eval loss 1.4619 after 2000 steps (lowest 1.4415 at
step 1250), 34 s of training and 36 s of compiling. With 5000 steps it overfits: 1.466 at step
1000, 2.035 at 5000 (training loss 0.58). On a 2-core CPU this takes hours: use
shakespeare_char_cpu.py there.
"""
from gptjax.config import Experiment, ModelSpec, Optimizer, Schedule, TextData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=6, n_head=6, d_model=384, max_seq_len=256, dropout=0.2,
                    bias=False),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=100, end_lr=1e-4),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.1, clip_norm=1.0),
    data=TextData("tinyshakespeare", tokenizer="char"),
    train=Train(steps=2000, batch_size=64, eval_every=250, eval_batches=200, checkpoint_every=500),
)
