"""Preparation job: shards, frame folders, rejects, atomic/resumable writes and the CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfvid.prep.indexes import VideoEntry
from tfvid.prep.prepare import assign_shards, count_records, prepare, shard_paths

W, H, N = 64, 48, 8
CLASSES = ["clap", "wave"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _frames(seed, n=N):
    """A bright square moving right over a noisy background: flow is non-trivial."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
    out = np.repeat(base[None], n, axis=0)
    for t in range(n):
        out[t, 16:32, 4 + 3 * t: 20 + 3 * t] = 230
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from tfvid.prep.video_writer import write_video
    root = tmp_path_factory.mktemp("videos")
    entries = []
    for i in range(5):
        label = i % 2
        path = root / CLASSES[label] / f"v{i}.mp4"
        os.makedirs(path.parent, exist_ok=True)
        write_video(str(path), _frames(i), fps=25)
        entries.append(VideoEntry(f"v{i}", str(path), label, CLASSES[label], "train"))
    (root / "corrupt.avi").write_bytes(np.random.default_rng(1).bytes(4000))
    (root / "empty.mp4").write_bytes(b"")
    bad = [VideoEntry("corrupt", str(root / "corrupt.avi"), 0, "clap", "train"),
           VideoEntry("empty", str(root / "empty.mp4"), 1, "wave", "train")]
    return root, entries, bad


def _opts(**kw):
    base = dict(split="train", num_shards=2, frame_size=(W, H), workers=1, progress=False)
    base.update(kw)
    return base


def _read(path, with_flow=False):
    import tensorflow as tf
    from tfvid.data import schema
    out = []
    for record in tf.data.TFRecordDataset(path):
        ex = schema.parse_example(record, with_flow=with_flow)
        out.append({k: v.numpy() for k, v in ex.items()})
    return out


def test_assign_shards_balanced():
    sizes = [50, 10, 40, 30, 20, 60, 5]
    shards = assign_shards(sizes, 3)
    assert sorted(i for s in shards for i in s) == list(range(7))
    counts = [len(s) for s in shards]
    assert max(counts) - min(counts) <= 1
    totals = [sum(sizes[i] for i in s) for s in shards]
    assert max(totals) - min(totals) <= 20  # snake dealing: 75, 70, 70
    assert assign_shards([1, 1], 4) == [[0], [1], [], []]


def test_tfrecord_with_flow_and_rejects(videos, tmp_path):
    root, good, bad = videos
    out = tmp_path / "out"
    summary = prepare(good[:3] + bad + good[3:], CLASSES, output_dir=str(out), flow="dis",
                      **_opts(workers=2))
    assert summary["videos"] == 5 and summary["frames"] == 5 * N and summary["rejects"] == 2
    assert summary["shards"] == 2 and summary["shards_skipped"] == 0
    assert json.loads((out / "train-summary.json").read_text())["videos"] == 5
    assert (out / "classes.txt").read_text() == "clap\nwave\n"
    paths = shard_paths(str(out), "train")
    assert [os.path.basename(p) for p in paths] == ["train-00000-of-00002.tfrecord",
                                                    "train-00001-of-00002.tfrecord"]
    manifest = json.loads((out / "train-manifest.json").read_text())
    assert [len(s["video_ids"]) for s in manifest["shards"]] in ([4, 3], [3, 4])
    records = [r for p in paths for r in _read(p, with_flow=True)]
    assert sorted(r["id"].decode() for r in records) == ["v0", "v1", "v2", "v3", "v4"]
    for r in records:
        i = int(r["id"].decode()[1:])
        assert r["label"] == i % 2 and r["label_string"].decode() == CLASSES[i % 2]
        assert r["num_frames"] == N and r["num_flow"] == N - 1 and r["flow_bound"] == 20.0
        assert (r["height"], r["width"]) == (H, W) and abs(r["frame_rate"] - 25) < 1e-3
    # Flow decodes to TSN 8-bit values: the square moves 3 px right per frame.
    import cv2
    x = cv2.imdecode(np.frombuffer(records[0]["flow_x"][2], np.uint8), cv2.IMREAD_GRAYSCALE)
    assert x.shape == (H, W) and x[18:30, 10:26].mean() > 140  # +3 px -> ~147 (128 = still)
    rejects = (out / "train-rejects.tsv").read_text().splitlines()
    assert rejects[0] == "path\treason" and len(rejects) == 3
    reasons = dict(line.split("\t") for line in rejects[1:])
    assert "not a readable video" in reasons[bad[0].path] or "corrupt" in reasons[bad[0].path]
    assert reasons[bad[1].path] == "empty file (0 bytes)"


