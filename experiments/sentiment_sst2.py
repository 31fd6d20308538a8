"""Sentiment on SST-2 (GLUE): a decoder trained from scratch reads a phrase and writes its label word.

Each example is "phrase\\n" + "positive" | "negative" + <eos>, packed into rows of 128 tokens, the
loss on the label word and <eos>, plus half-weighted language modelling of the phrase
(data.prompt_loss=0.5), with dropout 0.2; a BPE SentencePiece model of 8000 pieces is trained on the
training phrases, and the training split gains 4 copies of each phrase segmented anew with BPE-dropout 0.1
(data.bpe_dropout, data.bpe_copies: an unseen dev word is then read in pieces the model knows). No
outside data: no pretrained weights or embeddings. 10% of SST's whole training
sentences are held out for choosing settings, and every phrase inside them leaves training
(data.held_out_by="sentence"), so validation is like dev: whole unseen sentences. GLUE's dev.tsv
(the split papers report) is only scored.

  python scripts/train.py experiments/sentiment_sst2.py --workdir runs/sentiment_sst2
  python scripts/evaluate.py --workdir runs/sentiment_sst2 --task sentiment --held_out   # choose settings here
  python scripts/evaluate.py --workdir runs/sentiment_sst2 --task sentiment --data $GPTJAX_DATA_DIR/sst2/dev.tsv
Expect (2-core CPU, 20-40 min): held-out accuracy 0.829, dev accuracy 0.830 (docs/tasks.md). With
data.held_out_by=phrase (random phrases held out, pieces of training sentences) the recipe before BPE-dropout
scored dev 0.804 and its held-out split said 0.89: that split misleads, so settings are chosen on this one.
Before BPE-dropout this recipe scored 0.797 and 0.815: int8 weights of that model scored the same dev
0.815, and a quarter-size student distilled from it gained 2.75 points over the same student alone
(docs/efficiency.md).
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TaskData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=4, n_head=4, d_model=256, max_seq_len=128, dropout=0.2),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=200, end_lr=5e-5),
    optimizer=Optimizer(b1=0.9, b2=0.98, weight_decay=0.1, clip_norm=1.0),
    data=TaskData(task="sentiment", sp_vocab_size=8000, val_fraction=0.1, prompt_loss=0.5,
                  held_out_by="sentence", bpe_dropout=0.1, bpe_copies=4),
    train=Train(steps=1500, batch_size=32, eval_every=500, eval_batches=30, checkpoint_every=500,
                log_every=50, sample_tokens=0),
    mesh=Mesh(cpu_devices=2),
)
