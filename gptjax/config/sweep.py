"""Ablation sweeps as data: a base experiment and the overrides to vary.

A sweep file defines ``SWEEP = Sweep(...)``::

    SWEEP = Sweep(base="experiments/shakespeare_char_cpu.py",
                  grid={"model.d_model": [64, 128]},            # every combination
                  zip={"model.n_layer": [2, 4], "train.steps": [500, 1000]},  # varied together
                  random={"schedule.peak_lr": LogUniform(1e-4, 3e-3)}, samples=4,
                  seeds=[0, 1],                                  # -> train.seed
                  fixed={"train.eval_every": 100},               # applied to every run
                  slurm={"gpus-per-node": 1, "time": "4:00:00"},  # extra #SBATCH lines (--backend slurm)
                  tpu={"zone": "us-east5-a", "accelerator_type": "v5p-8"})  # --backend tpu-vm defaults

`expand` turns it into grid x zip x samples x seeds runs. Each run's name is
built from its own swept values only (``d_model=64,peak_lr=3.2e-4,seed=0``),
so it is the same on every invocation whatever else the sweep holds. Random
draws depend only on (sweep seed, sample index, key) and are rounded to a few
significant digits, so the name shows the exact value used. `plan` validates
every run against the base experiment before anything runs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import pathlib
import re
import zlib
from decimal import Decimal
from typing import Any

from gptjax.config.experiment import Experiment
from gptjax.config.overrides import apply_overrides, load_experiment, load_python_file, split_override
from gptjax.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]  # the repository
SEED_KEY = "train.seed"
MAX_NAME_LEN = 120


# ---------------------------------------------------------------- distributions

def _round_sig(x: float, digits: int) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits - 1}e}")


@dataclasses.dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high], rounded to `digits` significant digits."""

    low: float
    high: float
    digits: int = 3

    def check(self, key: str):
        if not self.low < self.high:
            raise ConfigError(f"random[{key!r}]: Uniform needs low < high, got {self.low}, {self.high}")

    def sample(self, rng):
        return _round_sig(float(rng.uniform(self.low, self.high)), self.digits)


@dataclasses.dataclass(frozen=True)
class LogUniform(Uniform):
    """A positive float whose log is uniform on [log low, log high] (learning rates)."""

    def check(self, key: str):
        if not 0 < self.low < self.high:
            raise ConfigError(f"random[{key!r}]: LogUniform needs 0 < low < high, got {self.low}, {self.high}")

    def sample(self, rng):
        return _round_sig(float(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))), self.digits)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `options`, uniformly."""

    options: tuple

    def check(self, key: str):
        if not len(self.options):
            raise ConfigError(f"random[{key!r}]: Choice needs at least one option")

    def sample(self, rng):
        return self.options[int(rng.integers(len(self.options)))]


# ---------------------------------------------------------------- the sweep

@dataclasses.dataclass(frozen=True)
class Sweep:
    """A base experiment file and the overrides to vary; see the module docstring."""

    base: str
    grid: dict = dataclasses.field(default_factory=dict)
    zip: dict = dataclasses.field(default_factory=dict)
    random: dict = dataclasses.field(default_factory=dict)
    samples: int = 0  # random draws; each is crossed with grid x zip x seeds
    seeds: tuple = ()  # values of train.seed; empty: the base experiment's seed
    fixed: dict = dataclasses.field(default_factory=dict)  # overrides for every run; swept values win
    seed: int = 0  # seeds the random draws (not training)
    name: str = ""  # empty: the sweep file's stem
    slurm: dict = dataclasses.field(default_factory=dict)  # extra #SBATCH options, e.g. {"time": "4:00:00"}
    tpu: dict = dataclasses.field(default_factory=dict)  # defaults for --zone, --accelerator_type

    @property
    def swept_keys(self) -> list[str]:
        keys = [*self.grid, *self.zip, *self.random]
        return keys + ([SEED_KEY] if self.seeds else [])

    def check(self) -> None:
        """Refuse an ill-formed sweep (the keys themselves are checked by `plan`)."""
        sections = {"grid": self.grid, "zip": self.zip, "random": self.random, "fixed": self.fixed}
        for label, section in sections.items():
            if not isinstance(section, dict):
                raise ConfigError(f"Sweep.{label} must be a dict of dotted key -> values, got {type(section).__name__}")
        seen = {}
        for label in ("grid", "zip", "random"):
            for key in sections[label]:
                if key in seen:
                    raise ConfigError(f"key {key!r} is swept in both Sweep.{seen[key]} and Sweep.{label}")
                seen[key] = label
        if self.seeds and SEED_KEY in seen:
            raise ConfigError(f"{SEED_KEY!r} is swept in Sweep.{seen[SEED_KEY]} and by Sweep.seeds; use one")
        for key, values in self.grid.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
        for label in ("grid", "zip"):
            for key, values in sections[label].items():
                for v in values if isinstance(values, (list, tuple)) else ():
                    override_text(v)  # a number, bool or string; numbers finite
        lengths = {key: len(v) if isinstance(v, (list, tuple)) else 0 for key, v in self.zip.items()}
        if len(set(lengths.values())) > 1 or 0 in lengths.values():
            raise ConfigError(f"zip lists must be non-empty lists of equal length; got lengths {lengths}")
        for key, dist in self.random.items():
            if not hasattr(dist, "sample"):
                raise ConfigError(f"random[{key!r}] must be Uniform, LogUniform or Choice, got {dist!r}")
            dist.check(key)
        if self.random and self.samples < 1:
            raise ConfigError(f"Sweep.random is set but samples={self.samples}: give samples >= 1")
        if self.samples and not self.random:
            raise ConfigError(f"Sweep.samples={self.samples} but Sweep.random is empty")


@dataclasses.dataclass(frozen=True)
class Run:
    """One expanded run: its name and its swept values (dotted key -> value)."""

    name: str
    swept: dict

    def override_args(self, fixed: dict) -> list[str]:
        """`key=value` strings for train.py: the fixed overrides, then the swept ones (which win)."""
        return [f"{k}={override_text(v)}" for k, v in {**{k: v for k, v in fixed.items() if k not in self.swept},
                                                          **self.swept}.items()]


def override_text(value: Any) -> str:
    """How a sweep value is written as an override (full precision)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"sweep value {value!r}: expected a finite number")
    if isinstance(value, (int, float, str)):
        return str(value) if not isinstance(value, float) else repr(value)
    raise ConfigError(f"sweep value {value!r}: expected a number, bool or string")


