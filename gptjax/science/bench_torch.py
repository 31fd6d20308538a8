"""The same GPT-2 training step written in PyTorch, timed as the reference the CPU goals are set against.

nanoGPT-shaped: pre-norm blocks, fused QKV, `scaled_dot_product_attention`
(causal), tanh-GELU MLP, tied embeddings, AdamW with clipping, fp32. It takes
its shape from a gptjax ModelSpec so that both sides train the very same
model. PyTorch comes from requirements-interop.txt; it is never a dependency
of training.
"""
from __future__ import annotations

import time

import numpy as np


def _model(spec):
    import torch
    from torch import nn
    from torch.nn import functional as F

    e, h, bias = spec.d_model, spec.n_head, spec.use_bias

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(e, bias=bias), nn.LayerNorm(e, bias=bias)
            self.qkv, self.proj = nn.Linear(e, 3 * e, bias=bias), nn.Linear(e, e, bias=bias)
            self.fc, self.out = nn.Linear(e, spec.ff_dim, bias=bias), nn.Linear(spec.ff_dim, e, bias=bias)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = (z.view(b, t, h, e // h).transpose(1, 2) for z in self.qkv(self.ln1(x)).split(e, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, e)
            x = x + self.proj(y)
            return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(spec.vocab_size, e), nn.Embedding(spec.max_seq_len, e)
            self.blocks = nn.ModuleList(Block() for _ in range(spec.n_layer))
            self.ln_f = nn.LayerNorm(e, bias=bias)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    return GPT()


def bench_torch_step(exp, vocab_size: int, steps: int, repeats: int, warmup: int = 3) -> dict:
    """Time `repeats` blocks of `steps` PyTorch training steps on the experiment's shape (GPT-2 flavour)."""
    import torch

    spec = exp.model
    if spec.is_llama:
        raise ValueError("the PyTorch reference is the GPT-2 flavour only (model.flavour=gpt2)")
    if not spec.vocab_size:
        import dataclasses
        spec = dataclasses.replace(spec, vocab_size=vocab_size or 65)
    torch.manual_seed(0)
    model = _model(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(exp.optimizer.b1, exp.optimizer.b2),
                            weight_decay=exp.optimizer.weight_decay)
    b, t = exp.train.batch_size, spec.max_seq_len
    x = torch.randint(0, spec.vocab_size, (b, t))
    y = torch.randint(0, spec.vocab_size, (b, t))

    def step():
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), exp.optimizer.clip_norm or 1e9)
        opt.step()

    for _ in range(warmup):
        step()
    per_step = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        per_step.append((time.perf_counter() - start) / steps)
    step_s = float(np.median(per_step))
    return {"framework": f"torch {torch.__version__}", "threads": torch.get_num_threads(),
            "tokens_per_sec": round(b * t / step_s, 1), "step_ms_median": round(step_s * 1e3, 3),
            "step_ms_min": round(min(per_step) * 1e3, 3), "step_ms_max": round(max(per_step) * 1e3, 3)}
