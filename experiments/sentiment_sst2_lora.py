"""SST-2 by LoRA (rank 8) on the byte-level GPT that read SST-2's phrases (experiments/sst2_domain_lm.py):
experiments/sentiment_sst2_finetune.py with the base frozen and only low-rank adapters trained.

Adapters on each layer's attention output and MLP input projections (57k parameters, 1.73% of the
model's 3.3M), chosen on the held-out phrases over adapters on the attention projections alone
(qkv and output, 49k, 1.49%: held-out loss 0.0584 against 0.0545 at 1000 steps). Every projection:
`--set optimizer.lora_targets='(attn|mlp)/.*(kernel|weight)$'` (3.87% trained). 2000 steps, chosen
on the held-out phrases over 1000 (accuracy 0.8015 against 0.765, loss 0.0465 against 0.0545).

  python scripts/train.py experiments/sentiment_sst2_lora.py --workdir runs/sst2_lora
  python scripts/evaluate.py --workdir runs/sst2_lora --task sentiment --data $GPTJAX_DATA_DIR/sst2/dev.tsv
  python scripts/convert.py merge-lora --workdir runs/sst2_lora --out runs/sst2_lora_merged
Measured (2-core CPU, 2171 s, docs/efficiency.md): dev accuracy 0.773 (0.781 by log-likelihood)
against 0.757 for full fine-tuning for the same 2000 steps (0.740 at its own 1000); on the
held-out phrases 0.8015 against 0.839, 3.8 points below, though held-out loss is within 0.006 nats
(0.0465, 0.0407). Adam's state is 0.44 MiB against 24.86 MiB. Over three seeds of LoRA and two of
full fine-tuning (`--set train.seed=1`, `=2`): dev 0.766 against 0.760 (0.774 against 0.756 by
log-likelihood), held-out loss 0.0457 against 0.0415; held-out accuracy 0.806 against 0.8335.
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TaskData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=4, n_head=4, d_model=256, max_seq_len=128, dropout=0.1,
                    vocab_size=257),
    schedule=Schedule("warmup_cosine", peak_lr=2e-3, warmup_steps=100, end_lr=2e-4),
    optimizer=Optimizer(b1=0.9, b2=0.98, weight_decay=0.0, clip_norm=1.0, lora_rank=8, lora_alpha=16.0,
                        lora_targets=r"attn/out_kernel$|mlp/wi/weight$"),
    data=TaskData(task="sentiment", tokenizer="byte"),
    train=Train(steps=2000, batch_size=32, eval_every=500, eval_batches=30, checkpoint_every=500,
                log_every=50, sample_tokens=0, init_from="runs/sst2_domain_lm"),
    mesh=Mesh(cpu_devices=2),
)
