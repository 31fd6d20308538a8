"""Parameter counts, training FLOPs per token, accelerator peaks and MFU.

Everything here is plain Python arithmetic on a model spec: any object with the
attributes ``flavour`` ("gpt2" | "llama"), ``n_layer``, ``n_head``,
``n_kv_head`` (0 = n_head), ``d_model``, ``d_ff`` (0 = flavour default),
``vocab_size``, ``max_seq_len`` and ``tie_embeddings``.

Architectures counted
---------------------
gpt2
    Learned token and position embeddings; per layer LayerNorm (weight+bias) ->
    attention (fused q/k/v and output projections, with biases) and LayerNorm ->
    GELU MLP d -> d_ff -> d (with biases); final LayerNorm. The unembedding is the
    token embedding when ``tie_embeddings``, else a bias-free ``d x vocab`` matrix.
llama
    Token embedding only (RoPE has no parameters); per layer RMSNorm (weight) ->
    grouped-query attention (q: d -> H*hd, k, v: d -> H_kv*hd, o: H*hd -> d) and
    RMSNorm -> SwiGLU MLP (three d x d_ff matrices); final RMSNorm; no biases; the
    unembedding is untied unless ``tie_embeddings``.

FLOPs conventions (training = forward + backward = 3 x forward), per token
-------------------------------------------------------------------------
"6N"
    Kaplan et al. (2020): 6 x non-embedding parameters; attention over the
    context and the embedding/unembedding matmuls are ignored.
"6N+attn"
    PaLM (Chowdhery et al. 2022, appendix B): ``6 N + 12 L H Q T`` with L layers,
    H query heads, Q head dim, T sequence length. PaLM's N is its reported
    parameter count, which includes its (tied) embedding matrix: PaLM 540B's
    published 46.2% MFU at 238.3k tokens/s on 6144 TPU v4 chips is reproduced
    only with N = 540.35B; the non-embedding count gives 45.8% (see
    tests/test_flops.py). We therefore use N = every parameter that takes part
    in a matmul = non-embedding parameters + the ``vocab x d`` output projection
    counted once (tied or not); position embeddings and the input-lookup side of
    an untied embedding are excluded. For GPT-2 this is nanoGPT's
    ``get_num_params()`` (123,653,376 for the 124M model).
"chinchilla"
    Hoffmann et al. (2022), appendix F: embeddings ``2 T V d``; per layer q/k/v
    projections ``2 T d (H + 2 H_kv) Q`` (= ``2*3 T d Q H`` without GQA),
    logits ``2 T^2 Q H``, softmax ``3 H T^2``, softmax@values ``2 T^2 Q H``,
    output projection ``2 T Q H d``, dense block ``2 T (2 d F)`` (``2 T (3 d F)``
    for the three SwiGLU matrices); final logits ``2 T d V``; backward = 2 x
    forward; divided by T. The GQA and SwiGLU generalisations are ours and reduce
    to the paper's formula for the gpt2 flavour.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from gptjax.config import ModelSpec
from gptjax.config.fields import check_fields

CONVENTIONS = ("6N", "6N+attn", "chinchilla")


# --------------------------------------------------------------------------- #
# Shapes
# --------------------------------------------------------------------------- #
def resolved_shape(spec: Any) -> dict:
    """The spec's sizes with defaults filled in (head_dim, n_kv_head, d_ff) by ModelSpec's own rules."""
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    m = ModelSpec(**{k: v for k, v in vars(spec).items() if k in fields} if not dataclasses.is_dataclass(spec)
                  else {k: getattr(spec, k) for k in fields if hasattr(spec, k)})
    check_fields(m, "model")  # ConfigError (a ValueError) for an unknown flavour
    if m.d_model % m.n_head:
        raise ValueError(f"d_model={m.d_model} is not divisible by n_head={m.n_head}")
    if m.n_head % m.kv_heads:
        raise ValueError(f"n_head={m.n_head} is not a multiple of n_kv_head={m.kv_heads}")
    if m.vocab_size <= 0:
        raise ValueError("vocab_size must be set (> 0) to count parameters or FLOPs")
    return dict(flavour=m.flavour, n_layer=m.n_layer, n_head=m.n_head, n_kv_head=m.kv_heads, head_dim=m.head_dim,
                d_model=m.d_model, d_ff=m.ff_dim, vocab_size=m.vocab_size, max_seq_len=m.max_seq_len,
                tie_embeddings=m.tie_embeddings, bias=m.bias)


# --------------------------------------------------------------------------- #
# Parameters
# --------------------------------------------------------------------------- #
def param_counts(spec: Any) -> dict:
    """Exact parameter counts: ``{"total", "embedding", "non_embedding"}``.

    "embedding" is the token embedding + position embedding (gpt2) + an untied
    unembedding; "non_embedding" is everything else, norms and biases included.
    """
    s = resolved_shape(spec)
    d, L, V, F = s["d_model"], s["n_layer"], s["vocab_size"], s["d_ff"]
    q_dim = s["n_head"] * s["head_dim"]
    kv_dim = s["n_kv_head"] * s["head_dim"]
    gpt2 = s["flavour"] == "gpt2"

    attn = d * (q_dim + 2 * kv_dim) + q_dim * d
    if gpt2:
        bias = s["bias"]  # nanoGPT's bias=False drops all of them
        attn += bias * ((q_dim + 2 * kv_dim) + d)  # qkv and output biases
        mlp = 2 * d * F + bias * (F + d)  # fc + proj weights, their biases
        norms = 2 * (1 + bias) * d  # two LayerNorms (weight [+ bias])
        final_norm = (1 + bias) * d
    else:
        mlp = 3 * d * F  # gate, up, down
        norms = 2 * d  # two RMSNorms (weight)
        final_norm = d
    non_embedding = L * (attn + mlp + norms) + final_norm

    embedding = V * d
    if gpt2:
        embedding += s["max_seq_len"] * d
    if not s["tie_embeddings"]:
        embedding += V * d  # bias-free lm_head
    return dict(
        total=embedding + non_embedding, embedding=embedding, non_embedding=non_embedding
    )


def matmul_params(spec: Any) -> int:
    """PaLM's N: non-embedding params + the ``vocab x d`` output projection, once."""
    s = resolved_shape(spec)
    return param_counts(spec)["non_embedding"] + s["vocab_size"] * s["d_model"]


