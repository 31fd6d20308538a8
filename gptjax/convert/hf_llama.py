"""LLaMA (transformers' LlamaForCausalLM) <-> our llama flavour: config and tensor layouts.

HF Linear weights are [out, in]; ours are [in, ...]. HF-format q/k projections
are already permuted for rotate_half (half-split) RoPE, which is what
`gptjax.model.attention.rope` computes, so heads map one to one with no permutation.
Grouped-query heads group the same way: query head j reads kv head j // (H/K).
"""
from __future__ import annotations

import numpy as np

from gptjax.config import ModelSpec
from gptjax.errors import ConversionError

MODEL_TYPE = "llama"
ARCHITECTURE = "LlamaForCausalLM"
BASE_PREFIX = "model."
IGNORED = (r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)  # a buffer some old checkpoints saved


def _rope_theta(cfg: dict) -> float:
    """rope_theta from transformers 5's rope_parameters or 4's top-level keys; scaled RoPE refused."""
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    for source, block in (("rope_parameters", params), ("rope_scaling", scaling)):
        kind = block.get("rope_type", block.get("type", "default"))
        if kind != "default":
            raise ConversionError(f"{source} rope_type={kind!r} is not supported: gptjax implements plain "
                                  "RoPE only (no linear/dynamic/yarn/llama3 scaling)")
    return float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def spec_from_config(cfg: dict) -> ModelSpec:
    """Our ModelSpec for an HF LLaMA config.json (missing keys take transformers' defaults)."""
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ConversionError(f"hidden_act={act!r} is not supported; gptjax's LLaMA MLP is SwiGLU (silu)")
    for key in ("attention_bias", "mlp_bias"):
        if cfg.get(key, False):
            raise ConversionError(f"{key}=true is not supported: gptjax's llama flavour has no biases")
    e, h = cfg.get("hidden_size", 4096), cfg.get("num_attention_heads", 32)
    kv = cfg.get("num_key_value_heads") or h
    if e % h:
        raise ConversionError(f"hidden_size={e} is not divisible by num_attention_heads={h}")
    head_dim = cfg.get("head_dim") or e // h
    if head_dim != e // h:
        raise ConversionError(f"head_dim={head_dim} differs from hidden_size/num_attention_heads={e // h}: "
                              "gptjax derives the head dim from the width")
    if h % kv:
        raise ConversionError(f"num_key_value_heads={kv} does not divide num_attention_heads={h}")
    return ModelSpec(flavour="llama", n_layer=cfg.get("num_hidden_layers", 32), n_head=h,
                     n_kv_head=0 if kv == h else kv, d_model=e, d_ff=cfg.get("intermediate_size", 11008),
                     vocab_size=cfg.get("vocab_size", 32000), max_seq_len=cfg.get("max_position_embeddings", 2048),
                     dropout=0.0, tie_embeddings=cfg.get("tie_word_embeddings", False), rope_theta=_rope_theta(cfg),
                     norm_eps=cfg.get("rms_norm_eps", 1e-6))


def config_from_spec(spec: ModelSpec) -> dict:
    """The config.json transformers (4.x and 5.x) reads for our llama-flavour spec."""
    return {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": spec.vocab_size,
            "hidden_size": spec.d_model, "intermediate_size": spec.ff_dim, "num_hidden_layers": spec.n_layer,
            "num_attention_heads": spec.n_head, "num_key_value_heads": spec.kv_heads, "head_dim": spec.head_dim,
            "max_position_embeddings": spec.max_seq_len, "rms_norm_eps": spec.norm_eps, "hidden_act": "silu",
            "rope_theta": spec.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": spec.rope_theta},
            "attention_bias": False, "mlp_bias": False, "attention_dropout": spec.dropout,
            "tie_word_embeddings": spec.tie_embeddings}