def format_value(value: Any) -> str:
    """A short exact label: 3.2e-4, 128, 0.1, true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e5:
            return str(int(value))
        if 1e-3 <= abs(value) < 1e5:
            return repr(value)
        return format(Decimal(repr(value)).normalize(), "e").replace("e+", "e")
    return str(value)


def short_names(keys: list[str]) -> dict[str, str]:
    """Last dotted component (d_model), or the whole key where two would clash."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def run_name(swept: dict, shorts: dict[str, str]) -> str:
    """`d_model=64,peak_lr=3.2e-4,seed=0`, made safe as one folder name."""
    raw = ",".join(f"{shorts[k]}={format_value(v)}" for k, v in swept.items()) or "base"
    name = re.sub(r"[^A-Za-z0-9._,=+-]", "_", raw)
    if len(name) > MAX_NAME_LEN:  # keep it unique when cut short
        name = name[: MAX_NAME_LEN - 9] + "-" + hashlib.sha1(raw.encode()).hexdigest()[:8]
    return name


def expand(sweep: Sweep) -> list[Run]:
    """grid x zip x random samples x seeds, in that nesting order (seeds fastest)."""
    import numpy as np  # here, so that importing the config package stays light

    sweep.check()
    grid_points = [dict(zip(sweep.grid, combo)) for combo in itertools.product(*sweep.grid.values())]
    n_zip = len(next(iter(sweep.zip.values()))) if sweep.zip else 1
    zip_points = [{k: v[i] for k, v in sweep.zip.items()} for i in range(n_zip)]
    draws = [{key: dist.sample(np.random.default_rng([sweep.seed, i, zlib.crc32(key.encode())]))
              for key, dist in sweep.random.items()} for i in range(max(sweep.samples, 1))]
    seeds = [{SEED_KEY: s} for s in sweep.seeds] or [{}]
    shorts = short_names(sweep.swept_keys)
    runs = []
    for g, z, r, s in itertools.product(grid_points, zip_points, draws, seeds):
        swept = {k: {**g, **z, **r, **s}[k] for k in sweep.swept_keys}
        runs.append(Run(run_name(swept, shorts), swept))
    return runs


# ---------------------------------------------------------------- loading and validation

def load_sweep(path) -> tuple[Sweep, pathlib.Path]:
    """Import a sweep file; return its SWEEP and the resolved base experiment path."""
    path = pathlib.Path(path)
    sweep = load_python_file(path, "SWEEP", Sweep, "sweep", "experiments/sweeps/lr_width.py")
    if not sweep.name:
        sweep = dataclasses.replace(sweep, name=path.stem)
    return sweep, resolve_base(sweep.base, path.parent)


def resolve_base(base: str, sweep_dir: pathlib.Path) -> pathlib.Path:
    """The base experiment: absolute, or relative to the sweep file, the cwd or the repo root."""
    candidates = [pathlib.Path(base)] if pathlib.Path(base).is_absolute() else [
        sweep_dir / base, pathlib.Path.cwd() / base, ROOT / base]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise ConfigError(f"Sweep.base={base!r} not found (looked in: {', '.join(str(c.parent) for c in candidates)})")


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """A validated run: name, swept values, train.py overrides and the resolved experiment."""

    name: str
    swept: dict
    overrides: list
    experiment: Experiment


def plan(sweep: Sweep, base: pathlib.Path, extra_fixed: list[str] = ()) -> list[PlannedRun]:
    """Expand and validate every run against the base experiment; raise ConfigError on the first bad one."""
    base_exp = load_experiment(base)
    fixed = dict(sweep.fixed)
    for item in extra_fixed:
        key, raw = split_override(item)
        if key in sweep.swept_keys:
            raise ConfigError(f"--set {key}: this key is swept by the sweep; it cannot also be fixed")
        fixed[key] = raw
    try:
        apply_overrides(base_exp, [f"{k}={override_text(v)}" for k, v in fixed.items()])
    except ConfigError as e:
        raise ConfigError(f"fixed overrides: {e}") from None
    planned, names = [], {}
    for run in expand(sweep):
        if run.name in names:
            raise ConfigError(f"two runs share the name {run.name!r} ({names[run.name]} and {run.swept}); "
                              "sweep values must differ in their printed form")
        names[run.name] = run.swept
        overrides = run.override_args(fixed)
        try:
            exp = apply_overrides(base_exp, overrides).validate()
        except ConfigError as e:
            raise ConfigError(f"run {run.name}: {e}") from None
        planned.append(PlannedRun(run.name, run.swept, overrides, exp))
    return planned
