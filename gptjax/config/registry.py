"""Config sections that come in several kinds (text, digits, mixture, ... data; media encoders)
carry a `kind` field; a saved config.json finds each section's class here by that field."""
from __future__ import annotations

from gptjax.errors import ConfigError

CONFIG_KINDS: dict[str, type] = {}


def config_kind(cls):
    """Class decorator: register a config dataclass under its default `kind`."""
    CONFIG_KINDS[cls.kind] = cls
    return cls


def kind_class(kind: str) -> type:
    if kind not in CONFIG_KINDS:
        raise ConfigError(f"unknown config kind {kind!r}; known: {', '.join(sorted(CONFIG_KINDS))}")
    return CONFIG_KINDS[kind]
