"""GPT-2 small (124M parameters) for accelerators.

12 layers, 12 heads, 768 wide, context 1024, a 32k sentencepiece vocabulary
trained on the corpus, batch 512 sequences (~0.5M tokens per step, reached with
gradient accumulation where memory is short), AdamW (0.9, 0.95), peak lr 6e-4.
Data: the stock TFDS `lm1b` where your TFDS data dir holds it
(`--set data.data_dir=...`), or any text files (`--set data.dataset=text
--set data.files='corpus/*.txt'`).
Expect: on lm1b, validation loss falls below ~3.5 nats/token within 20k steps;
on 8 H100s or a v5p-16 slice about a day for 100k steps. bf16 compute, f32 params.
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TextData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=12, n_head=12, d_model=768, max_seq_len=1024, dropout=0.0,
                    dtype="bfloat16", param_dtype="float32", remat="dots_no_batch"),
    schedule=Schedule("warmup_cosine", peak_lr=6e-4, warmup_steps=2000, end_lr=6e-5),
    optimizer=Optimizer(b1=0.9, b2=0.95, weight_decay=0.1, clip_norm=1.0, grad_accum=1),
    data=TextData("lm1b", tokenizer="sentencepiece", sp_vocab_size=32768, pack="segments"),
    train=Train(steps=100_000, batch_size=512, eval_every=2000, eval_batches=50, checkpoint_every=2000,
                log_every=50, sample_tokens=0),
    mesh=Mesh(data=-1, fsdp=1, tensor=1),
)
