"""Frame-folder videos (Jester / Something-Something v1): --format=jester and byte-exact frames."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tfvid.prep import video as vid
from tfvid.prep.indexes import load_index
from tfvid.prep.prepare import prepare, shard_paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["Swiping Left", "Swiping Right", "Doing other things"]
W, H = 40, 32
TRAIN = {"101": "Swiping Left", "102": "Swiping Right", "103": "Doing other things"}
VALIDATION = {"201": "Swiping Right", "202": "Swiping Left"}
TEST = ["301", "302"]


def _image(seed, t):
    """A bright square moving right over a noisy background (non-trivial flow)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
    img[8:20, 2 + 2 * t: 14 + 2 * t] = (230, 120, 40)
    return img


def _write_frames(folder, seed, n, ext=".jpg"):
    os.makedirs(folder, exist_ok=True)
    for t in range(n):
        bgr = cv2.cvtColor(_image(seed, t), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(ext, bgr, [int(cv2.IMWRITE_JPEG_QUALITY), 75] if ext == ".jpg" else [])
        assert ok
        with open(os.path.join(folder, f"{t + 1:05d}{ext}"), "wb") as f:
            f.write(buf.tobytes())


def _jester(root, prefix="jester-v1", train=None, validation=None, test=None):
    """A tiny Jester-style dataset: <root>/videos/<id>/00001.jpg.., <root>/csv/<prefix>-*.csv."""
    videos, index = os.path.join(root, "videos"), os.path.join(root, "csv")
    os.makedirs(index, exist_ok=True)
    train = TRAIN if train is None else train
    validation = VALIDATION if validation is None else validation
    test = TEST if test is None else test
    for k, vid_id in enumerate(list(train) + list(validation) + list(test)):
        _write_frames(os.path.join(videos, vid_id), seed=k, n=5 + k % 4)
    with open(os.path.join(index, f"{prefix}-labels.csv"), "w") as f:
        f.write("".join(c + "\n" for c in CLASSES))
    for name, rows in (("train", train), ("validation", validation)):
        with open(os.path.join(index, f"{prefix}-{name}.csv"), "w") as f:
            f.write("".join(f"{i};{label}\n" for i, label in rows.items()))
    with open(os.path.join(index, f"{prefix}-test.csv"), "w") as f:
        f.write("".join(f"{i}\n" for i in test))
    return videos, index


def _files(folder):
    return [open(p, "rb").read() for p in vid.list_frame_files(folder)]


def _records(out, split):
    import tensorflow as tf
    from tfvid.data import schema
    recs = []
    for p in shard_paths(str(out), split):
        for r in tf.data.TFRecordDataset(p):
            recs.append({k: v.numpy() for k, v in schema.parse_example(r).items()})
    return {r["id"].decode(): r for r in recs}


def _opts(**kw):
    base = dict(num_shards=2, frame_size=None, workers=1, progress=False)
    base.update(kw)
    return base


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _jester(str(tmp_path_factory.mktemp("jester")))


# ---------------------------------------------------------------- index

def test_jester_index(dataset):
    videos, index = dataset
    train, classes = load_index("jester", videos_dir=videos, index=index, split="train")
    assert classes == CLASSES
    assert [(e.video_id, e.label, e.label_name) for e in train] == [
        ("101", 0, "Swiping Left"), ("102", 1, "Swiping Right"), ("103", 2, "Doing other things")]
    assert train[0].path == os.path.join(videos, "101") and train[0].frame_folder
    val, _ = load_index("jester", videos_dir=videos, index=index, split="val")
    assert [(e.video_id, e.label, e.split) for e in val] == [("201", 1, "val"), ("202", 0, "val")]
    test, _ = load_index("jester", videos_dir=videos, index=index, split="test")
    assert [(e.video_id, e.label, e.label_name) for e in test] == [("301", None, None),
                                                                  ("302", None, None)]
    # The index may also be given as one of its CSV files.
    again, _ = load_index("jester", videos_dir=videos,
                          index=os.path.join(index, "jester-v1-train.csv"), split="train")
    assert again == train


# ---------------------------------------------------------------- frame folders as videos

def test_read_frame_folder_and_jpeg_info(dataset, tmp_path):
    videos, _ = dataset
    folder = os.path.join(videos, "101")
    v = vid.read_video(folder, frame_size=None)
    assert v.num_frames == 5 and v.size == (W, H) and v.frame_rate == 12.0
    assert list(v.timestamps_us) == [round(k * 1e6 / 12) for k in range(5)]
    assert np.array_equal(v.frames[2], vid.decode_jpeg(_files(folder)[2]))
    v = vid.read_video(folder, frame_size=(20, 16), folder_fps=25.0)
    assert v.frames.shape == (5, 16, 20, 3) and v.frame_rate == 25.0
    assert vid.jpeg_info(open(os.path.join(folder, "00001.jpg"), "rb").read()) == (W, H, 3)
    assert vid.jpeg_info(b"\x89PNG\r\n") is None
    # fps resampling keeps the nearest frames, like read_video for files.
    clip = vid.read_frame_folder_jpegs(folder, frame_size=None, fps=6.0)
    assert [os.path.basename(f) for f in clip.files] == ["00001.jpg", "00003.jpg", "00005.jpg"]
    assert clip.frame_rate == 6.0 and list(clip.timestamps_us) == [0, 166667, 333333]
    # Natural order and the accepted extensions.
    odd = tmp_path / "odd"
    os.makedirs(odd)
    for name in ("img_10.jpg", "img_2.JPEG", "img_1.png", "notes.txt", ".hidden.jpg"):
        (odd / name).write_bytes(b"x")
    assert [os.path.basename(p) for p in vid.list_frame_files(odd)] == [
        "img_1.png", "img_2.JPEG", "img_10.jpg"]


def test_prepare_original_size_keeps_jpeg_bytes(dataset, tmp_path):
    videos, index = dataset
    out = tmp_path / "out"
    for split, expected in (("train", TRAIN), ("validation", VALIDATION)):
        entries, classes = load_index("jester", videos_dir=videos, index=index, split=split)
        summary = prepare(entries, classes, output_dir=str(out), split=split,
                          **_opts(workers=2 if split == "train" else 1))
        assert summary["videos"] == len(expected) and summary["rejects"] == 0
        records = _records(out, split)
        assert sorted(records) == sorted(expected)
        for vid_id, label in expected.items():
            r = records[vid_id]
            originals = _files(os.path.join(videos, vid_id))
            assert list(r["frames"]) == originals  # byte-identical: no decode/re-encode
            assert r["label"] == CLASSES.index(label) and r["label_string"].decode() == label
            assert (r["width"], r["height"]) == (W, H) and r["frame_rate"] == 12.0
    manifest = json.loads((out / "train-manifest.json").read_text())
    assert manifest["options"]["frame_folder_fps"] == 12.0


def test_prepare_resize_and_fps_flag(dataset, tmp_path):
    videos, index = dataset
    entries, classes = load_index("jester", videos_dir=videos, index=index, split="train")
    out = tmp_path / "out"
    prepare(entries, classes, output_dir=str(out), split="train", frame_folder_fps=15.0,
            **_opts(frame_size=(20, 16)))
    records = _records(out, "train")
    for vid_id in TRAIN:
        r = records[vid_id]
        assert (r["width"], r["height"]) == (20, 16) and r["frame_rate"] == 15.0
        originals = _files(os.path.join(videos, vid_id))
        assert len(r["frames"]) == len(originals)
        for data, src in zip(r["frames"], originals):
            img = vid.decode_jpeg(data)
            assert img.shape == (16, 20, 3)
            want = cv2.resize(vid.decode_jpeg(src), (20, 16), interpolation=cv2.INTER_AREA)
            assert data == vid.encode_jpegs([want], quality=90)[0]  # decoded, resized, encoded once
    with pytest.raises(ValueError, match="prepared with other options.*frame_folder_fps"):
        prepare(entries, classes, output_dir=str(out), split="train",
                **_opts(frame_size=(20, 16)))


def test_test_split_is_unlabeled(dataset, tmp_path):
    videos, index = dataset
    entries, classes = load_index("jester", videos_dir=videos, index=index, split="test")
    out = tmp_path / "out"
    summary = prepare(entries, classes, output_dir=str(out), split="test", **_opts())
    assert summary["videos"] == 2 and summary["rejects"] == 0
    from tfvid.data.schema import NO_LABEL
    records = _records(out, "test")
    assert sorted(records) == TEST
    assert all(r["label"] == NO_LABEL and r["label_string"] == b"" for r in records.values())
    assert list(records["301"]["frames"]) == _files(os.path.join(videos, "301"))


def test_empty_unreadable_and_missing_folders(tmp_path):
    videos, index = _jester(str(tmp_path / "ds"), train={"1": "Swiping Left", "2": "Swiping Left",
                                                          "3": "Swiping Right",
                                                          "4": "Doing other things"},
                            validation={"9": "Swiping Left"}, test=["8"])
    shutil.rmtree(os.path.join(videos, "2"))
    os.makedirs(os.path.join(videos, "2"))                       # empty folder
    (tmp_path / "ds" / "videos" / "2" / "readme.txt").write_text("no frames here")
    shutil.rmtree(os.path.join(videos, "3"))                     # missing folder
    with open(os.path.join(videos, "4", "00002.jpg"), "r+b") as f:  # truncated JPEG
        f.truncate(100)
    entries, classes = load_index("jester", videos_dir=videos, index=index, split="train")
    out = tmp_path / "out"
    summary = prepare(entries, classes, output_dir=str(out), split="train", **_opts())
    assert summary["videos"] == 1 and summary["rejects"] == 3
    lines = (out / "train-rejects.tsv").read_text().splitlines()
    reasons = dict(line.split("\t") for line in lines[1:])
    assert "no frame images" in reasons[os.path.join(videos, "2")]
    assert reasons[os.path.join(videos, "3")] == "frame folder not found"
    assert "truncated or damaged JPEG frame 00002.jpg" in reasons[os.path.join(videos, "4")]
    # The missing folder appears: the rerun retries it (and the unchanged rejects stay).
    _write_frames(os.path.join(videos, "3"), seed=3, n=6)
    summary = prepare(entries, classes, output_dir=str(out), split="train", **_opts())
    assert summary["videos"] == 2 and summary["rejects"] == 2
    assert list(_records(out, "train")["3"]["frames"]) == _files(os.path.join(videos, "3"))


def test_png_frames_and_flow(tmp_path):
    folder = tmp_path / "pngs"
    _write_frames(str(folder), seed=5, n=6, ext=".png")
    clip = vid.read_frame_folder_jpegs(folder, frame_size=None, want_frames=True)
    assert clip.num_frames == 6 and clip.reencoded == 6 and clip.size == (W, H)
    assert all(j[:2] == b"\xff\xd8" for j in clip.jpegs)
    assert np.array_equal(clip.frames[0], _image(5, 0))  # PNG is lossless
    from tfvid.prep.indexes import VideoEntry
    out = tmp_path / "out"
    entry = VideoEntry("p", str(folder), 0, CLASSES[0], "train", frame_folder=True)
    summary = prepare([entry], CLASSES, output_dir=str(out), split="train", flow="farneback",
                      **_opts(num_shards=1))
    assert summary["videos"] == 1
    import tensorflow as tf
    from tfvid.data import schema
    r = next(iter(tf.data.TFRecordDataset(shard_paths(str(out), "train")[0])))
    r = {k: v.numpy() for k, v in schema.parse_example(r, with_flow=True).items()}
    assert r["num_frames"] == 6 and r["num_flow"] == 5
    x = vid.decode_jpeg(r["flow_x"][2], grayscale=True)
    assert x.shape == (H, W) and x[10:18, 8:14].mean() > 133  # moving +2 px right: above 128


def test_cli_jester_frames_layout(tmp_path):
    videos, index = _jester(str(tmp_path / "ds"))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "pipelines.prepare_data", "--format=jester",
                        f"--videos_dir={videos}", f"--index={index}", "--frame_size=original",
                        "--layout=both", "--num_shards=1", "--workers=1", "--noprogress",
                        f"--output_dir={out}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "train: 3 videos" in r.stdout and "validation: 2 videos" in r.stdout
    lines = (out / "validation.list").read_text().splitlines()
    assert lines == ["frames/validation/201 8 1", "frames/validation/202 5 0"]
    for vid_id in VALIDATION:
        folder = out / "frames" / "validation" / vid_id
        stored = [open(folder / f, "rb").read() for f in sorted(os.listdir(folder))]
        assert stored == _files(os.path.join(videos, vid_id))  # frames layout: same bytes
    assert (out / "classes.txt").read_text() == "".join(c + "\n" for c in CLASSES)
