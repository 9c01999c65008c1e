"""extract_flow: flow added to TFRecord shards and raw-frame folders prepared without it,
identical to computing it from the stored frames; resume, rejects, corrupt shards, the CLI."""
import json
import os

import numpy as np
import pytest

from tfvid.prep.extract_flow import add_flow_to_frames, add_flow_to_records, flow_task
from tfvid.prep.indexes import VideoEntry
from tfvid.prep.prepare import prepare, shard_paths

W, H = 64, 48
CLASSES = ["left", "right"]


def _frames(seed, n):
    """A bright square moving sideways over a noisy background: non-trivial flow."""
    rng = np.random.default_rng(seed)
    out = np.repeat(rng.integers(0, 60, (H, W, 3), dtype=np.uint8)[None], n, axis=0)
    for t in range(n):
        x = 4 + 3 * t if seed % 2 else 40 - 3 * t
        out[t, 16:32, x:x + 16] = 230
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """4 videos (one of a single frame) prepared without flow in both layouts."""
    from tfvid.prep.video_writer import write_video
    root = tmp_path_factory.mktemp("extract_flow")
    entries = []
    for i, n in enumerate((9, 7, 1, 8)):
        path = root / "videos" / f"v{i}.mp4"
        os.makedirs(path.parent, exist_ok=True)
        write_video(str(path), _frames(i, n), fps=25)
        entries.append(VideoEntry(f"v{i}", str(path), i % 2, CLASSES[i % 2], "train"))
    out = str(root / "prepared")
    prepare(entries, CLASSES, output_dir=out, split="train", num_shards=2, frame_size=(W, H),
            workers=1, progress=False, layout="both")
    return {"root": root, "dir": out, "shards": shard_paths(out, "train"),
            "list": os.path.join(out, "train.list")}


def _records(path):
    import tensorflow as tf
    return [tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def _frame_bytes(ex):
    from tfvid.data import schema
    return [f.bytes_list.value[0] for f in ex.feature_lists.feature_list[schema.FRAMES].feature]


def test_records_get_the_flow_of_their_stored_frames(prepared, tmp_path):
    from tfvid.data import schema
    out = str(tmp_path / "flow")
    summary = add_flow_to_records(prepared["shards"], out, method="dis", workers=2,
                                  progress=False)
    assert summary["shards_written"] == 2 and summary["shards_skipped"] == 0
    assert os.path.isfile(os.path.join(out, "classes.txt"))
    total = 0
    for src in prepared["shards"]:
        for ex in _records(os.path.join(out, os.path.basename(src))):
            frames = _frame_bytes(ex)
            vid = ex.context.feature[schema.ID].bytes_list.value[0].decode()
            expected = flow_task({"video_id": vid, "frames": frames, "method": "dis",
                                  "bound": 20.0})
            lists, ctx = ex.feature_lists.feature_list, ex.context.feature
            assert [f.bytes_list.value[0] for f in lists[schema.FLOW_X].feature] == \
                expected["flow_x"]
            assert [f.bytes_list.value[0] for f in lists[schema.FLOW_Y].feature] == \
                expected["flow_y"]
            assert len(expected["flow_x"]) == len(frames) - 1
            assert ctx[schema.FLOW_METHOD].bytes_list.value[0] == b"dis"
            assert ctx[schema.FLOW_BOUND].float_list.value[0] == 20.0
            total += len(frames) - 1
    assert summary["flow_frames"] == total == 8 + 6 + 7
    # the single-frame video is rejected (listed with its reason), the others kept
    assert summary["videos"] == 3 and summary["rejects"] == 1
    rejects = open(summary["files"]["rejects"], encoding="utf-8").read()
    assert "v2" in rejects and "at least 2" in rejects


def test_flow_records_feed_the_flow_pipeline_and_rerun_resumes(prepared, tmp_path):
    from tfvid.data.pipeline import build_dataset
    from tfvid.data.sampling import TSNSampler
    out = str(tmp_path / "flow")
    add_flow_to_records(prepared["shards"], out, method="farneback", workers=1, progress=False)
    shards = sorted(os.path.join(out, os.path.basename(p)) for p in prepared["shards"])
    batch = next(iter(build_dataset(shards, sampler=TSNSampler(2, 3), mode="val",
                                    modality="flow", batch_size=3, input_size=32,
                                    backbone="tiny")))
    assert batch["clip"].shape == (3, 1, 2, 32, 32, 6)
    mtimes = [os.path.getmtime(p) for p in shards]
    first = json.load(open(os.path.join(out, "extract_flow-summary.json"), encoding="utf-8"))
    again = add_flow_to_records(prepared["shards"], out, method="farneback", progress=False)
    assert again["shards_skipped"] == 2 and again["shards_written"] == 0
    for key in ("videos", "flow_frames", "rejects"):       # finished shards still counted
        assert again[key] == first[key]
    assert [os.path.getmtime(p) for p in shards] == mtimes
    # records that already hold flow are copied, not recomputed (unless overwrite)
    copied = add_flow_to_records(shards, str(tmp_path / "copy"), method="dis", progress=False)
    assert copied["videos_copied"] == 3 and copied["flow_frames"] == 0


def test_corrupt_shard_is_reported_and_others_written(prepared, tmp_path):
    good, bad = prepared["shards"][0], str(tmp_path / "in" / "train-bad.tfrecord")
    os.makedirs(os.path.dirname(bad))
    data = open(prepared["shards"][1], "rb").read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 2])                   # truncated in the middle
    out = str(tmp_path / "out")
    summary = add_flow_to_records([good, bad], out, method="dis", progress=False)
    assert summary["shards_written"] == 1 and len(summary["shards_failed"]) == 1
    assert summary["shards_failed"][0]["shard"] == bad
    assert sorted(os.listdir(out)) == sorted(
        ["classes.txt", os.path.basename(good), "extract_flow-rejects.tsv",
         "extract_flow-summary.json", "extract_flow-progress.jsonl"])   # nothing of the bad one
    with pytest.raises(ValueError, match="holds the input shards"):
        add_flow_to_records([good], os.path.dirname(good), method="dis", progress=False)
    with pytest.raises(ValueError, match="unknown flow method"):
        add_flow_to_records([good], out, method="lk", progress=False)


