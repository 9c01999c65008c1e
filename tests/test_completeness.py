"""tfvid.prep.completeness.check_shards on real prepare_data outputs: finished, interrupted,
truncated, stray and manifest-less shards, and .list files."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfvid.prep.completeness import check_shards
from tfvid.prep.indexes import VideoEntry
from tfvid.prep.prepare import prepare, shard_paths


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from tfvid.prep.video import write_video
    root = tmp_path_factory.mktemp("completeness")
    rng = np.random.default_rng(0)
    entries = []
    for k in range(4):
        path = write_video(str(root / f"v{k}.mp4"),
                           rng.integers(0, 255, (10, 36, 48, 3), np.uint8), fps=25)
        entries.append(VideoEntry(f"v{k}", path, k % 2, "ab"[k % 2], "train1"))
    out = root / "out"
    prepare(entries, ["a", "b"], output_dir=str(out), split="train1", num_shards=4,
            frame_size=(48, 36), workers=1, layout="both", progress=False)
    return out


def _copy(prepared, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(prepared, out)
    return out, shard_paths(str(out), "train1")


def test_complete_split_and_list_files(prepared, tmp_path):
    out, paths = _copy(prepared, tmp_path)
    assert len(paths) == 4 and check_shards(paths) == []
    assert check_shards([str(out / "train1.list")]) == []


def test_interrupted_split_is_an_error_naming_the_missing_shards(prepared, tmp_path):
    out, paths = _copy(prepared, tmp_path)
    for p in paths[1:]:           # as if prepare_data stopped after the first shard
        os.remove(p)
    lines = (out / "train1-progress.jsonl").read_text().splitlines()
    (out / "train1-progress.jsonl").write_text(lines[0] + "\n")
    with pytest.raises(ValueError) as e:
        check_shards(shard_paths(str(out), "train1"))
    text = str(e.value)
    assert ("train1: 3 of 4 shards are missing: train1-00001-of-00004.tfrecord, "
            "train1-00002-of-00004.tfrecord, train1-00003-of-00004.tfrecord (prepare_data still "
            "running or interrupted? rerun it, or pass --allow_incomplete)") in text
    warnings = check_shards(shard_paths(str(out), "train1"), allow_incomplete=True)
    assert len(warnings) == 1 and "3 of 4 shards are missing" in warnings[0]


def test_truncated_or_stray_shards(prepared, tmp_path):
    out, paths = _copy(prepared, tmp_path)
    data = open(paths[2], "rb").read()
    with open(paths[2], "wb") as f:
        f.write(data[:-10])
    with pytest.raises(ValueError, match=rf"train1-00002-of-00004.tfrecord: {len(data) - 10} "
                       rf"bytes, but prepare_data wrote {len(data)} \(truncated or modified\)"):
        check_shards(paths)
    stray = out / "train1-00000-of-00002.tfrecord"
    stray.write_bytes(b"")
    warnings = check_shards(paths + [str(stray)], allow_incomplete=True)
    assert len(warnings) == 2 and "train1-00000-of-00002.tfrecord not in" in warnings[1]


def test_shards_without_manifest_only_warn(prepared, tmp_path):
    out, paths = _copy(prepared, tmp_path)
    os.remove(out / "train1-manifest.json")
    warnings = check_shards(paths)
    assert len(warnings) == 1 and "no train1-manifest.json" in warnings[0]
    assert "not named" in check_shards([str(out / "other.tfrecord")])[0]


def test_no_tensorflow_import():
    code = ("import sys, tfvid.prep.completeness; "
            "sys.exit(1 if 'tensorflow' in sys.modules else 0)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": root})
    assert r.returncode == 0, r.stderr