# --------------------------------------------------------------------------- #
# FLOPs
# --------------------------------------------------------------------------- #
def palm_flops_per_token(n_params: float, n_layer: int, n_head: int, head_dim: int,
                         seq_len: int) -> float:
    """PaLM appendix B training FLOPs per token: ``6 N + 12 L H Q T``."""
    return 6.0 * n_params + 12.0 * n_layer * n_head * head_dim * seq_len


def chinchilla_forward_flops(spec: Any, seq_len: int) -> dict:
    """Forward FLOPs of one sequence, term by term, after Chinchilla appendix F.

    Keys: embeddings, attention (per layer), dense (per layer), logits, total.
    """
    s = resolved_shape(spec)
    T, d, V, F = int(seq_len), s["d_model"], s["vocab_size"], s["d_ff"]
    H, Hkv, Q = s["n_head"], s["n_kv_head"], s["head_dim"]
    embeddings = 2 * T * V * d
    attention = (
        2 * T * d * (H + 2 * Hkv) * Q  # q, k, v projections
        + 2 * T * T * (Q * H)  # key @ query logits
        + 3 * H * T * T  # softmax
        + 2 * T * T * (Q * H)  # softmax @ value reduction
        + 2 * T * (Q * H) * d  # output projection
    )
    n_mlp_mats = 2 if s["flavour"] == "gpt2" else 3
    dense = 2 * T * (n_mlp_mats * d * F)
    logits = 2 * T * d * V
    total = embeddings + s["n_layer"] * (attention + dense) + logits
    return dict(embeddings=embeddings, attention=attention, dense=dense, logits=logits,
                total=total)