def test_frame_folders_get_flow_files_and_resume(prepared, tmp_path):
    import shutil
    from tfvid.data.pipeline import read_list_file
    root = str(tmp_path / "copy")
    shutil.copytree(prepared["dir"], root)
    lst = os.path.join(root, "train.list")
    dirs, ids, counts, _ = read_list_file(lst)
    summary = add_flow_to_frames(lst, method="dis", workers=2, progress=False)
    assert counts == [9, 7, 1, 8]                  # the frames layout keeps the 1-frame video
    assert summary["videos_done"] == 3 and summary["rejects"] == 1
    assert "v2" in open(summary["files"]["rejects"], encoding="utf-8").read()
    for folder, vid, n in zip(dirs, ids, counts):
        if n < 2:
            assert not [x for x in os.listdir(folder) if x.startswith("flow_")]
            continue
        names = sorted(os.listdir(folder))
        fx = [x for x in names if x.startswith("flow_x_")]
        assert len(fx) == n - 1 and len([x for x in names if x.startswith("flow_y_")]) == n - 1
        frames = [open(os.path.join(folder, f"img_{k:05d}.jpg"), "rb").read()
                  for k in range(1, n + 1)]
        expected = flow_task({"video_id": vid, "frames": frames, "method": "dis", "bound": 20.0})
        assert open(os.path.join(folder, "flow_y_00002.jpg"), "rb").read() == \
            expected["flow_y"][1]
        assert not [x for x in names if x.startswith(".")]          # no temporary files left
    os.remove(os.path.join(dirs[0], f"flow_x_{counts[0] - 1:05d}.jpg"))   # an interrupted run
    again = add_flow_to_frames(lst, method="dis", progress=False)
    assert again["videos_done"] == 1 and again["videos_skipped"] == 2   # v1, v3 (v2: rejected)
    assert os.path.isfile(os.path.join(dirs[0], f"flow_x_{counts[0] - 1:05d}.jpg"))


def test_worker_rejects_bad_frames():
    r = flow_task({"video_id": "x", "frames": [b"not a jpeg", b"x"], "method": "dis",
                   "bound": 20.0})
    assert r["reject"] == "frame 0 is not a decodable JPEG"


def test_cli(prepared, tmp_path, capsys):
    from absl import app, flags

    from pipelines import extract_flow as job
    FLAGS = flags.FLAGS
    out = str(tmp_path / "cli")
    try:
        FLAGS.unparse_flags()
        FLAGS(["extract_flow", f"--data={os.path.dirname(prepared['shards'][0])}",
               "--flow=dis", "--workers=1", "--noprogress"])
        with pytest.raises(app.UsageError, match="--output_dir is required"):
            job.main(["extract_flow"])
        FLAGS.unparse_flags()
        FLAGS(["extract_flow", f"--data={tmp_path}/nothing-*.tfrecord", f"--output_dir={out}"])
        with pytest.raises(app.UsageError, match="--data entry"):
            job.main(["extract_flow"])
        FLAGS.unparse_flags()
        FLAGS(["extract_flow", f"--data={prepared['shards'][0]}", "--flow=none",
               f"--output_dir={out}"])
        with pytest.raises(app.UsageError, match="--flow=none"):
            job.main(["extract_flow"])
        FLAGS.unparse_flags()
        FLAGS(["extract_flow", f"--data={','.join(prepared['shards'])}", f"--output_dir={out}",
               "--flow=dis", "--workers=1", "--noprogress"])
        summary = job.main(["extract_flow"])
    finally:
        FLAGS.unparse_flags()
    assert summary["shards_written"] == 2
    assert json.loads(capsys.readouterr().out)["flow_frames"] == summary["flow_frames"] == 21
