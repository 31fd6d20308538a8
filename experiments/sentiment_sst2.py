"""SST-2 sentiment (GLUE's binary Stanford Sentiment Treebank), a byte-level decoder from scratch.

Each phrase is written as a prompt and its label word as the target (gptjax/data/task_formats.py),
loss on the label only; 10% of train.tsv is held out as the validation split, dev.tsv (872
sentences) is the benchmark. This is the full-precision, full-size model of docs/efficiency.md:
the int8 task model and the distillation teacher.

  python scripts/train.py experiments/sentiment_sst2.py --workdir runs/sst2
  python scripts/evaluate.py --workdir runs/sst2 --task sentiment --data $GPTJAX_DATA_DIR/sst2/dev.tsv
Expect: dev accuracy well above the majority class (51%); the measured figure is in docs/efficiency.md.
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TaskData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=4, n_head=4, d_model=256, max_seq_len=128, dropout=0.1),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=200, end_lr=5e-5),
    optimizer=Optimizer(b1=0.9, b2=0.98, weight_decay=0.1, clip_norm=1.0),
    data=TaskData(task="sentiment", tokenizer="byte"),
    train=Train(steps=3000, batch_size=32, eval_every=500, eval_batches=30, checkpoint_every=1000,
                log_every=50, sample_tokens=0),
    mesh=Mesh(cpu_devices=2),
)
