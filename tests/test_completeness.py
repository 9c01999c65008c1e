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
    from tfvid.prep.video_writer import write_video
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


# ------------------------------------------------------------- extract_features output
def _network():
    """A small frame network (random tiny backbone): the check does not look at the values."""
    from tfvid.models.backbones import build_backbone
    from tfvid.prep.frame_network import FrameNetwork
    net = build_backbone("tiny", input_shape=(32, 32, 3), width=0.25, weights=None,
                         pooling="avg")
    return FrameNetwork(net, "tiny", "rgb", 1, 32, {"model": "tiny", "source": "test",
                                                    "checkpoint": "test", "width": 0.25})


def _extract(shards, out):
    from tfvid.prep.extract_features import extract_features
    from tfvid.prep.frame_network import Density
    return extract_features(shards, str(out), _network(), density=Density("num_frames", 2),
                            progress=False)


@pytest.fixture(scope="module")
def features(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "feat"
    summary = _extract(shard_paths(str(prepared), "train1"), out)
    assert summary["shards_written"] == 4 and summary["videos"] == 4
    return out


def test_complete_feature_extraction_passes_silently(features, tmp_path):
    out = tmp_path / "feat"
    shutil.copytree(features, out)
    paths = shard_paths(str(out), "train1")
    assert len(paths) == 4 and check_shards(paths) == []
    plan = json.loads((out / "extract_features-manifest.json").read_text())["plan"]
    assert plan == {"train1": [os.path.basename(p) for p in paths]}


def test_interrupted_feature_extraction_names_the_missing_shards(features, tmp_path):
    out = tmp_path / "feat"
    shutil.copytree(features, out)
    os.remove(out / "train1-00002-of-00004.tfrecord")       # killed while writing shard 2
    log = out / "extract_features-progress.jsonl"
    log.write_text("".join(line for line in log.read_text().splitlines(keepends=True)
                           if "00002-of" not in line))
    with pytest.raises(ValueError) as e:
        check_shards(shard_paths(str(out), "train1"))
    assert ("train1: 1 of 4 feature shards are missing: train1-00002-of-00004.tfrecord "
            "(extract_features still running or interrupted? rerun it, or pass "
            "--allow_incomplete)") in str(e.value)
    warnings = check_shards(shard_paths(str(out), "train1"), allow_incomplete=True)
    assert len(warnings) == 1 and "train1-00002-of-00004.tfrecord" in warnings[0]


def test_truncated_feature_shard(features, tmp_path):
    out = tmp_path / "feat"
    shutil.copytree(features, out)
    path = out / "train1-00001-of-00004.tfrecord"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=rf"train1-00001-of-00004.tfrecord: {size - 5} bytes, "
                       rf"but extract_features wrote {size} \(truncated or modified\)"):
        check_shards(shard_paths(str(out), "train1"))


def test_features_of_part_of_a_split_and_failed_shards(prepared, tmp_path):
    src = tmp_path / "records"
    shutil.copytree(prepared, src)
    inputs = shard_paths(str(src), "train1")
    data = open(inputs[3], "rb").read()
    with open(inputs[3], "wb") as f:                        # a corrupt input shard
        f.write(data[:len(data) // 2])
    out = tmp_path / "feat"
    summary = _extract(inputs[1:], out)                     # shard 0 never given
    assert summary["shards_written"] == 2 and len(summary["shards_failed"]) == 1
    with pytest.raises(ValueError) as e:
        check_shards(shard_paths(str(out), "train1"))
    text = str(e.value)
    assert ("train1: extract_features was given 3 of the 4 shards of the split; no features of "
            "train1-00000-of-00004.tfrecord") in text
    assert "train1: 1 of 3 feature shards are missing: train1-00003-of-00004.tfrecord" in text
    assert "the last run failed on train1-00003-of-00004.tfrecord: " in text
    assert "corrupt" in text.split("the last run failed on")[1]


def test_feature_manifest_without_plan(features, tmp_path):
    """Manifests of extract_features before the plan: the shard names announce the split."""
    out = tmp_path / "feat"
    shutil.copytree(features, out)
    manifest = out / "extract_features-manifest.json"
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items()
                                    if k != "plan"}))
    paths = shard_paths(str(out), "train1")
    assert check_shards(paths) == []
    os.remove(paths[0])
    with pytest.raises(ValueError, match="1 of 4 feature shards are missing: "
                       "train1-00000-of-00004.tfrecord"):
        check_shards(paths[1:])


def test_feature_plan_grows_over_runs_and_a_new_shard_count_replaces_it(prepared, tmp_path):
    from tfvid.prep.completeness import update_plan
    plan = update_plan(None, ["/a/train1-00000-of-00004.tfrecord",
                              "/a/test1-00000-of-00001.tfrecord"])
    plan = update_plan(plan, ["/a/train1-00003-of-00004.tfrecord"])
    assert plan == {"train1": ["train1-00000-of-00004.tfrecord",
                               "train1-00003-of-00004.tfrecord"],
                    "test1": ["test1-00000-of-00001.tfrecord"]}
    assert update_plan(plan, ["train1-00000-of-00002.tfrecord"])["train1"] == [
        "train1-00000-of-00002.tfrecord"]
    inputs = shard_paths(str(prepared), "train1")
    out = tmp_path / "feat"
    _extract(inputs[:2], out)                 # a split's features in two runs
    with pytest.raises(ValueError, match="was given 2 of the 4 shards"):
        check_shards(shard_paths(str(out), "train1"))
    _extract(inputs[2:], out)
    assert check_shards(shard_paths(str(out), "train1")) == []
