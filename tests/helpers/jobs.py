"""Run helper subprocesses side by side; if one fails or time runs out, stop the rest and say why.

Output goes to a log file per job (a pipe could fill and block a chatty child);
a failure reports the tail of the failing job's log.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import time


class Job:
    def __init__(self, cmd: list[str], env: dict, log: pathlib.Path, out: pathlib.Path | str | None = None):
        self.log, self.out, self.cmd = pathlib.Path(log), out, cmd
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, text=True)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text()[-n:]


def run_jobs(jobs: list[Job], timeout_s: float = 600) -> list[dict]:
    """Wait for every job; return each one's JSON `out`. Fails fast when any job fails."""
    deadline = time.monotonic() + timeout_s
    try:
        while any(j.proc.poll() is None for j in jobs):
            failed = [j for j in jobs if j.proc.returncode not in (None, 0)]
            if failed:
                raise AssertionError(f"{failed[0].cmd[1:3]} exited {failed[0].proc.returncode}:\n"
                                     f"{failed[0].tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs still running after {timeout_s:.0f}s:\n{jobs[0].tail()}")
            time.sleep(0.2)
        for j in jobs:
            assert j.proc.returncode == 0, f"exit {j.proc.returncode}:\n{j.tail()}"
        return [json.loads(pathlib.Path(j.out).read_text()) if j.out else {} for j in jobs]
    finally:
        _reap(jobs)


def _reap(jobs: list[Job]) -> None:
    """Kill what still runs and close the logs."""
    for j in jobs:
        if j.proc.poll() is None:
            j.proc.kill()
            j.proc.wait()
        j._log_file.close()


def wait_exits(jobs: list[Job], timeout_s: float = 300) -> list[int]:
    """Wait for every job to end, whatever its status; return the exit statuses (kills all on timeout)."""
    deadline = time.monotonic() + timeout_s
    try:
        while any(j.proc.poll() is None for j in jobs):
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs still running after {timeout_s:.0f}s:\n{jobs[0].tail()}")
            time.sleep(0.1)
        return [j.proc.returncode for j in jobs]
    finally:
        _reap(jobs)