def test_frames_layout_and_resume(videos, tmp_path):
    root, good, _ = videos
    out = tmp_path / "out"
    summary = prepare(good[:3], CLASSES, output_dir=str(out), flow="farneback",
                      layout="frames", **_opts())
    assert summary["frame_folders"] == 3 and summary["shards"] == 0 and summary["frames"] == 3 * N
    lines = (out / "train.list").read_text().splitlines()
    assert lines == [f"frames/train/v{i} {N} {i % 2}" for i in range(3)]
    folder = out / "frames" / "train" / "v1"
    names = sorted(os.listdir(folder))
    assert names == ([f"flow_x_{k:05d}.jpg" for k in range(1, N)] +
                     [f"flow_y_{k:05d}.jpg" for k in range(1, N)] +
                     [f"img_{k:05d}.jpg" for k in range(1, N + 1)])
    import cv2
    img = cv2.imread(str(folder / "img_00001.jpg"))
    assert img.shape == (H, W, 3)
    # Rerun: v0 deleted is rewritten, v1 untouched; a leftover temp folder is cleaned.
    mtime = os.stat(folder / "img_00001.jpg").st_mtime_ns
    import shutil
    shutil.rmtree(out / "frames" / "train" / "v0")
    os.makedirs(out / "frames" / "train" / ".tmp-99999-v0")
    summary = prepare(good[:3], CLASSES, output_dir=str(out), flow="farneback",
                      layout="frames", **_opts())
    assert summary["frame_folders"] == 3
    assert os.stat(folder / "img_00001.jpg").st_mtime_ns == mtime
    assert len(os.listdir(out / "frames" / "train" / "v0")) == 3 * N - 2
    assert not any(f.startswith(".tmp") for f in os.listdir(out / "frames" / "train"))


def test_rerun_rewrites_only_missing_shard(videos, tmp_path):
    root, good, _ = videos
    out = tmp_path / "out"
    prepare(good, CLASSES, output_dir=str(out), **_opts(num_shards=3))
    paths = shard_paths(str(out), "train")
    assert len(paths) == 3
    before = {p: (os.stat(p).st_mtime_ns, open(p, "rb").read()) for p in paths}
    os.remove(paths[1])
    # A crashed run's temp file under the deleted shard's name is not taken for the shard.
    leftover = out / f".{os.path.basename(paths[1])}.tmp-99999"
    leftover.write_bytes(b"partial garbage")
    with open(out / "train-progress.jsonl", "a") as f:  # a log line cut by a crash is ignored
        f.write('{"name": "train-00001-of-00003.tfrec')
    summary = prepare(good, CLASSES, output_dir=str(out), **_opts(num_shards=3))
    assert summary["shards_skipped"] == 2 and summary["videos"] == 5
    assert not leftover.exists()
    for p in (paths[0], paths[2]):
        assert os.stat(p).st_mtime_ns == before[p][0]
    assert open(paths[1], "rb").read() == before[paths[1]][1]  # deterministic rewrite
    assert sum(count_records(p) for p in paths) == 5
    assert prepare(good, CLASSES, output_dir=str(out), **_opts(num_shards=3))["shards_skipped"] == 3
    # Different options are refused instead of mixing shards.
    with pytest.raises(ValueError, match="jpeg_quality: 90 -> 50"):
        prepare(good, CLASSES, output_dir=str(out), jpeg_quality=50, **_opts(num_shards=3))
    with pytest.raises(ValueError, match="another video list or shard count"):
        prepare(good[:4], CLASSES, output_dir=str(out), **_opts(num_shards=3))


