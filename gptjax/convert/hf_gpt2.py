"""GPT-2 (transformers' GPT2LMHeadModel) <-> our gpt2 flavour: config and tensor layouts.

HF GPT-2 keeps weights as Conv1D, i.e. [in, out] (x @ W) like ours; the fused
c_attn output is (q | k | v), each head-major, so it reshapes to [E, 3, H, D].
"""
from __future__ import annotations

import numpy as np

from gptjax.config import ModelSpec
from gptjax.errors import ConversionError

MODEL_TYPE = "gpt2"
ARCHITECTURE = "GPT2LMHeadModel"
BASE_PREFIX = "transformer."  # GPT2LMHeadModel's base model; bare GPT2Model files lack it
IGNORED = (r"h\.\d+\.attn\.(bias|masked_bias)",)  # causal-mask buffers of old checkpoints
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # the tanh approximation, as ours


def spec_from_config(cfg: dict) -> ModelSpec:
    """Our ModelSpec for an HF GPT-2 config.json (missing keys take transformers' defaults)."""
    act = cfg.get("activation_function", "gelu_new")
    if act not in GELU_TANH:
        raise ConversionError(f"activation_function={act!r} is not supported; gptjax's GPT-2 MLP uses the "
                              f"tanh GELU ({', '.join(GELU_TANH)})")
    if not cfg.get("scale_attn_weights", True) or cfg.get("scale_attn_by_inverse_layer_idx", False):
        raise ConversionError("scale_attn_weights=false / scale_attn_by_inverse_layer_idx=true are not supported: "
                              "gptjax scales attention by 1/sqrt(head_dim)")
    if cfg.get("add_cross_attention", False):
        raise ConversionError("add_cross_attention=true is not supported (decoder-only models only)")
    e = cfg.get("n_embd", 768)
    return ModelSpec(flavour="gpt2", n_layer=cfg.get("n_layer", 12), n_head=cfg.get("n_head", 12), n_kv_head=0,
                     d_model=e, d_ff=cfg.get("n_inner") or 4 * e, vocab_size=cfg.get("vocab_size", 50257),
                     max_seq_len=cfg.get("n_positions", 1024), dropout=0.0,
                     tie_embeddings=cfg.get("tie_word_embeddings", True),
                     norm_eps=cfg.get("layer_norm_epsilon", 1e-5))


def config_from_spec(spec: ModelSpec) -> dict:
    """The config.json transformers reads for our gpt2-flavour spec."""
    if spec.kv_heads != spec.n_head:
        raise ConversionError(f"model.n_kv_head={spec.n_kv_head}: Hugging Face GPT-2 has no grouped-query "
                              "attention; export a llama-flavour model instead")
    if not getattr(spec, "bias", True):
        raise ConversionError("model.bias=false: Hugging Face GPT-2 always has biases in its linear layers "
                              "and LayerNorms")
    return {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": spec.vocab_size,
            "n_positions": spec.max_seq_len, "n_embd": spec.d_model, "n_layer": spec.n_layer,
            "n_head": spec.n_head, "n_inner": spec.ff_dim, "activation_function": "gelu_new",
            "layer_norm_epsilon": spec.norm_eps, "tie_word_embeddings": spec.tie_embeddings,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False, "resid_pdrop": spec.dropout, "embd_pdrop": spec.dropout,
            "attn_pdrop": spec.dropout}


