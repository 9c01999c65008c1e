"""Atomic file writes: a file appears under its final name complete, or not at all."""
from __future__ import annotations

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path beside `path` (a hidden name, same extension); renames it to
    `path` when the block ends normally, removes it when the block raises.

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
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
