"""A small tmpfs to fill up or make read-only: real disk-full and read-only errors for tests.

Mounting needs root; elsewhere `rerun_in_mount_namespace` runs the calling test
again inside `unshare -rm` (a user + mount namespace, where the test is root of
its own mounts), and the test body returns once that run has passed.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

IN_NAMESPACE = "GPTJAX_TEST_IN_MOUNT_NAMESPACE"


def _mount(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


def can_mount(scratch: pathlib.Path) -> bool:
    if shutil.which("mount") is None:
        return False
    scratch.mkdir(parents=True, exist_ok=True)
    if _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(scratch)).returncode != 0:
        return False
    subprocess.run(["umount", str(scratch)], check=True)
    return True


def rerun_in_mount_namespace(request, tmp_path: pathlib.Path, env: dict) -> bool:
    """False when this process may mount. Otherwise run this test inside `unshare -rm` and
    return True once it passed there; skip when no namespace can be had either."""
    if can_mount(tmp_path / "mount_probe"):
        return False
    if os.environ.get(IN_NAMESPACE):
        pytest.skip("cannot mount a tmpfs even inside a user + mount namespace")
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs to mount a tmpfs: not root, and `unshare -rm` (user namespaces) is not available")
    root = pathlib.Path(__file__).resolve().parents[2]
    proc = subprocess.run(["unshare", "-rm", sys.executable, "-m", "pytest", request.node.nodeid, "-q", "-x",
                           "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'in_namespace'}"],
                          env=dict(env, **{IN_NAMESPACE: "1"}), cwd=root, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
    return True


class Tmpfs:
    """`with Tmpfs(path, size_bytes) as fs:` a tmpfs at `path`, always unmounted on the way out."""

    def __init__(self, path, size_bytes: int):
        self.path, self.size = pathlib.Path(path), size_bytes
        self.ballast = self.path / ".ballast"

    def __enter__(self):
        self.path.mkdir(parents=True, exist_ok=True)
        done = _mount("-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path))
        assert done.returncode == 0, f"mount failed: {done.stderr}"
        return self

    def __exit__(self, *exc):
        # lazy: a child still holding a file open must not keep it mounted, nor hide the test's own error
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        """Write a ballast file so that only about `leave` bytes stay free."""
        with open(self.ballast, "wb") as f:
            f.write(bytes(self.free_bytes() - leave))

    def empty(self) -> None:
        self.ballast.unlink()

    def read_only(self, ro: bool = True) -> None:
        # a bind remount flips the mount's own read-only flag (allowed in a user namespace too)
        done = _mount("-o", f"remount,bind,{'ro' if ro else 'rw'}", str(self.path))
        assert done.returncode == 0, f"remount failed: {done.stderr}"