def flops_per_token(spec: Any, seq_len: int, convention: str = "6N+attn") -> float:
    """Training (forward + backward) FLOPs per token under a named convention.

    ``convention`` is one of "6N", "6N+attn", "chinchilla"; see the module
    docstring for what each counts.
    """
    if convention == "6N":
        return 6.0 * param_counts(spec)["non_embedding"]
    if convention == "6N+attn":
        s = resolved_shape(spec)
        return palm_flops_per_token(matmul_params(spec), s["n_layer"], s["n_head"],
                                    s["head_dim"], seq_len)
    if convention == "chinchilla":
        return 3.0 * chinchilla_forward_flops(spec, seq_len)["total"] / seq_len
    raise ValueError(f"unknown FLOPs convention {convention!r}; choose from {CONVENTIONS}")


def training_flops(spec: Any, seq_len: int, tokens: float,
                   convention: str = "6N+attn") -> float:
    """Total training FLOPs for ``tokens`` training tokens."""
    return flops_per_token(spec, seq_len, convention) * float(tokens)


# --------------------------------------------------------------------------- #
# Accelerator peaks and MFU
# --------------------------------------------------------------------------- #
# Dense (no structured sparsity) peak FLOP/s of ONE jax device, from the vendors'
# data sheets. Keys: dtype name -> FLOP/s. On GPUs "float32" is the plain FP32
# (CUDA-core) rate and "tfloat32" the TF32 tensor-core rate; which one applies to
# f32 matmuls depends on jax_default_matmul_precision (see matmul_peak_per_device).
# TPUs have no published f32 peak (f32 matmuls run as several bf16 passes), so they list bf16 only.
# TPU v2/v3 expose each TensorCore as a jax device (half a chip); v4, v5p and
# later expose one device per chip.
_E12 = 1e12
PEAK_FLOPS = {
    # chip name (see _chip_name for the device_kind strings): {dtype: FLOP/s}
    "TPU v2": {"bfloat16": 22.5 * _E12},  # 45 TFLOP/s per chip, 2 cores
    "TPU v3": {"bfloat16": 61.5 * _E12},  # 123 TFLOP/s per chip, 2 cores
    "TPU v4": {"bfloat16": 275 * _E12},
    "TPU v5e": {"bfloat16": 197 * _E12},  # device_kind "TPU v5 lite"
    "TPU v5p": {"bfloat16": 459 * _E12},  # device_kind "TPU v5"
    "TPU v6e": {"bfloat16": 918 * _E12},  # Trillium, device_kind "TPU v6 lite"
    "NVIDIA V100": {"float16": 125 * _E12, "float32": 15.7 * _E12},  # SXM2
    "NVIDIA A100": {"bfloat16": 312 * _E12, "float16": 312 * _E12,
                    "tfloat32": 156 * _E12, "float32": 19.5 * _E12},
    "NVIDIA H100 SXM": {"bfloat16": 989.4 * _E12, "float16": 989.4 * _E12,
                        "tfloat32": 494.7 * _E12, "float32": 66.9 * _E12},
    "NVIDIA H100 PCIe": {"bfloat16": 756 * _E12, "float16": 756 * _E12,
                         "tfloat32": 378 * _E12, "float32": 51.2 * _E12},
    "NVIDIA H200": {"bfloat16": 989.4 * _E12, "float16": 989.4 * _E12,
                    "tfloat32": 494.7 * _E12, "float32": 66.9 * _E12},
}

_DTYPE_ALIASES = {
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "f16": "float16", "float16": "float16", "half": "float16",
    "fp32": "float32", "f32": "float32", "float32": "float32",
    "tf32": "tfloat32", "tfloat32": "tfloat32",
}


