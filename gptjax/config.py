"""Experiment configuration as data: frozen dataclasses, dotted overrides, JSON.

An experiment file builds an `Experiment` (model spec + Optax schedule + optimizer
+ data + training + mesh). `apply_overrides` takes `key=value` strings such as
`model.d_model=128`, checks them against the dataclass field types, and returns a
new Experiment; `Experiment.validate()` refuses impossible shapes before anything
is compiled or written.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import sys
import typing
from typing import Any


class ConfigError(ValueError):
    """A bad experiment, override or shape; the message says what would be right."""


# Config sections that come in several kinds (text or multimodal data, media
# encoders) carry a `kind` field; from_dict finds their class here.
CONFIG_KINDS: dict[str, type] = {}
# modules that register further kinds when imported (looked up on a miss)
KIND_PROVIDERS = ("gptjax.multimodal_config",)


def config_kind(cls):
    """Class decorator: register a config dataclass under its default `kind`."""
    CONFIG_KINDS[cls.kind] = cls
    return cls


def _kind_class(kind: str):
    if kind not in CONFIG_KINDS:
        for module in KIND_PROVIDERS:
            try:
                importlib.import_module(module)
            except ImportError:
                pass
    if kind not in CONFIG_KINDS:
        raise ConfigError(f"unknown config kind {kind!r}; known: {', '.join(sorted(CONFIG_KINDS))}")
    return CONFIG_KINDS[kind]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A decoder-only Transformer. `flavour` picks GPT-2 or LLaMA defaults."""

    flavour: str = "gpt2"  # gpt2 | llama
    n_layer: int = 6
    n_head: int = 6
    n_kv_head: int = 0  # 0: same as n_head (multi-head); fewer: grouped-query
    d_model: int = 384
    d_ff: int = 0  # 0: 4*d_model for gpt2, SwiGLU rounding for llama
    vocab_size: int = 0  # 0: taken from the tokenizer
    max_seq_len: int = 256
    dropout: float = 0.0
    tie_embeddings: bool = True
    bias: bool = True  # gpt2: biases in linear layers and LayerNorms (llama never has them)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    attention: str = "auto"  # auto | flash | xla | cudnn | splash | naive (the benchmark reference)
    attention_block: int = 64  # query block of the flash kernel (gptjax/flash_attention.py)
    loss_chunk: int = 0  # >0: cross-entropy over this many positions at a time, never all logits at once
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"
    remat: str = "none"  # none | full | dots | dots_no_batch
    scan_layers: bool = False

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
    """A learning-rate schedule as data; `build(steps)` makes the Optax schedule."""

    kind: str = "warmup_cosine"  # warmup_cosine | wsd | constant
    peak_lr: float = 1e-3
    warmup_steps: int = 100
    end_lr: float = 1e-4  # cosine floor, and the end of WSD's decay
    decay_fraction: float = 0.2  # WSD: share of steps spent decaying

    def build(self, total_steps: int):
        import optax

        warmup = min(self.warmup_steps, max(total_steps - 1, 0))
        if self.kind == "constant":
            if warmup == 0:
                return optax.constant_schedule(self.peak_lr)
            return optax.join_schedules(
                [optax.linear_schedule(0.0, self.peak_lr, warmup),
                 optax.constant_schedule(self.peak_lr)], [warmup])
        if self.kind == "warmup_cosine":
            return optax.warmup_cosine_decay_schedule(
                0.0, self.peak_lr, warmup, max(total_steps, warmup + 1), self.end_lr)
        if self.kind == "wsd":
            decay = max(1, int(round(self.decay_fraction * total_steps)))
            stable = max(total_steps - warmup - decay, 0)
            return optax.join_schedules(
                [optax.linear_schedule(0.0, self.peak_lr, max(warmup, 1)),
                 optax.constant_schedule(self.peak_lr),
                 optax.linear_schedule(self.peak_lr, self.end_lr, decay)],
                [max(warmup, 1), max(warmup, 1) + stable])
        raise ConfigError(f"schedule.kind={self.kind!r}: expected one of warmup_cosine, wsd, constant")


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """AdamW with decoupled weight decay on matrices only, and global-norm clipping."""

    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_norm: float = 1.0  # 0 disables clipping
    grad_accum: int = 1  # micro-batches per step; batch_size is the whole step's batch
    freeze: str = ""  # regex over parameter paths (e.g. "^llm/|^image_encoder/"): matches get no updates


