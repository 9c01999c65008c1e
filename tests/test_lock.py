"""tfvid.lock.folder_lock: one writer per folder; a lock of a dead process is taken over."""
import os
import signal
import subprocess
import sys

import pytest

from tfvid.lock import LockedError, folder_lock

HOLD = """
import sys, time
from tfvid.lock import folder_lock
with folder_lock(sys.argv[1], "test job"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_with_the_holders_pid(tmp_path):
    path = str(tmp_path / ".lock")
    proc = _holder(path)
    try:
        with pytest.raises(LockedError, match=rf"pid {proc.pid} .*test job|training run.*pid {proc.pid}"):
            with folder_lock(path, "training run"):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    path = str(tmp_path / ".lock")
    proc = _holder(path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with folder_lock(path, "training run"):
        with open(path) as f:
            assert f'"pid": {os.getpid()}' in f.read()


def test_lock_is_released_after_the_block_and_on_errors(tmp_path):
    path = str(tmp_path / "sub" / ".lock")
    with pytest.raises(KeyError):
        with folder_lock(path, "job"):
            raise KeyError("boom")
    with folder_lock(path, "job"):
        pass
