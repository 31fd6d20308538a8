"""A byte-level GPT pretrained on tiny Shakespeare: the base of experiments/sst2_domain_lm.py, which SST-2
fine-tunes fully or with LoRA.

The shape of experiments/sentiment_sst2.py (4 layers, 256 wide, context 128) and its 257-symbol
byte vocabulary (bytes and <eos>), so that sst2_domain_lm.py starts from these weights with
train.init_from (and sentiment_sst2_finetune.py or sentiment_sst2_lora.py can, with --set).

  python scripts/train.py experiments/shakespeare_bytes.py --workdir runs/shakespeare_bytes
Expect: eval loss well under ln(256) = 5.5 nats per byte: 1.538 after the 1500 steps (40 min on two
CPU cores shared with another run).
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TextData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=4, n_head=4, d_model=256, max_seq_len=128, dropout=0.1,
                    vocab_size=257),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=200, end_lr=1e-4),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.1, clip_norm=1.0),
    data=TextData("tinyshakespeare", tokenizer="byte"),
    train=Train(steps=1500, batch_size=32, eval_every=500, eval_batches=20, checkpoint_every=1000, log_every=50),
    mesh=Mesh(cpu_devices=2),
)
