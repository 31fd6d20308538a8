"""SST-2 by full fine-tuning of the byte-level GPT that read SST-2's phrases (experiments/sst2_domain_lm.py,
itself started from experiments/shakespeare_bytes.py): the baseline of experiments/sentiment_sst2_lora.py.

  python scripts/train.py experiments/sentiment_sst2_finetune.py --workdir runs/sst2_full_ft
  python scripts/evaluate.py --workdir runs/sst2_full_ft --task sentiment --data $GPTJAX_DATA_DIR/sst2/dev.tsv
Expect: every parameter trained (optimizer state 24.86 MiB); dev accuracy 0.759 (by log-likelihood
0.750), held-out loss 0.047 after 1000 steps, 13 min on two CPU cores (docs/efficiency.md). From
shakespeare_bytes directly, without the domain step: 0.721.
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TaskData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=4, n_head=4, d_model=256, max_seq_len=128, dropout=0.1,
                    vocab_size=257),
    schedule=Schedule("warmup_cosine", peak_lr=3e-4, warmup_steps=100, end_lr=3e-5),
    optimizer=Optimizer(b1=0.9, b2=0.98, weight_decay=0.1, clip_norm=1.0),
    data=TaskData(task="sentiment", tokenizer="byte"),
    train=Train(steps=1000, batch_size=32, eval_every=500, eval_batches=30, checkpoint_every=500,
                log_every=50, sample_tokens=0, init_from="runs/sst2_domain_lm"),
    mesh=Mesh(cpu_devices=2),
)
