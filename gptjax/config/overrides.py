"""Experiments from files, `key=value` overrides, and configs read back from JSON.

`load_experiment(path)` imports an experiment file and returns its
`EXPERIMENT`; `apply_overrides` takes strings such as `model.d_model=128`,
parses each against the field's type and returns a new Experiment;
`from_dict` rebuilds a saved config.json (each section's class is found by
its `kind`).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import typing
from typing import Any

from gptjax.config.experiment import Experiment
from gptjax.config.fields import TYPE_WORDS
from gptjax.config.registry import kind_class
from gptjax.errors import ConfigError


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
    elif typ in (int, float, str):
        try:
            return typ(raw)
        except ValueError:
            pass
    else:
        raise ConfigError(f"{key}: fields of type {typ} cannot be set from the command line")
    raise ConfigError(f"{key}={raw!r}: expected {TYPE_WORDS[typ]}")


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


def split_override(item: str) -> tuple[str, str]:
    """`key=value` -> (key, value); ConfigError for anything else."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.steps=100)")
    return key.strip(), raw.strip()


def apply_overrides(exp: Experiment, overrides: list[str] | None) -> Experiment:
    for item in overrides or []:
        exp = set_key(exp, *split_override(item))
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
            typ = kind_class(value["kind"])
        if dataclasses.is_dataclass(typ) and isinstance(value, dict):
            value = from_dict(typ, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def load_python_file(path, variable: str, cls: type, what: str, example: str):
    """The object named `variable` in the Python file at `path`, which must be a `cls`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {str(path)!r} not found; pass a .py file defining "
                          f"{variable} = {cls.__name__}(...), e.g. {example}")
    spec = importlib.util.spec_from_file_location(f"gptjax_{what}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"syntax error in {what} file {path}:{e.lineno}: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - any failure importing the file is the user's to fix
        raise ConfigError(f"{what} file {path} failed to load: {type(e).__name__}: {e}") from None
    obj = getattr(module, variable, None)
    if not isinstance(obj, cls):
        raise ConfigError(f"{what} file {path} must define {variable} = {cls.__name__}(...)")
    return obj


def load_experiment(path: str | pathlib.Path) -> Experiment:
    """Import an experiment file and return its `EXPERIMENT` (an Experiment)."""
    exp = load_python_file(path, "EXPERIMENT", Experiment, "experiment", "experiments/shakespeare_char_cpu.py")
    if exp.name == "experiment":
        exp = dataclasses.replace(exp, name=pathlib.Path(path).stem)
    return exp


def resolve_experiment(path, overrides=None) -> Experiment:
    return apply_overrides(load_experiment(path), overrides).validate()


def read_config(path) -> Experiment:
    """The Experiment a run saved as config.json."""
    import json

    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}; it should be the config.json scripts/train.py wrote") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a saved experiment (a JSON object)")
    try:
        return from_dict(Experiment, data)
    except TypeError as e:
        raise ConfigError(f"{path} does not describe an experiment: {e}") from None