def test_leftover_temp_without_manifest(videos, tmp_path):
    root, good, _ = videos
    out = tmp_path / "out"
    os.makedirs(out)
    (out / ".train-00000-of-00001.tfrecord.tmp-4242").write_bytes(b"\x00" * 100)
    assert shard_paths(str(out), "train") == []
    summary = prepare(good[:2], CLASSES, output_dir=str(out), **_opts(num_shards=1))
    assert summary["videos"] == 2 and summary["shards_skipped"] == 0
    assert os.listdir(out).count("train-00000-of-00001.tfrecord") == 1
    assert not any(".tmp-" in f for f in os.listdir(out))


def test_truncated_shard_is_detected_and_rewritten(videos, tmp_path):
    root, good, _ = videos
    out = tmp_path / "out"
    prepare(good, CLASSES, output_dir=str(out), **_opts())
    first, second = shard_paths(str(out), "train")
    data = open(first, "rb").read()
    with open(first, "wb") as f:
        f.write(data[: len(data) - 300])
    with pytest.raises(ValueError, match=r"train-00000-of-00002.tfrecord: truncated or corrupt"):
        count_records(first)
    assert count_records(second) == len(_read(second)) >= 2
    summary = prepare(good, CLASSES, output_dir=str(out), **_opts())
    assert summary["shards_skipped"] == 1 and open(first, "rb").read() == data


def test_labels_missing_files_and_flow_mismatch(videos, tmp_path, monkeypatch):
    root, good, _ = videos
    unlabeled = [VideoEntry(e.video_id, e.path, None, None, "test") for e in good[:2]]
    s = prepare(unlabeled, CLASSES, output_dir=str(tmp_path / "a"), **_opts(split="test"))
    assert s["videos"] == 2 and s["rejects"] == 0  # an unlabeled test split is written
    recs = _read(shard_paths(str(tmp_path / "a"), "test")[0])
    assert recs[0]["label"] == -1 and recs[0]["label_string"] == b""
    mixed = [good[0], unlabeled[1], VideoEntry("gone", str(root / "gone.mp4"), 0, "clap", "x")]
    s = prepare(mixed, CLASSES, output_dir=str(tmp_path / "b"), **_opts(split="x"))
    assert s["videos"] == 1 and s["rejects"] == 2
    tsv = (tmp_path / "b" / "x-rejects.tsv").read_text()
    assert f"{good[1].path}\tno label" in tsv and "gone.mp4\tvideo file not found" in tsv

    from tfvid.prep import flow as flowlib
    real = flowlib.encode_flow_jpegs
    monkeypatch.setattr(flowlib, "encode_flow_jpegs", lambda f, bound: tuple(
        l[:-1] for l in real(f, bound)))
    s = prepare(good[:1], CLASSES, output_dir=str(tmp_path / "c"), flow="dis", **_opts())
    assert s["videos"] == 0 and s["rejects"] == 1
    assert "RGB/flow frame-count mismatch" in (tmp_path / "c" / "train-rejects.tsv").read_text()


def test_bad_output_dir_and_options(videos, tmp_path):
    _, good, _ = videos
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="not a writable folder"):
        prepare(good, CLASSES, output_dir=str(blocker / "out"), **_opts())
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        os.makedirs(ro)
        os.chmod(ro, 0o500)
        with pytest.raises(PermissionError, match="ro"):
            prepare(good, CLASSES, output_dir=str(ro), **_opts())
    with pytest.raises(ValueError, match="layout must be one of tfrecord, frames, both"):
        prepare(good, CLASSES, output_dir=str(tmp_path / "o"), layout="zip", **_opts())
    with pytest.raises(ValueError, match="duplicate video id 'v0'"):
        prepare(good + good[:1], CLASSES, output_dir=str(tmp_path / "o"), **_opts())


