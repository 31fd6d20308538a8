"""Fields that carry their own accepted range, and the one check that applies them.

A config dataclass declares `steps: int = field(2000, POSITIVE)`; `check_fields`
then refuses a wrong type, a NaN or infinity, or a value outside the rule with
one message naming the dotted key, the value and what is accepted. Every
section of an Experiment is checked this way before anything runs.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable

from gptjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Rule:
    """A test on one value and the words that say what it accepts."""

    test: Callable[[Any], bool]
    accepted: str

    def __call__(self, value) -> bool:
        try:
            return bool(self.test(value))
        except TypeError:
            return False


POSITIVE = Rule(lambda v: v > 0, "a positive number")
NON_NEGATIVE = Rule(lambda v: v >= 0, "0 or more")
UNIT_OPEN = Rule(lambda v: 0 <= v < 1, "a number in [0, 1)")


def at_least(low) -> Rule:
    return Rule(lambda v: v >= low, f"{low} or more")


def between(low, high, *, high_open: bool = False, low_open: bool = False) -> Rule:
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"
    return Rule(lambda v: (v > low if low_open else v >= low) and (v < high if high_open else v <= high),
                f"a number in {lo}{low}, {high}{hi}")


def one_of(*options) -> Rule:
    return Rule(lambda v: v in options, "one of " + ", ".join(map(str, options)))


def field(default, rule: Rule | None = None):
    """A dataclass field with a default and the rule its value must pass."""
    return dataclasses.field(default=default, metadata={"rule": rule} if rule else {})


def _type_ok(value, typ) -> bool:
    if typ is bool:
        return isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is str:
        return isinstance(value, str)
    return True  # sections and Any: checked by their own class


TYPE_WORDS = {bool: "a bool (true or false)", int: "an int", float: "a float (e.g. 3e-4)", str: "a string"}


def check_fields(obj, prefix: str) -> None:
    """Refuse any field of the dataclass `obj` whose type or value its declaration does not accept."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        key, value, typ = f"{prefix}.{f.name}", getattr(obj, f.name), hints.get(f.name, Any)
        if dataclasses.is_dataclass(value):
            check_fields(value, key)
            continue
        if not _type_ok(value, typ):
            raise ConfigError(f"{key}={value!r}: expected {TYPE_WORDS[typ]}, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value}: must be a finite number")
        rule = f.metadata.get("rule")
        if rule is not None and not rule(value):
            raise ConfigError(f"{key}={value!r}: expected {rule.accepted}")


def choice(key: str, value: str, options) -> None:
    """Refuse `value` unless it is one of `options` (for values read from comma-separated lists)."""
    if value not in options:
        raise ConfigError(f"{key}={value!r}: expected one of {', '.join(options)}")
