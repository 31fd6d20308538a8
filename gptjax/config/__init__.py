"""Experiment configuration as plain data: frozen dataclasses, validation, overrides, sweeps.

Importing this package loads no JAX, data or model code (tests/test_layers.py
checks): an experiment or sweep file, `--list_keys` and every check of a bad
key or value run before any framework starts.

  experiment.py  ModelSpec, Schedule, Optimizer, Train, Mesh, Experiment
  data.py        TextData (text corpora)
  media.py       encoder specs, MediaSpec, DigitsData, SpokenDigitsData, MixtureData
  fields.py      fields with their accepted range, and the check that applies them
  registry.py    section classes by `kind` (how config.json is read back)
  overrides.py   experiment files, key=value overrides, config.json
  sweep.py       Sweep, its distributions, expansion into runs, validation
  tasks.py       TaskData (translation, sentiment, question answering, JSONL)
"""
from gptjax.config.data import TextData
from gptjax.config.experiment import Experiment, Mesh, ModelSpec, Optimizer, Schedule, Train
from gptjax.config.media import (AudioEncoderSpec, DigitsData, ImageEncoderSpec, MediaSpec, MixtureData,
                                 SpokenDigitsData)
from gptjax.config.overrides import (apply_overrides, from_dict, load_experiment, read_config, resolve_experiment,
                                     set_key, valid_keys)
from gptjax.config.sweep import Choice, LogUniform, Sweep, Uniform
from gptjax.config.tasks import TaskData
from gptjax.errors import ConfigError

__all__ = ["AudioEncoderSpec", "Choice", "ConfigError", "DigitsData", "Experiment", "ImageEncoderSpec",
           "LogUniform", "MediaSpec", "Mesh", "MixtureData", "ModelSpec", "Optimizer", "Schedule",
           "SpokenDigitsData", "Sweep", "TaskData", "TextData", "Train", "Uniform", "apply_overrides", "from_dict",
           "load_experiment", "read_config", "resolve_experiment", "set_key", "valid_keys"]
