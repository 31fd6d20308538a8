"""The experiment: a model spec and an Optax schedule side by side, plus optimizer, data,
training and mesh settings. Frozen dataclasses, plain data: nothing here builds anything.

`Experiment.validate()` checks every field against its declared range
(gptjax/config/fields.py) and then the shapes that must fit together, before
anything is compiled or written.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from gptjax.config.data import TextData
from gptjax.config.fields import (NON_NEGATIVE, POSITIVE, UNIT_OPEN, Rule, at_least, between, check_fields, field,
                                  one_of)
from gptjax.errors import ConfigError

DTYPES = one_of("float32", "bfloat16", "float16")
ATTENTION = ("auto", "flash", "xla", "cudnn", "splash", "naive")
MESH_SIZE = Rule(lambda v: v == -1 or v > 0, "a positive size, or -1 (the remaining devices)")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A decoder-only Transformer. `flavour` picks GPT-2 or LLaMA defaults."""

    flavour: str = field("gpt2", one_of("gpt2", "llama"))
    n_layer: int = field(6, POSITIVE)
    n_head: int = field(6, POSITIVE)
    n_kv_head: int = field(0, NON_NEGATIVE)  # 0: same as n_head (multi-head); fewer: grouped-query
    d_model: int = field(384, POSITIVE)
    d_ff: int = field(0, NON_NEGATIVE)  # 0: 4*d_model for gpt2, SwiGLU rounding for llama
    vocab_size: int = field(0, NON_NEGATIVE)  # 0: taken from the tokenizer
    max_seq_len: int = field(256, POSITIVE)
    dropout: float = field(0.0, UNIT_OPEN)
    tie_embeddings: bool = True
    bias: bool = True  # gpt2: biases in linear layers and LayerNorms (llama never has them)
    rope_theta: float = field(10000.0, POSITIVE)
    norm_eps: float = field(1e-5, POSITIVE)
    attention: str = field("auto", one_of(*ATTENTION))  # naive: the benchmark reference
    attention_block: int = field(64, POSITIVE)  # query block of the flash kernel (gptjax/model/flash_attention.py)
    loss_chunk: int = field(0, NON_NEGATIVE)  # >0: cross-entropy over this many positions at a time
    # <1: the output layer runs only at the loss's positions, at most this share of each row (a batch
    # with a fuller row takes all positions, so the loss is exact); pays when the loss covers part of a row
    loss_capacity: float = field(1.0, Rule(lambda v: 0 < v <= 1, "a share in (0, 1]"))
    dtype: str = field("float32", DTYPES)  # compute dtype
    param_dtype: str = field("float32", DTYPES)
    remat: str = field("none", one_of("none", "full", "dots", "dots_no_batch"))
    scan_layers: bool = False
    # quantization-aware training: every kernel and the embedding fake-quantized per channel in the
    # forward pass, full-precision gradients (straight-through); gptjax/model/quant.py
    quant: str = field("none", one_of("none", "int8", "int4"))
    # the first N layers attend within each token's own line only (a line ends with the newline
    # token, which belongs to it); the layers after see the whole context. Each line is read as a unit
    # before lines are compared, the sentence-level bias of memory networks (gptjax/model/lines.py)
    line_local_layers: int = field(0, NON_NEGATIVE)
    line_break_id: int = field(-1, Rule(lambda v: v >= -1, "-1 (the tokenizer's newline) or a token id"))
    # true: the layers after the line-local ones see, of the lines before, only their ends (each line's
    # newline, which the line-local layers made a summary of its line), and their own line whole: each
    # such layer is one hop of attention over sentences, as in End-To-End Memory Networks (gptjax/model/lines.py)
    line_memory: bool = False

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def ff_dim(self) -> int:
        if self.d_ff:
            return self.d_ff
        if self.flavour == "llama":
            hidden = int(2 * 4 * self.d_model / 3)
            return 256 * -(-hidden // 256)
        return 4 * self.d_model

    @property
    def is_llama(self) -> bool:
        return self.flavour == "llama"

    @property
    def use_bias(self) -> bool:
        return self.bias and not self.is_llama


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule as data; gptjax.train.optim.build_schedule makes the Optax one."""

    kind: str = field("warmup_cosine", one_of("warmup_cosine", "wsd", "constant"))
    peak_lr: float = field(1e-3, POSITIVE)
    warmup_steps: int = field(100, NON_NEGATIVE)
    end_lr: float = field(1e-4, NON_NEGATIVE)  # cosine floor, and the end of WSD's decay
    decay_fraction: float = field(0.2, between(0, 1, low_open=True))  # WSD: share of steps spent decaying


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """AdamW with decoupled weight decay on matrices only, and global-norm clipping."""

    b1: float = field(0.9, UNIT_OPEN)
    b2: float = field(0.95, UNIT_OPEN)
    eps: float = field(1e-8, POSITIVE)
    weight_decay: float = field(0.1, NON_NEGATIVE)
    clip_norm: float = field(1.0, NON_NEGATIVE)  # 0 disables clipping
    grad_accum: int = field(1, POSITIVE)  # micro-batches per step; batch_size is the whole step's batch
    freeze: str = ""  # regex over parameter paths (e.g. "^llm/|^image_encoder/"): matches get no updates
    # LoRA (gptjax/train/lora.py): rank > 0 adds adapters beside the kernels whose path matches
    # lora_targets (re.search) and trains only them; the update is (lora_alpha / lora_rank) * A @ B
    lora_rank: int = field(0, NON_NEGATIVE)
    lora_alpha: float = field(16.0, POSITIVE)
    lora_targets: str = r"(attn|mlp)/.*(kernel|weight)$"  # the attention and MLP projections
    # regex over parameter paths trained in full beside the adapters (PEFT's modules_to_save; "(bias|scale)$":
    # every bias and norm, BitFit's few parameters); empty: the adapters alone
    lora_also_train: str = ""
    # a moving average of the parameters (gptjax/train/ema.py), evaluated and restored in their place; 0: none
    ema_decay: float = field(0.0, UNIT_OPEN)


@dataclasses.dataclass(frozen=True)
class Train:
    steps: int = field(2000, POSITIVE)
    batch_size: int = field(12, POSITIVE)  # global batch, in sequences
    seed: int = field(1337, NON_NEGATIVE)
    eval_every: int = field(250, POSITIVE)
    eval_batches: int = field(20, POSITIVE)
    checkpoint_every: int = field(500, NON_NEGATIVE)  # 0: only at the end (and when preempted)
    keep_checkpoints: int = field(3, at_least(1))
    log_every: int = field(10, POSITIVE)
    sample_tokens: int = field(200, NON_NEGATIVE)  # printed at the end of a run; 0 disables
    init_from: str = ""  # another run's workdir: start from its parameters where names and shapes match
    init_from_partial: bool = False  # allow init_from to fill only some parameters (e.g. LLM of a VLM)
    nonfinite: str = field("stop", one_of("stop", "skip"))  # what a non-finite loss or gradient does
    max_skips: int = field(10, POSITIVE)  # with nonfinite=skip: stop after this many bad steps in a row
    spike_sigmas: float = field(6.0, NON_NEGATIVE)  # log a loss spike this many running std devs above; 0 off
    # training targets (1 - e) * one-hot + e / vocab (Szegedy et al. 2016); evaluation loss stays plain
    label_smoothing: float = field(0.0, UNIT_OPEN)
    # knowledge distillation (gptjax/train/distill.py): a trained run's workdir as the frozen teacher;
    # loss = alpha * T^2 * KL(teacher || student, both at temperature T) + (1 - alpha) * cross-entropy
    distill_from: str = ""
    distill_temperature: float = field(2.0, POSITIVE)
    distill_alpha: float = field(0.5, between(0, 1))


@dataclasses.dataclass(frozen=True)
class Mesh:
    """Device mesh shape; -1 on one axis means all remaining devices."""

    data: int = field(-1, MESH_SIZE)
    fsdp: int = field(1, MESH_SIZE)
    tensor: int = field(1, MESH_SIZE)
    # a host without an accelerator: split its CPU into this many JAX devices (data parallel
    # over the cores); 0 leaves JAX's one CPU device. Helps small models, whose ops are too
    # small to keep several threads busy (gptjax/parallel/distributed.py: split_cpu)
    cpu_devices: int = field(0, NON_NEGATIVE)


@dataclasses.dataclass(frozen=True)
class Experiment:
    model: ModelSpec = ModelSpec()
    schedule: Schedule = Schedule()
    optimizer: Optimizer = Optimizer()
    data: Any = TextData()  # a data section with a `kind` (gptjax/data/build.py builds it)
    train: Train = Train()
    mesh: Mesh = Mesh()
    media: Any = None  # multimodal: encoders and projectors (gptjax/config/media.py)
    name: str = "experiment"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def _check_efficiency(self) -> None:
        """LoRA and distillation settings that cannot work together with the rest."""
        o, t = self.optimizer, self.train
        if o.lora_rank and o.freeze:
            raise ConfigError("optimizer.freeze and optimizer.lora_rank > 0 together: LoRA already freezes every "
                              "parameter but the adapters; leave optimizer.freeze empty")
        if o.lora_rank and o.ema_decay:
            raise ConfigError("optimizer.ema_decay with optimizer.lora_rank > 0: an average of every parameter "
                              "would undo LoRA's small optimizer state; set optimizer.ema_decay=0")
        if o.lora_also_train and not o.lora_rank:
            raise ConfigError("optimizer.lora_also_train is set but optimizer.lora_rank is 0: it names what trains "
                              "beside LoRA's adapters; set optimizer.lora_rank > 0, or use optimizer.freeze")
        if o.lora_rank and not o.lora_targets:
            raise ConfigError("optimizer.lora_targets is empty: give a regex over parameter paths")
        if t.distill_from and (self.model.loss_chunk or self.model.loss_capacity < 1):
            raise ConfigError("train.distill_from compares whole logits of teacher and student: set "
                              "model.loss_chunk=0 and model.loss_capacity=1")
        if t.distill_from and self.media is not None:
            raise ConfigError("train.distill_from is for text and task models; this experiment has media")

    def validate(self) -> "Experiment":
        """Refuse bad values and impossible shapes with a message naming the field and what would fit."""
        for section in ("model", "schedule", "optimizer", "data", "train", "mesh", "media"):
            value = getattr(self, section)
            if value is not None and not dataclasses.is_dataclass(value):
                raise ConfigError(f"{section} must be a config section (a dataclass), got {type(value).__name__}")
            if value is not None:
                check_fields(value, section)
        m, t = self.model, self.train
        if m.d_model % m.n_head:
            raise ConfigError(f"model.d_model={m.d_model} is not divisible by model.n_head={m.n_head}: "
                              "pick a width that is a multiple of the number of heads")
        if m.is_llama and m.head_dim % 2:
            raise ConfigError(f"rotary positions need an even head dim; got d_model/n_head={m.head_dim}")
        if m.n_head % m.kv_heads:
            raise ConfigError(f"model.n_kv_head={m.n_kv_head} must divide model.n_head={m.n_head} (0 = n_head)")
        if m.line_local_layers > m.n_layer:
            raise ConfigError(f"model.line_local_layers={m.line_local_layers} exceeds model.n_layer={m.n_layer}")
        if m.line_local_layers and m.scan_layers:
            raise ConfigError("model.line_local_layers needs model.scan_layers=false: scanned layers share one mask")
        if m.line_memory and not m.line_local_layers:
            raise ConfigError("model.line_memory=true needs model.line_local_layers >= 1: the line-local layers "
                              "make the summary of each line that the later layers attend to")
        if m.line_local_layers and self.media is not None:
            raise ConfigError("model.line_local_layers is for text and task models; this experiment has media")
        if m.loss_chunk and self.media is not None:
            raise ConfigError("model.loss_chunk is for text models; multimodal experiments compute whole logits "
                              "(set model.loss_chunk=0)")
        if m.loss_capacity < 1 and self.media is not None:
            raise ConfigError("model.loss_capacity is for text models; multimodal experiments compute whole "
                              "logits (set model.loss_capacity=1)")
        if t.batch_size % self.optimizer.grad_accum:
            raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by "
                              f"optimizer.grad_accum={self.optimizer.grad_accum}")
        for key in ("freeze", "lora_targets", "lora_also_train"):
            try:
                re.compile(getattr(self.optimizer, key))
            except re.error as e:
                raise ConfigError(f"optimizer.{key}={getattr(self.optimizer, key)!r} is not a valid regular "
                                  f"expression: {e}") from None
        self._check_efficiency()
        if sum(getattr(self.mesh, a) == -1 for a in ("data", "fsdp", "tensor")) > 1:
            raise ConfigError("at most one mesh axis may be -1")
        for section in (self.data, self.media):
            if section is not None and hasattr(section, "validate"):
                section.validate(self)
        return self
