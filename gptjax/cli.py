"""The one error path of the command-line scripts.

`@main_guard` wraps a script's `main`:
  - bad input (ConfigError, DataError): one line `error: ...`, exit status 2;
  - a run that started and stopped (RunError: non-finite loss, failed save, unreadable checkpoint)
    or the operating system refusing (OSError: permissions, disk full, a file where a folder should
    be): one line, exit status 1;
  - anything else is a bug: its traceback, then one line saying what was being done, exit status 1.
`doing("restoring the checkpoint")` marks what is being done, for that last line.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
import traceback
import warnings

from gptjax.errors import BAD_INPUT, RunError

_doing: list[str] = []
_failed_while: list[str] = []  # the activities open when the error being reported was raised


@contextlib.contextmanager
def doing(what: str):
    """Mark the current activity (nested activities read 'outer: inner')."""
    _doing.append(what)
    try:
        yield
    except BaseException:
        if not _failed_while:
            _failed_while.extend(_doing)
        raise
    finally:
        _doing.pop()


def _stage() -> str:
    return ": ".join(_failed_while or _doing)


def _fail(message: str, status: int):
    # A failed read inside a library (orbax's asynchronous restore of a damaged checkpoint) can leave coroutines
    # that were never awaited; Python warns about each when it collects them at exit, after this message. They
    # tell the user nothing, and the error line must stay the last, so they are silenced on this path only.
    warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited", category=RuntimeWarning)
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status) from None


def os_error_text(e: OSError) -> str:
    where = f" {e.filename!r}" if getattr(e, "filename", None) else ""
    return f"{e.strerror or type(e).__name__}:{where}" if e.strerror else f"{type(e).__name__}: {e}"


def main_guard(fn):
    """Run a CLI main under the error path described in the module docstring."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _doing.clear()
        _failed_while.clear()
        try:
            return fn(*args, **kwargs)
        except BAD_INPUT as e:
            _fail(str(e), 2)
        except RunError as e:
            _fail(str(e), 1)
        except OSError as e:
            _fail(f"{os_error_text(e)}{f' while {_stage()}' if _stage() else ''}", 1)
        except Exception as e:  # noqa: BLE001 - a bug: show where, then say what was being done
            traceback.print_exc()
            _fail(f"unexpected {type(e).__name__} while {_stage() or 'starting'} (the traceback above says where)", 1)
    return wrapper


def setup_logging(level=logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    for name in ("absl", "orbax", "jax._src"):
        logging.getLogger(name).setLevel(logging.WARNING)


def require(**checks) -> None:
    """Refuse command-line values: `require(steps=(a.steps, a.steps > 0, "a positive integer"))`."""
    from gptjax.errors import ConfigError

    for name, (value, ok, accepted) in checks.items():
        if not ok:
            raise ConfigError(f"--{name}={value}: expected {accepted}")


def step_list(text: str) -> list[int]:
    """argparse type of a comma-separated list of step numbers ("1000,1500")."""
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated step numbers, e.g. 1000,1500") from None