def _dtype_name(dtype: Any) -> str:
    """A dtype spelling ("bf16", "jnp.float32", ...) as a PEAK_FLOPS dtype key."""
    return _DTYPE_ALIASES.get(str(dtype).lower().replace("jnp.", ""), str(dtype))


def _chip_name(kind: str) -> Optional[str]:
    """Map a ``jax.Device.device_kind`` string onto a PEAK_FLOPS key (or None)."""
    k = " ".join(kind.lower().replace("-", " ").split())
    if k.startswith("tpu"):
        rest = k[3:].strip()
        if rest.startswith(("v6 lite", "v6e")):
            return "TPU v6e"
        if rest.startswith(("v5 lite", "v5e", "v5litepod")):
            return "TPU v5e"
        if rest in ("v5", "v5p") or rest.startswith("v5p"):
            return "TPU v5p"
        if rest == "v4":
            return "TPU v4"  # not "v4 lite" (v4i), which is not listed
        if rest == "v3":
            return "TPU v3"
        if rest == "v2":
            return "TPU v2"
        return None
    if "nvidia" not in k and not k.startswith(("a100", "h100", "h200", "v100")):
        return None
    if "h200" in k:
        return "NVIDIA H200" if "nvl" not in k else None
    if "h100" in k:
        if "pcie" in k:
            return "NVIDIA H100 PCIe"
        if "nvl" in k:
            return None
        return "NVIDIA H100 SXM"  # "NVIDIA H100 80GB HBM3" is the SXM part
    if "a100" in k:
        return "NVIDIA A100"
    if "v100" in k:
        return "NVIDIA V100"
    return None


def peak_flops_per_device(device_kind: Any, dtype: str = "bfloat16") -> Optional[float]:
    """Dense peak FLOP/s of one device, or None when unknown (CPU, other chips).

    ``device_kind`` is a ``jax.Device.device_kind`` string (a ``jax.Device`` is
    accepted too), e.g. "TPU v4", "TPU v5 lite", "NVIDIA H100 80GB HBM3".
    ``dtype`` is the matmul input type: bfloat16, float16, float32 or tfloat32.
    Never guess: a None peak means MFU must be left out.
    """
    kind = getattr(device_kind, "device_kind", device_kind)
    if not isinstance(kind, str):
        return None
    dtype = _dtype_name(dtype)
    chip = _chip_name(kind)
    if chip is None:
        return None
    return PEAK_FLOPS[chip].get(dtype)


# jax_default_matmul_precision values that keep float32 dots in full float32 on GPUs
_FULL_F32 = {"highest", "float32", "f32_f32_f32"}


def matmul_peak_per_device(device_kind: Any, dtype: str, precision: Optional[str] = None) -> Optional[float]:
    """The peak that bounds a model's matmuls in ``dtype`` under ``precision``
    (``jax.config.jax_default_matmul_precision``): ``dtype``'s own peak, except float32 on NVIDIA
    GPUs, where XLA runs dots on the TF32 tensor cores unless the precision asks for full float32.
    Measured: the baby GPT's float32 step ran at about 68 model TFLOP/s on an H200, above the
    66.9 of its plain FP32 units, so the FP32 peak gave an MFU above 1."""
    if _dtype_name(dtype) == "float32" and str(precision or "default").lower() not in _FULL_F32:
        tf32 = peak_flops_per_device(device_kind, "tfloat32")
        if tf32:
            return tf32
    return peak_flops_per_device(device_kind, dtype)


def mfu(tokens_per_sec: float, flops_per_token: float, n_devices: int,
        peak: Optional[float]) -> Optional[float]:
    """Model FLOPs utilisation: achieved model FLOP/s over ``n_devices * peak``.

    Returns None when ``peak`` is None or not positive (unknown hardware).
    """
    if peak is None or not peak > 0:
        return None
    if n_devices <= 0:
        raise ValueError(f"n_devices must be positive, got {n_devices}")
    return float(tokens_per_sec) * float(flops_per_token) / (n_devices * float(peak))
