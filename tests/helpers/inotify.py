"""The names created in a folder, as the kernel reports them (Linux inotify, through libc).

A test that must act while something short-lived exists (an Orbax save's temporary
folder lives for milliseconds) waits on this instead of polling the folder: the
event arrives when the entry is made, whatever the load on the machine.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import sys

IN_MOVED_TO, IN_CREATE = 0x80, 0x100
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name, NUL-padded to len


def available() -> bool:
    return sys.platform.startswith("linux")


class CreatedNames:
    """`with CreatedNames(folder) as created: created.next(timeout)` -> each new entry's name, in order."""

    def __init__(self, folder):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(self.fd, os.fsencode(str(folder)), IN_CREATE | IN_MOVED_TO) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch failed on {folder}")
        self.pending: list[str] = []

    def next(self, timeout: float) -> str | None:
        """The next name made in the folder, or None when none came within `timeout` seconds."""
        if not self.pending:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return None
            data = os.read(self.fd, 1 << 16)
            while data:
                _, _, _, length = _EVENT.unpack_from(data)
                self.pending.append(data[_EVENT.size:_EVENT.size + length].rstrip(b"\0").decode())
                data = data[_EVENT.size + length:]
        return self.pending.pop(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
