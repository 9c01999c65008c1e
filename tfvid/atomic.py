"""Atomic file writes: a file appears under its final name complete, or not at all.

Files and folders appear with the permissions a plain `open()` / `os.makedirs()` would give
them under the process umask (usually 0644 / 0755), not the 0600 / 0700 of Python's tempfile
helpers, so that a TF Serving or training process running as another user can read them.
"""
from __future__ import annotations

import contextlib
import os
import tempfile


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows; else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_mode(path: str) -> None:
    """Gives `path` (a file or a folder tree made by tempfile) the default mode under the umask:
    0666 & ~umask for files, 0777 & ~umask for folders."""
    mask = current_umask()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777 & ~mask)
            for f in files:
                os.chmod(os.path.join(root, f), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path beside `path` (a hidden name, same extension); renames it to
    `path` when the block ends normally, removes it when the block raises. The file gets the
    umask's default mode (0644 under umask 022), like a file made by open().

        with atomic_path("out/metrics.json") as tmp:
            with open(tmp, "w") as f:
                json.dump(summary, f)
    """
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.tmp-", suffix=ext, dir=folder)
    os.close(fd)
    try:
        public_mode(tmp)
        yield tmp
        if os.path.exists(tmp) and not os.path.isdir(tmp):
            public_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