@config_kind
@dataclasses.dataclass(frozen=True)
class TextData:
    """A text corpus: a builder of ours (tinyshakespeare, text files) or a stock TFDS name."""

    dataset: str = "tinyshakespeare"  # tinyshakespeare | text | any TFDS name (e.g. lm1b)
    files: str = ""  # path or glob for dataset=text (or to override tinyshakespeare's source)
    tokenizer: str = "char"  # char | byte | sentencepiece
    sp_model: str = ""  # a trained sentencepiece .model (tokenizer=sentencepiece)
    sp_vocab_size: int = 4096  # when a sentencepiece model must be trained
    data_dir: str = ""  # TFDS data dir; empty: the gptjax cache
    text_key: str = "text"  # feature holding text in a stock TFDS dataset
    pack: str = "stream"  # stream (nanoGPT) | segments (documents masked apart)
    kind: str = "text"

    def validate(self, exp: "Experiment") -> None:
        if self.tokenizer not in ("char", "byte", "sentencepiece"):
            raise ConfigError(f"data.tokenizer={self.tokenizer!r}: expected char, byte or sentencepiece")
        if self.pack not in ("stream", "segments"):
            raise ConfigError(f"data.pack={self.pack!r}: expected stream or segments")

    def build(self, exp: "Experiment", tokenizer_dir=None):
        """The language-modelling data object the training loop reads."""
        from gptjax.data.text_pipeline import TextLMData

        return TextLMData(dataset=self.dataset, tokenizer=self.tokenizer, seq_len=exp.model.max_seq_len,
                          seed=exp.train.seed, files=self.files, data_dir=self.data_dir, sp_model=self.sp_model,
                          sp_vocab_size=self.sp_vocab_size, text_key=self.text_key, pack=self.pack,
                          tokenizer_dir=tokenizer_dir)


@dataclasses.dataclass(frozen=True)
class Train:
    steps: int = 2000
    batch_size: int = 12  # global batch, in sequences
    seed: int = 1337
    eval_every: int = 250
    eval_batches: int = 20
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    sample_tokens: int = 200  # printed at the end of a run; 0 disables
    init_from: str = ""  # another run's workdir: start from its parameters where names and shapes match
    nonfinite: str = "stop"  # stop | skip: what a non-finite loss or gradient does
    max_skips: int = 10  # with nonfinite=skip: stop after this many bad steps in a row
    spike_sigmas: float = 6.0  # log a loss spike this many running std devs above the mean; 0 off