def expected_shapes(spec: ModelSpec) -> dict[str, tuple]:
    """Tensor name (without BASE_PREFIX, except lm_head) -> shape the checkpoint must hold."""
    e, f, v = spec.d_model, spec.ff_dim, spec.vocab_size
    shapes = {"wte.weight": (v, e), "wpe.weight": (spec.max_seq_len, e), "ln_f.weight": (e,), "ln_f.bias": (e,)}
    for i in range(spec.n_layer):
        p = f"h.{i}."
        shapes.update({p + "ln_1.weight": (e,), p + "ln_1.bias": (e,), p + "ln_2.weight": (e,),
                       p + "ln_2.bias": (e,), p + "attn.c_attn.weight": (e, 3 * e),
                       p + "attn.c_attn.bias": (3 * e,), p + "attn.c_proj.weight": (e, e),
                       p + "attn.c_proj.bias": (e,), p + "mlp.c_fc.weight": (e, f), p + "mlp.c_fc.bias": (f,),
                       p + "mlp.c_proj.weight": (f, e), p + "mlp.c_proj.bias": (e,)})
    if not spec.tie_embeddings:
        shapes["lm_head.weight"] = (v, e)
    return shapes


def _ln(t, name):
    return {"scale": t[name + ".weight"], "bias": t[name + ".bias"]}


def to_params(t: dict[str, np.ndarray], spec: ModelSpec) -> dict:
    """Our parameter tree from HF tensors (already checked against expected_shapes)."""
    e, h, d = spec.d_model, spec.n_head, spec.head_dim
    params = {"wte": {"embedding": t["wte.weight"]}, "wpe": t["wpe.weight"], "ln_f": _ln(t, "ln_f")}
    for i in range(spec.n_layer):
        p = f"h.{i}."
        params[f"h_{i}"] = {
            "ln_attn": _ln(t, p + "ln_1"), "ln_mlp": _ln(t, p + "ln_2"),
            "attn": {"qkv_kernel": t[p + "attn.c_attn.weight"].reshape(e, 3, h, d),
                     "qkv_bias": t[p + "attn.c_attn.bias"].reshape(3, h, d),
                     "out_kernel": t[p + "attn.c_proj.weight"].reshape(h, d, e),
                     "out_bias": t[p + "attn.c_proj.bias"]},
            "mlp": {"wi": {"weight": t[p + "mlp.c_fc.weight"].T, "bias": t[p + "mlp.c_fc.bias"]},
                    "wo": {"weight": t[p + "mlp.c_proj.weight"].T, "bias": t[p + "mlp.c_proj.bias"]}}}
    if not spec.tie_embeddings:
        params["lm_head"] = {"kernel": t["lm_head.weight"].T}
    return params


def from_params(params: dict, spec: ModelSpec) -> dict[str, np.ndarray]:
    """HF tensors (names as save_pretrained writes them) from our parameter tree."""
    e, f = spec.d_model, spec.ff_dim
    t = {"wte.weight": params["wte"]["embedding"], "wpe.weight": params["wpe"],
         "ln_f.weight": params["ln_f"]["scale"], "ln_f.bias": params["ln_f"]["bias"]}
    for i in range(spec.n_layer):
        p, b = f"h.{i}.", params[f"h_{i}"]
        t.update({p + "ln_1.weight": b["ln_attn"]["scale"], p + "ln_1.bias": b["ln_attn"]["bias"],
                  p + "ln_2.weight": b["ln_mlp"]["scale"], p + "ln_2.bias": b["ln_mlp"]["bias"],
                  p + "attn.c_attn.weight": b["attn"]["qkv_kernel"].reshape(e, 3 * e),
                  p + "attn.c_attn.bias": b["attn"]["qkv_bias"].reshape(3 * e),
                  p + "attn.c_proj.weight": b["attn"]["out_kernel"].reshape(e, e),
                  p + "attn.c_proj.bias": b["attn"]["out_bias"],
                  p + "mlp.c_fc.weight": b["mlp"]["wi"]["weight"].T.reshape(e, f),
                  p + "mlp.c_fc.bias": b["mlp"]["wi"]["bias"],
                  p + "mlp.c_proj.weight": b["mlp"]["wo"]["weight"].T.reshape(f, e),
                  p + "mlp.c_proj.bias": b["mlp"]["wo"]["bias"]})
    t = {BASE_PREFIX + k: v for k, v in t.items()}
    if not spec.tie_embeddings:
        t["lm_head.weight"] = params["lm_head"]["kernel"].T
    return t
