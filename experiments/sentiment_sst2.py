"""Sentiment on SST-2 (GLUE): a decoder trained from scratch reads a phrase and writes its label word.

Each example is "phrase\\n" + "positive" | "negative" + <eos>, packed into rows of 128 tokens, the
loss on the label word and <eos>, plus half-weighted language modelling of the phrase
(data.prompt_loss=0.5), with dropout 0.2; a BPE SentencePiece model of 8000 pieces is trained on the
training phrases. No outside data: no pretrained weights or embeddings. 10% of the training phrases
are held out for choosing settings; GLUE's dev.tsv (the split papers report) is only scored.

  python scripts/train.py experiments/sentiment_sst2.py --workdir runs/sentiment_sst2
  python scripts/evaluate.py --workdir runs/sentiment_sst2 --task sentiment --data $GPTJAX_DATA_DIR/sst2/dev.tsv
Expect (2-core CPU, 31 min): dev accuracy 0.80, held-out loss 0.144 (docs/tasks.md; the settings
were chosen on the held-out split, against dropout 0.1 without prompt loss: 0.244 and dev 0.77).
The full-size model of docs/efficiency.md (int8, distillation teacher) is that earlier recipe.
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TaskData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=4, n_head=4, d_model=256, max_seq_len=128, dropout=0.2),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=200, end_lr=5e-5),
    optimizer=Optimizer(b1=0.9, b2=0.98, weight_decay=0.1, clip_norm=1.0),
    data=TaskData(task="sentiment", sp_vocab_size=8000, val_fraction=0.1, prompt_loss=0.5),
    train=Train(steps=1500, batch_size=32, eval_every=500, eval_batches=30, checkpoint_every=500,
                log_every=50, sample_tokens=0),
    mesh=Mesh(cpu_devices=2),
)
