"""Exclusive locks on output folders: one writer per model_dir or prepared split.

    with folder_lock(os.path.join(model_dir, ".lock"), "training run"):
        ...   # a second process raises LockedError naming this one (pid, host, command)

The lock is an advisory `fcntl.flock` on the lock file, so the kernel releases it when the
holder exits in any way (kill -9 included): a lock left by a dead process is taken over by the
next run without any clean-up. The file holds a JSON line about the holder for the message; it
is left in place (deleting it would let two processes lock two different files).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time


class LockedError(RuntimeError):
    """Another live process holds the lock."""


def _holder_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return "another process"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return (f"pid {info.get('pid')} on {info.get('host')} since {when} "
            f"({info.get('command', '?')})")


@contextlib.contextmanager
def folder_lock(path: str, what: str):
    """Holds an exclusive lock on the file `path` (created if needed) for the block.

    what: a few words for the message ("training run", "prepare_data of split train1").
    Raises LockedError naming the holder when another live process has it.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            raise LockedError(
                f"{os.path.dirname(os.path.abspath(path))} is in use by another {what}: "
                f"{_holder_text(path)}. Wait for it to finish, stop it, or use another "
                f"folder (lock file {path}).") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)   # releases the flock
