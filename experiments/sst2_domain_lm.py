"""The byte-level Shakespeare GPT read on SST-2's training phrases, without their labels (ULMFiT's
domain step): the base that experiments/sentiment_sst2_finetune.py and sentiment_sst2_lora.py adapt.

Each example is a training phrase + <eos>, every byte trained (data.unlabeled): the model learns the
language of movie reviews and where a phrase ends, and never sees a label. The held-out 10% of the
phrases is the eval split; GLUE's dev.tsv is not read.

  python scripts/train.py experiments/shakespeare_bytes.py --workdir runs/shakespeare_bytes
  python scripts/train.py experiments/sst2_domain_lm.py --workdir runs/sst2_domain_lm
Expect (2-core CPU, 13 min): held-out loss 1.418 (step 400), 1.277 nats per byte (800), against 1.54
on tiny Shakespeare. Fine-tuned from here, full fine-tuning reaches dev 0.759 and LoRA on the attention
0.695, each about 4 points above the same fine-tune of shakespeare_bytes (0.721, 0.659); on another
machine 0.740, and the shipped LoRA (2000 steps) 0.773 against full fine-tuning for 2000 steps 0.757
(docs/efficiency.md).
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TaskData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=4, n_head=4, d_model=256, max_seq_len=128, dropout=0.1,
                    vocab_size=257),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=50, end_lr=1e-4),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.1, clip_norm=1.0),
    data=TaskData(task="sentiment", tokenizer="byte", unlabeled=True),
    train=Train(steps=800, batch_size=32, eval_every=400, eval_batches=20, checkpoint_every=400,
                log_every=50, sample_tokens=0, init_from="runs/shakespeare_bytes"),
    mesh=Mesh(cpu_devices=2),
)
