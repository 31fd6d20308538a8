"""A LLaMA-style 1B model for accelerators (RMSNorm, SwiGLU, RoPE, grouped-query attention).

22 layers, 32 query heads over 4 key/value heads, 2048 wide, SwiGLU hidden
5632 (TinyLlama's 1.1B shape), context 2048, untied embeddings, bf16 compute with f32 parameters,
layers scanned and rematerialised; fully sharded data parallel by default.
Data: stock TFDS `lm1b` or your own text files, as in gpt2_124m.py.
Expect: 1.1B parameters (with a 32k vocabulary); validation loss below GPT-2
124M's at equal tokens. The issue's goal is MFU >= 55% on one H100/H200 with
cuDNN attention; not yet measured (no GPU was lent). Context 8192 on one 80 GB
GPU, planned on the CPU with the flash kernel standing in for cuDNN:
  python scripts/train.py experiments/llama_1b.py --workdir W --dry_run --set model.vocab_size=32000 \
      --set model.max_seq_len=8192 --set train.batch_size=1 --set model.attention=flash \
      --set model.attention_block=1024 --set model.loss_chunk=1024
estimates 43.3 GiB per device (4.1 GiB parameters, 8.2 GiB Adam state, 31 GiB step temporaries).
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TextData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="llama", n_layer=22, n_head=32, n_kv_head=4, d_model=2048, d_ff=5632,
                    max_seq_len=2048, tie_embeddings=False, rope_theta=10000.0, dtype="bfloat16",
                    param_dtype="float32", remat="dots_no_batch", scan_layers=True),
    schedule=Schedule("wsd", peak_lr=3e-4, warmup_steps=2000, end_lr=3e-5, decay_fraction=0.2),
    optimizer=Optimizer(b1=0.9, b2=0.95, weight_decay=0.1, clip_norm=1.0),
    data=TextData("lm1b", tokenizer="sentencepiece", sp_vocab_size=32000, pack="segments"),
    train=Train(steps=50_000, batch_size=256, eval_every=2000, eval_batches=50, checkpoint_every=1000,
                log_every=50, sample_tokens=0),
    mesh=Mesh(data=1, fsdp=-1, tensor=1),
)