def _flag_run(argv):
    from absl import flags
    from pipelines import prepare_data
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["prepare_data"] + argv)
        prepare_data.main(["prepare_data"])
    finally:
        flags.FLAGS.unparse_flags()


def test_cli_in_process(videos, tmp_path, capsys):
    from absl import app
    root, _, _ = videos
    folder = tmp_path / "set"
    for c in CLASSES:  # a folder-per-class set of the good videos
        os.makedirs(folder / c)
        for f in os.listdir(root / c):
            os.symlink(root / c / f, folder / c / f)
    out = tmp_path / "out"
    _flag_run(["--format=folder", f"--videos_dir={folder}", "--split=train",
               f"--output_dir={out}", "--num_shards=2", "--frame_size=short24", "--workers=1",
               "--layout=both", "--noprogress"])
    printed = capsys.readouterr().out
    assert "train: 5 videos, 40 frames, 0 rejects, 2 shards" in printed
    summary = json.loads((out / "train-summary.json").read_text())
    assert summary["videos"] == 5 and summary["frame_folders"] == 5
    # Two splits of a folder without split folders would get the same videos: refused.
    with pytest.raises(SystemExit, match="no split information .* train, val would all get"):
        _flag_run(["--format=folder", f"--videos_dir={folder}", "--split=train,val",
                   f"--output_dir={tmp_path / 'o2'}", "--workers=1", "--noprogress"])
    rec = _read(shard_paths(str(out), "train")[0])[0]
    assert (rec["height"], rec["width"]) == (24, 32)  # short side 24, 4:3 kept
    assert (out / "train.list").read_text().splitlines()[0] == f"frames/train/clap/v0 {N} 0"
    with pytest.raises(app.UsageError, match="--frame_size"):
        _flag_run(["--format=folder", f"--videos_dir={folder}", "--split=a",
                   f"--output_dir={out}", "--frame_size=big"])
    with pytest.raises(app.UsageError, match="--split is required"):
        _flag_run(["--format=csv", f"--videos_dir={folder}", "--index=x.csv", f"--output_dir={out}"])
    with pytest.raises(SystemExit, match="prepare_data: error: .*nope"):
        _flag_run(["--format=ucf101", f"--videos_dir={folder}", f"--index={tmp_path / 'nope'}",
                   f"--output_dir={out}"])


def test_cli_subprocess_help_and_bad_flag():
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    r = subprocess.run([sys.executable, "-m", "pipelines.prepare_data", "--help"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    for text in ("--format", "--num_shards", "(default: '8')", "340x256", "short256", "tvl1"):
        assert text in r.stdout
    r = subprocess.run([sys.executable, "-m", "pipelines.prepare_data", "--flow=magic"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "flow" in r.stderr


def test_cli_synthetic_subprocess(tmp_path):
    pytest.importorskip("tfvid.prep.synthetic")
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    src, out = tmp_path / "synth", tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "pipelines.prepare_data", "--synthetic",
                        f"--videos_dir={src}", f"--output_dir={out}", "--synthetic_classes=2",
                        "--synthetic_videos_per_class=4", "--frame_size=80x60", "--num_shards=2",
                        "--workers=2", "--noprogress"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (src / "ucfTrainTestlist" / "classInd.txt").exists()
    for split in ("train1", "test1"):
        summary = json.loads((out / f"{split}-summary.json").read_text())
        assert summary["rejects"] == 0 and summary["videos"] >= 1
    assert "train1:" in r.stdout and "test1:" in r.stdout