@dataclasses.dataclass(frozen=True)
class Mesh:
    """Device mesh shape; -1 on one axis means all remaining devices."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    # a host without an accelerator: split its CPU into this many JAX devices (data parallel
    # over the cores); 0 leaves JAX's one CPU device. Helps small models, whose ops are too
    # small to keep several threads busy (gptjax/distributed.py: split_cpu)
    cpu_devices: int = 0


@dataclasses.dataclass(frozen=True)
class Experiment:
    model: ModelSpec = ModelSpec()
    schedule: Schedule = Schedule()
    optimizer: Optimizer = Optimizer()
    data: Any = TextData()  # a config with `kind` and `build(exp, tokenizer_dir)`
    train: Train = Train()
    mesh: Mesh = Mesh()
    media: Any = None  # multimodal: encoders and projectors (see gptjax/multimodal_config.py)
    name: str = "experiment"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def validate(self) -> "Experiment":
        """Refuse impossible shapes with a message naming the field and what would fit."""
        m, t = self.model, self.train
        if m.flavour not in ("gpt2", "llama"):
            raise ConfigError(f"model.flavour={m.flavour!r}: expected 'gpt2' or 'llama'")
        positive = {"model.n_layer": m.n_layer, "model.n_head": m.n_head, "model.d_model": m.d_model,
                    "model.max_seq_len": m.max_seq_len, "train.steps": t.steps,
                    "train.batch_size": t.batch_size, "train.eval_batches": t.eval_batches,
                    "train.log_every": t.log_every, "optimizer.grad_accum": self.optimizer.grad_accum}
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key}={value}: must be a positive integer")
        if m.d_model % m.n_head:
            raise ConfigError(f"model.d_model={m.d_model} is not divisible by model.n_head={m.n_head}: "
                              "pick a width that is a multiple of the number of heads")
        if m.is_llama and m.head_dim % 2:
            raise ConfigError(f"rotary positions need an even head dim; got d_model/n_head={m.head_dim}")
        if m.n_kv_head < 0 or m.n_head % m.kv_heads:
            raise ConfigError(f"model.n_kv_head={m.n_kv_head} must divide model.n_head={m.n_head} (0 = n_head)")
        if not 0.0 <= m.dropout < 1.0:
            raise ConfigError(f"model.dropout={m.dropout}: must be in [0, 1)")
        if m.attention not in ("auto", "flash", "xla", "cudnn", "splash", "naive"):
            raise ConfigError(f"model.attention={m.attention!r}: expected auto, flash, xla, cudnn, splash or naive")
        if m.attention_block < 1:
            raise ConfigError(f"model.attention_block={m.attention_block}: must be a positive integer")
        if m.loss_chunk < 0:
            raise ConfigError(f"model.loss_chunk={m.loss_chunk}: must be 0 (whole logits) or a positive length")
        if m.loss_chunk and self.media is not None:
            raise ConfigError("model.loss_chunk is for text models; multimodal experiments compute whole logits "
                              "(set model.loss_chunk=0)")
        for key in ("dtype", "param_dtype"):
            if getattr(m, key) not in ("float32", "bfloat16", "float16"):
                raise ConfigError(f"model.{key}={getattr(m, key)!r}: expected float32, bfloat16 or float16")
        if m.remat not in ("none", "full", "dots", "dots_no_batch"):
            raise ConfigError(f"model.remat={m.remat!r}: expected none, full, dots or dots_no_batch")
        if t.nonfinite not in ("stop", "skip"):
            raise ConfigError(f"train.nonfinite={t.nonfinite!r}: expected stop or skip")
        if t.batch_size % self.optimizer.grad_accum:
            raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by "
                              f"optimizer.grad_accum={self.optimizer.grad_accum}")
        if self.schedule.kind not in ("warmup_cosine", "wsd", "constant"):
            raise ConfigError(f"schedule.kind={self.schedule.kind!r}: expected warmup_cosine, wsd or constant")
        if hasattr(self.data, "validate"):
            self.data.validate(self)
        if self.media is not None and hasattr(self.media, "validate"):
            self.media.validate(self)
        for axis in ("data", "fsdp", "tensor"):
            v = getattr(self.mesh, axis)
            if v == 0 or v < -1:
                raise ConfigError(f"mesh.{axis}={v}: must be a positive size or -1 (the remaining devices)")
        if sum(getattr(self.mesh, a) == -1 for a in ("data", "fsdp", "tensor")) > 1:
            raise ConfigError("at most one mesh axis may be -1")
        if self.mesh.cpu_devices < 0:
            raise ConfigError(f"mesh.cpu_devices={self.mesh.cpu_devices}: expected 0 (one CPU device) or a "
                              "positive number of CPU devices")
        return self


# ---------------------------------------------------------------- overrides

def _field_types(obj_or_cls) -> dict[str, Any]:
    """Field name -> type; `Any` fields report the type of the value they hold."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    hints = typing.get_type_hints(cls)
    types = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    if not isinstance(obj_or_cls, type):
        for name, typ in types.items():
            if typ is Any:
                types[name] = type(getattr(obj_or_cls, name))
    return types


