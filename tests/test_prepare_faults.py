"""prepare_data as users meet it when things go wrong: class-sorted indexes, splits of folder/csv
sets, concurrent runs, dying workers, kill -9, full disks, returning files, truncated videos,
empty indexes. Real processes and real (tiny) mp4 files throughout."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfvid.prep.indexes import VideoEntry, check_splits, holdout_split, load_index
from tfvid.prep.prepare import prepare, shard_paths

W, H, N = 48, 36, 10
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _clip(seed, n=N):
    rng = np.random.default_rng(seed)
    out = np.repeat(rng.integers(0, 80, (H, W, 3), dtype=np.uint8)[None], n, axis=0)
    for t in range(n):
        out[t, 10:20, 2 + 3 * t: 12 + 3 * t] = 220
    return out


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    from tfvid.prep.video_writer import write_video
    d = tmp_path_factory.mktemp("clips")
    return {k: open(write_video(str(d / f"c{k}.mp4"), _clip(k), fps=25), "rb").read()
            for k in range(3)}


def _put(path, data):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _class_set(root, clip_bytes, classes=2, per_class=4):
    """A folder-per-class set: root/<class>/v<k>.mp4."""
    entries = []
    for c in range(classes):
        for k in range(per_class):
            path = _put(root / f"c{c:02d}" / f"c{c:02d}_v{k}.mp4", clip_bytes[(c + k) % 3])
            entries.append(VideoEntry(f"c{c:02d}_v{k}", path, c, f"c{c:02d}", "train"))
    return entries, [f"c{c:02d}" for c in range(classes)]


def _opts(**kw):
    base = dict(split="train", num_shards=2, frame_size=(W, H), workers=1, progress=False)
    base.update(kw)
    return base


def _labels(path):
    import tensorflow as tf
    from tfvid.data import schema
    return [int(schema.parse_example(r)["label"].numpy()) for r in tf.data.TFRecordDataset(path)]


def _cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "pipelines.prepare_data", *args], cwd=ROOT,
                          env=env or ENV, capture_output=True, text=True, timeout=300, **kw)


# ---------------------------------------------------------------- 1. shards mix the classes

def test_shards_of_a_class_sorted_index_mix_the_classes(clip_bytes, tmp_path):
    entries, classes = _class_set(tmp_path / "v", clip_bytes, classes=40, per_class=10)
    out = tmp_path / "out"
    s = prepare(entries, classes, output_dir=str(out), **_opts(num_shards=4))
    assert s["videos"] == 400 and s["shards"] == 4
    manifest = json.loads((out / "train-manifest.json").read_text())
    assert manifest["options"]["shuffle_seed"] == 0
    rng = np.random.default_rng(0)
    # a random draw of 100 of the 400 videos holds ~37.8 of the 40 classes
    draw = np.mean([len(set(rng.permutation(np.repeat(np.arange(40), 10))[:100]))
                    for _ in range(200)])
    for path in shard_paths(str(out), "train"):
        labels = _labels(path)
        assert len(labels) == 100                       # balance kept
        assert labels != sorted(labels)                 # not class-sorted
        assert len(set(labels)) >= draw - 4             # as mixed as a random draw
        assert max(np.bincount(labels)) <= 8            # no class dominates a shard
    # index order stays available (shuffle_seed=None), and the plan is deterministic
    out2 = tmp_path / "out2"
    prepare(entries[:40], classes, output_dir=str(out2), shuffle_seed=None, **_opts(num_shards=2))
    assert all(_labels(p) == sorted(_labels(p)) for p in shard_paths(str(out2), "train"))


# ---------------------------------------------------------------- 2. splits of folder/csv sets

def test_folder_and_csv_splits(clip_bytes, tmp_path):
    root = tmp_path / "set"
    for split, names in (("train", ["a", "b", "c"]), ("test", ["d"])):
        for cls in ("clap", "wave"):
            for n in names:
                _put(root / split / cls / f"{cls}_{n}.mp4", clip_bytes[0])
    _put(root / "test" / "jump" / "jump_x.mp4", clip_bytes[1])   # a class only in test
    train, classes = load_index("folder", videos_dir=str(root), split="train")
    test, classes2 = load_index("folder", videos_dir=str(root), split="test")
    assert classes == classes2 == ["clap", "jump", "wave"]
    assert [e.video_id for e in train][:3] == ["clap/clap_a", "clap/clap_b", "clap/clap_c"]
    assert len(train) == 6 and len(test) == 3 and {e.label for e in test} == {0, 1, 2}
    with pytest.raises(ValueError, match=r"split folders \(test, train\).*'val'"):
        load_index("folder", videos_dir=str(root), split="val")
    check_splits("folder", videos_dir=str(root), index=None, splits=["train", "test"])

    csv = tmp_path / "set.csv"
    csv.write_text("path,label,split\ntrain/clap/clap_a.mp4,clap,train\n"
                   "train/wave/wave_a.mp4,wave,train\ntest/clap/clap_d.mp4,clap,test\n")
    tr, cls = load_index("csv", videos_dir=str(root), index=str(csv), split="train")
    te, _ = load_index("csv", videos_dir=str(root), index=str(csv), split="test")
    assert cls == ["clap", "wave"] and len(tr) == 2 and [e.label for e in te] == [0]
    with pytest.raises(ValueError, match=r"set.csv: no row has split 'val'"):
        load_index("csv", videos_dir=str(root), index=str(csv), split="val")

    flat = tmp_path / "flat"   # no split information
    for k in range(40):
        _put(flat / ("clap" if k % 2 else "wave") / f"v{k}.mp4", clip_bytes[0])
    with pytest.raises(ValueError, match="no split information"):
        check_splits("folder", videos_dir=str(flat), index=None, splits=["train", "val"])
    with pytest.raises(ValueError, match="has its own splits"):
        check_splits("folder", videos_dir=str(root), index=None, splits=["train", "val"],
                     holdout={"val": 0.2})
    hold = {"val": 0.25, "test": 0.25}
    check_splits("folder", videos_dir=str(flat), index=None, splits=["train", "val", "test"],
                 holdout=hold)
    got = {s: [e.video_id for e in load_index("folder", videos_dir=str(flat), split=s,
                                              holdout=hold)[0]] for s in ("train", "val", "test")}
    assert sum(len(v) for v in got.values()) == 40 and all(len(v) >= 4 for v in got.values())
    assert not set(got["train"]) & set(got["val"]) and not set(got["val"]) & set(got["test"])
    assert all(holdout_split(i, hold) == "val" for i in got["val"])  # deterministic per id
    again = load_index("folder", videos_dir=str(flat), split="val", holdout=hold)[0]
    assert [e.video_id for e in again] == got["val"]


def test_cli_holdout_and_video_in_two_splits(clip_bytes, tmp_path):
    flat = tmp_path / "flat"
    for k in range(12):
        _put(flat / ("clap" if k % 2 else "wave") / f"v{k}.mp4", clip_bytes[k % 3])
    out = tmp_path / "out"
    common = [f"--videos_dir={flat}", "--format=folder", f"--output_dir={out}", "--workers=1",
              "--frame_size=48x36", "--num_shards=1", "--noprogress"]
    r = _cli("--split=train,val", *common)
    assert r.returncode != 0 and "no split information" in r.stderr
    r = _cli("--split=train,val", "--val_fraction=0.3", *common)
    assert r.returncode == 0, r.stderr[-2000:]
    ids = {s: set(json.loads((out / f"{s}-manifest.json").read_text())["video_ids"])
           for s in ("train", "val")}
    assert ids["train"] and ids["val"] and not ids["train"] & ids["val"]
    assert len(ids["train"] | ids["val"]) == 12
    # The same videos under another split name of the same output folder are refused.
    r = _cli("--split=other", *common)
    assert r.returncode != 0
    assert "would be in split 'other' and in split 'train'" in r.stderr, r.stderr[-2000:]


# ---------------------------------------------------------------- 3. one prepare per split

_HOLD_SCRIPT = """
import sys, time, os
from tfvid.prep import prepare as p
real, go = p._write_shard, sys.argv[2]
def slow(*a, **k):
    print("writing", flush=True)
    while not os.path.exists(go):
        time.sleep(0.1)
    return real(*a, **k)