def expected_shapes(spec: ModelSpec) -> dict[str, tuple]:
    """Tensor name (without BASE_PREFIX, except lm_head) -> shape the checkpoint must hold."""
    e, f, v = spec.d_model, spec.ff_dim, spec.vocab_size
    qd, kvd = spec.n_head * spec.head_dim, spec.kv_heads * spec.head_dim
    shapes = {"embed_tokens.weight": (v, e), "norm.weight": (e,)}
    for i in range(spec.n_layer):
        p = f"layers.{i}."
        shapes.update({p + "input_layernorm.weight": (e,), p + "post_attention_layernorm.weight": (e,),
                       p + "self_attn.q_proj.weight": (qd, e), p + "self_attn.k_proj.weight": (kvd, e),
                       p + "self_attn.v_proj.weight": (kvd, e), p + "self_attn.o_proj.weight": (e, qd),
                       p + "mlp.gate_proj.weight": (f, e), p + "mlp.up_proj.weight": (f, e),
                       p + "mlp.down_proj.weight": (e, f)})
    if not spec.tie_embeddings:
        shapes["lm_head.weight"] = (v, e)
    return shapes


def to_params(t: dict[str, np.ndarray], spec: ModelSpec) -> dict:
    """Our parameter tree from HF tensors (already checked against expected_shapes)."""
    e, h, k, d = spec.d_model, spec.n_head, spec.kv_heads, spec.head_dim
    params = {"wte": {"embedding": t["embed_tokens.weight"]}, "ln_f": {"scale": t["norm.weight"]}}
    for i in range(spec.n_layer):
        p = f"layers.{i}."
        q = t[p + "self_attn.q_proj.weight"].T.reshape(e, h, d)
        kk = t[p + "self_attn.k_proj.weight"].T.reshape(e, k, d)
        vv = t[p + "self_attn.v_proj.weight"].T.reshape(e, k, d)
        attn = ({"qkv_kernel": np.stack([q, kk, vv], axis=1)} if k == h else
                {"q_kernel": q, "kv_kernel": np.stack([kk, vv], axis=1)})
        attn["out_kernel"] = t[p + "self_attn.o_proj.weight"].T.reshape(h, d, e)
        params[f"h_{i}"] = {
            "ln_attn": {"scale": t[p + "input_layernorm.weight"]},
            "ln_mlp": {"scale": t[p + "post_attention_layernorm.weight"]},
            "attn": attn,
            "mlp": {"wi_kernel": np.stack([t[p + "mlp.gate_proj.weight"].T, t[p + "mlp.up_proj.weight"].T], axis=1),
                    "wo": {"kernel": t[p + "mlp.down_proj.weight"].T}}}
    if not spec.tie_embeddings:
        params["lm_head"] = {"kernel": t["lm_head.weight"].T}
    return params


def from_params(params: dict, spec: ModelSpec) -> dict[str, np.ndarray]:
    """HF tensors (names as save_pretrained writes them) from our parameter tree."""
    e, h, k, d = spec.d_model, spec.n_head, spec.kv_heads, spec.head_dim
    t = {"embed_tokens.weight": params["wte"]["embedding"], "norm.weight": params["ln_f"]["scale"]}
    for i in range(spec.n_layer):
        p, b = f"layers.{i}.", params[f"h_{i}"]
        a = b["attn"]
        if k == h:
            q, kk, vv = (a["qkv_kernel"][:, j] for j in range(3))
        else:
            q, kk, vv = a["q_kernel"], a["kv_kernel"][:, 0], a["kv_kernel"][:, 1]
        t.update({p + "input_layernorm.weight": b["ln_attn"]["scale"],
                  p + "post_attention_layernorm.weight": b["ln_mlp"]["scale"],
                  p + "self_attn.q_proj.weight": q.reshape(e, h * d).T,
                  p + "self_attn.k_proj.weight": kk.reshape(e, k * d).T,
                  p + "self_attn.v_proj.weight": vv.reshape(e, k * d).T,
                  p + "self_attn.o_proj.weight": a["out_kernel"].reshape(h * d, e).T,
                  p + "mlp.gate_proj.weight": b["mlp"]["wi_kernel"][:, 0].T,
                  p + "mlp.up_proj.weight": b["mlp"]["wi_kernel"][:, 1].T,
                  p + "mlp.down_proj.weight": b["mlp"]["wo"]["kernel"].T})
    t = {BASE_PREFIX + k_: v for k_, v in t.items()}
    if not spec.tie_embeddings:
        t["lm_head.weight"] = params["lm_head"]["kernel"].T
    return t
