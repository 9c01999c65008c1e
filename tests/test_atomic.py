"""tfvid.atomic.atomic_path: a file appears complete under its name, or not at all."""
import os

import pytest

from tfvid.atomic import atomic_path


def test_complete_file_is_renamed_into_place(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    with atomic_path(str(path)) as tmp:
        assert os.path.dirname(tmp) == str(path.parent) and tmp.endswith(".json")
        assert os.path.basename(tmp).startswith(".metrics.tmp-")
        with open(tmp, "w") as f:
            f.write("{}")
        assert not path.exists()
    assert path.read_text() == "{}" and os.listdir(path.parent) == ["metrics.json"]


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "scores.npz"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise RuntimeError("crash while writing")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["scores.npz"]


def test_files_follow_the_umask_not_tempfiles_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "shard.tfrecord"
        with atomic_path(str(path)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"x")
        assert (os.stat(path).st_mode & 0o777) == 0o644
        os.umask(0o027)
        with atomic_path(str(path)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"y")
        assert (os.stat(path).st_mode & 0o777) == 0o640
    finally:
        os.umask(old)
