"""Every error gptjax raises on purpose, in one place; the scripts turn them into exit codes.

Bad input (exit status 2: nothing was started or written):
  ConfigError      an experiment, override, flag or shape that cannot work
  DataError        a data file, folder or format a person can fix
  ConversionError  a checkpoint or workdir that cannot be converted exactly
  CheckpointReadError  no checkpoint of a workdir can be read (the message names the folder)

Runtime failures (exit status 1: the run started; earlier work is intact):
  RunError               the base of the ones below
  NonFiniteError         training produced a non-finite loss or gradients
  CheckpointWriteError   a checkpoint could not be written; the previous one is intact
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad experiment, override or shape; the message says what would be right."""


class DataError(ValueError):
    """A data problem a person can fix: missing file, bad name, too little text."""


class ConversionError(ConfigError):
    """A checkpoint or workdir that cannot be converted faithfully; the message says why."""


class RunError(RuntimeError):
    """A run that started but could not go on; the message says what is still intact."""


class NonFiniteError(RunError):
    """Training produced a non-finite loss or gradients and the policy says stop."""


class CheckpointWriteError(RunError):
    """A checkpoint could not be written; the previous one is left as it was."""


class CheckpointReadError(DataError):
    """No checkpoint of a workdir can be read; the message names the damaged steps and what to do."""


BAD_INPUT = (ConfigError, DataError)  # exit status 2