p._write_shard = slow
from pipelines import prepare_data
from absl import app
sys.argv = ["prepare_data"] + sys.argv[3:]
app.run(prepare_data.main)
"""


def _wait_for_line(proc, text):
    for line in proc.stdout:
        if line.strip() == text:
            return True
    return False


def test_concurrent_prepare_of_a_split_is_refused(clip_bytes, tmp_path):
    entries, _ = _class_set(tmp_path / "v", clip_bytes, classes=2, per_class=3)
    out, go = tmp_path / "out", tmp_path / "go"
    args = [f"--videos_dir={tmp_path / 'v'}", "--format=folder", "--split=train",
            f"--output_dir={out}", "--workers=1", "--frame_size=48x36", "--num_shards=2",
            "--noprogress"]
    a = subprocess.Popen([sys.executable, "-c", _HOLD_SCRIPT, "x", str(go), *args], cwd=ROOT,
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for_line(a, "writing")   # A holds the lock, mid-shard
        b = _cli(*args)
        assert b.returncode != 0
        assert "in use by another prepare_data of split 'train'" in b.stderr
        assert f"pid {a.pid}" in b.stderr
        go.write_text("")
        out_a, err_a = a.communicate(timeout=300)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == 0, err_a[-2000:]
    from tfvid.prep.prepare import count_records
    assert sum(count_records(p) for p in shard_paths(str(out), "train")) == 6
    assert not [f for f in os.listdir(out) if ".tmp-" in f]


# ---------------------------------------------------------------- 4. worker deaths

def test_worker_death_rejects_that_video_and_goes_on(clip_bytes, tmp_path):
    _class_set(tmp_path / "v", clip_bytes, classes=2, per_class=4)
    out = tmp_path / "out"
    env = {**ENV, "TFVID_PREPARE_TEST_KILL": "c01/c01_v1"}
    r = _cli(f"--videos_dir={tmp_path / 'v'}", "--format=folder", "--split=train",
             f"--output_dir={out}", "--workers=2", "--frame_size=48x36", "--num_shards=2",
             "--layout=both", "--noprogress", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "BrokenProcessPool" not in r.stderr
    summary = json.loads((out / "train-summary.json").read_text())
    assert summary["videos"] == 7 and summary["rejects"] == 1
    rejects = (out / "train-rejects.tsv").read_text()
    assert "c01_v1.mp4\tworker process died (signal 9 SIGKILL) while decoding" in rejects
    assert not [f for f in os.listdir(out / "frames" / "train") if f.startswith(".tmp-")]
    # The cause may go away (memory): a rerun retries it (here without the hook).
    r = _cli(f"--videos_dir={tmp_path / 'v'}", "--format=folder", "--split=train",
             f"--output_dir={out}", "--workers=2", "--frame_size=48x36", "--num_shards=2",
             "--layout=both", "--noprogress")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "train-summary.json").read_text())
    assert summary["videos"] == 8 and summary["rejects"] == 0 and summary["shards_skipped"] == 1


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(k) for k in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the workers")
def test_kill_9_of_prepare_takes_its_workers_along(clip_bytes, tmp_path):
    _class_set(tmp_path / "v", clip_bytes, classes=2, per_class=4)
    go = tmp_path / "never"
    args = [f"--videos_dir={tmp_path / 'v'}", "--format=folder", "--split=train",
            f"--output_dir={tmp_path / 'out'}", "--workers=2", "--frame_size=48x36",
            "--num_shards=2", "--noprogress"]
    a = subprocess.Popen([sys.executable, "-c", _HOLD_SCRIPT, "x", str(go), *args], cwd=ROOT,
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert _wait_for_line(a, "writing")
        deadline = time.time() + 60
        while len(_descendants(a.pid)) < 2 and time.time() < deadline:
            time.sleep(0.2)
        kids = _descendants(a.pid)
        assert len(kids) >= 2, kids   # the 2 workers (and multiprocessing's resource tracker)
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait()
    deadline = time.time() + 10
    while any(_alive(k) for k in kids) and time.time() < deadline:
        time.sleep(0.2)
    assert not [k for k in kids if _alive(k)]


# ---------------------------------------------------------------- 5. disk full

def _enospc(*a):
    return OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_tfrecord(clip_bytes, tmp_path, monkeypatch):
    import tensorflow as tf
    entries, classes = _class_set(tmp_path / "v", clip_bytes, classes=2, per_class=2)
    out = tmp_path / "out"
    real, opened = tf.io.TFRecordWriter, []

    class Full(real):  # the second shard hits a full disk on its first record
        def __init__(self, path, *a, **k):
            super().__init__(path, *a, **k)
            opened.append(path)

        def write(self, record):
            if len(opened) > 1:
                raise tf.errors.ResourceExhaustedError(
                    None, None, f"{opened[-1]}; No space left on device")
            return super().write(record)
    monkeypatch.setattr(tf.io, "TFRecordWriter", Full)
    with pytest.raises(OSError, match=r"shard /.*/train-00001-of-00002.tfrecord: no space left "
                       "on device") as e:
        prepare(entries, classes, output_dir=str(out), **_opts())
    assert e.value.errno == errno.ENOSPC and str(e.value).startswith("cannot write TFRecord")
    assert [os.path.basename(p) for p in shard_paths(str(out), "train")] == [
        "train-00000-of-00002.tfrecord"]
    assert not [f for f in os.listdir(out) if ".tmp-" in f]
    monkeypatch.setattr(tf.io, "TFRecordWriter", real)   # space freed: the rerun resumes
    s = prepare(entries, classes, output_dir=str(out), **_opts())
    assert s["shards_skipped"] == 1 and s["videos"] == 4


def test_disk_full_frame_folders(clip_bytes, tmp_path, monkeypatch):
    from tfvid.prep import prepare_worker
    entries, classes = _class_set(tmp_path / "v", clip_bytes, classes=2, per_class=2)
    out = tmp_path / "out"
    written = []

    def full_open(path, mode="r", *a, **k):
        if "w" in mode and os.path.basename(path).startswith("img_"):
            written.append(path)
            if len(written) > N + 3:   # the first folder fits, the second does not
                raise _enospc()
        return open(path, mode, *a, **k)
    monkeypatch.setattr(prepare_worker, "open", full_open, raising=False)
    with pytest.raises(OSError, match=r"frame folder /.*/frames/train/c00_v1: no space left on device") as e:
        prepare(entries, classes, output_dir=str(out), layout="frames", **_opts())
    assert e.value.errno == errno.ENOSPC
    frames = out / "frames" / "train"
    assert not [f for f in os.listdir(frames) if f.startswith(".tmp-")]
    assert len(os.listdir(frames / "c00_v0")) == N   # the finished folder stays
    monkeypatch.undo()
    s = prepare(entries, classes, output_dir=str(out), layout="frames", **_opts())
    assert s["frame_folders"] == 4 and s["rejects"] == 0


# ---------------------------------------------------------------- 6. rejects are retried

def test_missing_file_is_retried_when_it_returns(clip_bytes, tmp_path):
    entries, classes = _class_set(tmp_path / "v", clip_bytes, classes=2, per_class=3)
    corrupt = _put(tmp_path / "v" / "c00" / "bad.mp4", np.random.default_rng(0).bytes(3000))
    entries.append(VideoEntry("bad", corrupt, 0, "c00", "train"))
    out = tmp_path / "out"
    moved = str(tmp_path / "away.mp4")
    shutil.move(entries[2].path, moved)
    s = prepare(entries, classes, output_dir=str(out), **_opts(num_shards=3))
    assert s["rejects"] == 2 and s["videos"] == 5
    assert "video file not found" in (out / "train-rejects.tsv").read_text()
    s = prepare(entries, classes, output_dir=str(out), **_opts(num_shards=3))
    assert s["shards_skipped"] == 3 and s["rejects"] == 2   # still missing: nothing redone
    shutil.move(moved, entries[2].path)
    s = prepare(entries, classes, output_dir=str(out), **_opts(num_shards=3))
    assert s["videos"] == 6 and s["rejects"] == 1 and s["shards_skipped"] == 2
    tsv = (out / "train-rejects.tsv").read_text()
    assert "bad.mp4" in tsv and "not found" not in tsv   # permanent reject of an unchanged file


# ---------------------------------------------------------------- 7. truncated videos

def test_truncated_video_is_reported_as_partial(tmp_path):
    from tfvid.prep.video_writer import write_video
    os.makedirs(tmp_path / "v")
    path = write_video(str(tmp_path / "v" / "long.avi"),
                       np.random.default_rng(0).integers(0, 255, (20, H, W, 3), np.uint8))
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * 0.7)])
    entries = [VideoEntry("long", path, 0, "a", "train")]
    for layout in ("tfrecord", "frames"):
        out = tmp_path / layout
        s = prepare(entries, ["a"], output_dir=str(out), layout=layout, **_opts(num_shards=1))
        assert s["videos"] == 1 and s["rejects"] == 0 and s["partial"] == 1
        note = (out / "train-partial.tsv").read_text().splitlines()[1]
        assert note.startswith(f"{path}\t") and " of 20 frames decoded" in note
        kept = int(note.split("\t")[1].split()[0])
        assert 0 < kept < 20 and s["frames"] == kept
        again = prepare(entries, ["a"], output_dir=str(out), layout=layout, **_opts(num_shards=1))
        assert again["partial"] == 1   # a resumed run still reports it


# ---------------------------------------------------------------- 9. empty index

def test_empty_or_header_only_index_is_refused(tmp_path):
    os.makedirs(tmp_path / "v")
    csv = tmp_path / "only_header.csv"
    csv.write_text("path,label\n")
    with pytest.raises(ValueError, match=r"only_header.csv: no videos listed for split 'train'"):
        load_index("csv", videos_dir=str(tmp_path / "v"), index=str(csv), split="train")
    ucf = tmp_path / "ucfTrainTestlist"
    os.makedirs(ucf)
    (ucf / "classInd.txt").write_text("1 A\n")
    (ucf / "trainlist01.txt").write_text("")
    with pytest.raises(ValueError, match=r"trainlist01.txt: no videos listed"):
        load_index("ucf101", videos_dir=str(tmp_path / "v"), index=str(ucf), split="train1")
    out = tmp_path / "out"
    r = _cli("--format=csv", f"--videos_dir={tmp_path / 'v'}", f"--index={csv}", "--split=train",
             f"--output_dir={out}", "--noprogress")
    assert r.returncode != 0 and "only_header.csv: no videos listed" in r.stderr
    assert not (out / "classes.txt").exists()
    with pytest.raises(ValueError, match="no videos to prepare"):
        prepare([], ["a"], output_dir=str(out), **_opts())