def valid_keys(obj=None, prefix: str = "") -> list[str]:
    """All dotted keys of an Experiment, e.g. `model.d_model`."""
    obj = obj if obj is not None else Experiment()
    keys = []
    for name in _field_types(obj):
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value):
            keys += valid_keys(value, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _parse(key: str, raw: str, typ) -> Any:
    if typ is bool:
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key}={raw!r}: expected a bool (true or false)")
    if typ is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r}: expected an int") from None
    if typ is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r}: expected a float (e.g. 3e-4)") from None
    if typ is str:
        return raw
    raise ConfigError(f"{key}: fields of type {typ} cannot be set from the command line")


def set_key(obj, dotted: str, raw: str, _full: str | None = None):
    """Return a copy of `obj` with the dotted field replaced by `raw` parsed to its type."""
    full = _full or dotted
    head, _, rest = dotted.partition(".")
    types = _field_types(obj)
    if head not in types:
        section = full[: len(full) - len(dotted)].rstrip(".")
        options = valid_keys(obj, f"{section}." if section else "")
        raise ConfigError(f"unknown key {full!r}; valid keys are: {', '.join(options)}")
    value = getattr(obj, head)
    if dataclasses.is_dataclass(value):
        if not rest:
            raise ConfigError(f"{full!r} is a section; set one of its fields: "
                              f"{', '.join(valid_keys(value, full + '.'))}")
        return dataclasses.replace(obj, **{head: set_key(value, rest, raw, full)})
    if value is None and rest:
        raise ConfigError(f"{full!r}: this experiment has no {head!r} section")
    if rest:
        raise ConfigError(f"unknown key {full!r}: {full[:len(full) - len(rest) - 1]!r} has no fields")
    return dataclasses.replace(obj, **{head: _parse(full, raw, types[head])})


def apply_overrides(exp: Experiment, overrides: list[str] | None) -> Experiment:
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.steps=100)")
        exp = set_key(exp, key.strip(), raw.strip())
    return exp


def from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass from `to_dict` output; unknown keys refused."""
    types = _field_types(cls)
    kwargs = {}
    for name, value in data.items():
        if name not in types:
            raise ConfigError(f"unknown key {name!r} for {cls.__name__}")
        typ = types[name]
        if isinstance(value, dict) and "kind" in value and not dataclasses.is_dataclass(typ):
            typ = _kind_class(value["kind"])
        if dataclasses.is_dataclass(typ) and isinstance(value, dict):
            value = from_dict(typ, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def load_experiment(path: str | pathlib.Path) -> Experiment:
    """Import an experiment file and return its `EXPERIMENT` (an Experiment)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} not found; pass a .py file from experiments/, "
                          "e.g. experiments/shakespeare_char_cpu.py")
    spec = importlib.util.spec_from_file_location(f"gptjax_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"syntax error in experiment file {path}:{e.lineno}: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - any failure importing the file is the user's to fix
        raise ConfigError(f"experiment file {path} failed to load: {type(e).__name__}: {e}") from None
    exp = getattr(module, "EXPERIMENT", None)
    if not isinstance(exp, Experiment):
        raise ConfigError(f"experiment file {path} must define EXPERIMENT = Experiment(...)")
    if exp.name == "experiment":
        exp = dataclasses.replace(exp, name=path.stem)
    return exp


def resolve_experiment(path, overrides=None) -> Experiment:
    return apply_overrides(load_experiment(path), overrides).validate()


def main_guard(fn):
    """Run a CLI main: bad configuration or data prints one line and exits 2."""
    def wrapper(*args, **kwargs):
        from gptjax.data.corpora import DataError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, DataError) as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    return wrapper
