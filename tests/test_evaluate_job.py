"""The evaluate job on bad data, as a user meets it: one bad label, a corrupt frame, a
truncated shard, an incomplete split. Tiny TSN run (random weights) on hand-written records."""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import keras

CLASSES = 3
S = 32


def _write(path, videos, n=10, h=36, w=40, corrupt=()):
    """videos: [(id, label or None)]; ids in `corrupt` get a frame that is not a JPEG."""
    from tfvid.data import schema
    rng = np.random.default_rng(7)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for vid, label in videos:
            frames = rng.integers(0, 256, (n, h, w, 3)).astype(np.uint8)
            enc = [tf.io.encode_jpeg(f).numpy() for f in frames]
            if vid in corrupt:
                enc = [e if i else b"not a jpeg" + e[:20] for i, e in enumerate(enc)]
            ex = schema.make_example(vid, enc, height=h, width=w, frame_rate=25,
                                     label_index=label)
            writer.write(ex.SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tfvid import models
    from tfvid.data.sampling import TSNSampler
    model_dir = tmp_path_factory.mktemp("run")
    cfg = {"model": "tsn", "num_classes": CLASSES, "backbone": "tiny", "width": 0.25,
           "input_size": S, "modality": "rgb", "num_segments": 3, "consensus": "avg",
           "sampler": TSNSampler(num_segments=3).config(), "class_names": ["a", "b", "c"]}
    (model_dir / "run_config.json").write_text(json.dumps(cfg))
    keras.utils.set_random_seed(0)
    trained = models.build("tsn", CLASSES, backbone="tiny", width=0.25, input_size=S,
                           num_segments=None)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=trained, step=tf.Variable(1)),
                               str(model_dir), max_to_keep=1).save()
    return str(model_dir)


GOOD = [("v0", 0), ("v1", 1), ("v2", 2), ("v3", 0)]


def _main(*args):
    from absl import flags
    from pipelines import evaluate as job
    flags.FLAGS(["evaluate", *args])
    try:
        job.main(["evaluate"])
    finally:
        flags.FLAGS.unparse_flags()


def _common(run, data, out):
    return [f"--model_dir={run}", f"--data={data}", "--num_segments=3", "--num_crops=1",
            "--batch_size=2", f"--output_dir={out}"]


def test_one_bad_label_no_longer_discards_the_evaluation(run, tmp_path):
    """Before: the whole set was evaluated, then a ValueError, and nothing was written."""
    from tfvid.eval import metrics
    data = _write(tmp_path / "test-0-of-1.tfrecord",
                  GOOD[:2] + [("bad", 7), ("unlabeled", None)] + GOOD[2:])
    out = tmp_path / "eval"
    _main(*_common(run, data, out))                                   # default: --bad_data=skip
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["num_videos"] == 5 and summary["num_unlabeled"] == 1
    assert summary["num_bad_videos"] == 1
    assert summary["bad_videos"][0]["id"] == "bad"
    assert re.search(r"label 7 (is )?outside \[0, 3\)", summary["bad_videos"][0]["problem"])
    assert summary["protocol"]["bad_data"] == "skip"
    lines = (out / "bad_videos.tsv").read_text().splitlines()
    assert lines[0] == "id\tproblem" and lines[1].startswith("bad\t") and "label 7" in lines[1]
    scores = metrics.load_scores(str(out / "scores.npz"))
    assert scores.ids.tolist() == ["v0", "v1", "unlabeled", "v2", "v3"]
    assert summary["top1"] == pytest.approx(metrics.topk_accuracy(scores.labels, scores.logits))
    for name in ("confusion.png", "confusion.csv", "per_class.csv"):
        assert os.path.getsize(out / name) > 0


def test_bad_data_fail_stops_naming_the_video(run, tmp_path):
    data = _write(tmp_path / "test-0-of-1.tfrecord", GOOD[:1] + [("bad", -3)] + GOOD[1:])
    out = tmp_path / "eval"
    with pytest.raises(ValueError, match=r"'bad'.*label -3 (is )?outside \[0, 3\)"):
        _main(*_common(run, data, out), "--bad_data=fail")
    assert not (out / "metrics.json").exists()


def test_corrupt_frame_is_listed_when_the_pipeline_marks_it(run, tmp_path):
    """build_dataset's 'valid'/'problem' marks: the corrupt video is listed, the rest scored."""
    from tfvid.data import build_dataset
    from tfvid.data.sampling import TSNSampler
    data = _write(tmp_path / "test-0-of-1.tfrecord", GOOD + [("broken", 1)], corrupt={"broken"})
    spec = build_dataset([data], sampler=TSNSampler(3), mode="test", input_size=S,
                         backbone="tiny", repeat=False).element_spec
    if "valid" not in spec:
        pytest.skip("build_dataset does not mark invalid videos ('valid') yet")
    out = tmp_path / "eval"
    _main(*_common(run, data, out), "--num_segments=10")   # 10 snippets of 10 frames: all read
    summary = json.loads((out / "metrics.json").read_text())
    assert [b["id"] for b in summary["bad_videos"]] == ["broken"]
    assert summary["bad_videos"][0]["problem"]
    assert summary["num_videos"] == 4


def test_truncated_shard_is_named(run, tmp_path, monkeypatch):
    """A truncated shard used to give a DataLossError naming no file."""
    from pipelines import evaluate as job
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write(data_dir / "test-0-of-2.tfrecord", GOOD[:2])
    cut = _write(data_dir / "test-1-of-2.tfrecord", GOOD[2:])
    size = os.path.getsize(cut)
    with open(cut, "r+b") as f:
        f.truncate(size - 40)
    out = tmp_path / "eval"
    name = re.escape(os.path.basename(cut))
    # The default path: the shards are checked first (check_shards), or read (DataLossError).
    with pytest.raises((ValueError, tf.errors.DataLossError), match=name):
        _main(*_common(run, str(data_dir), out))
    # Without the up-front check, the DataLossError met while reading names the shard too.
    from tfvid.eval import run as eval_run
    monkeypatch.setattr(eval_run, "check_data", lambda files, allow_incomplete: [])
    with pytest.raises(tf.errors.DataLossError, match=name):
        _main(*_common(run, str(data_dir), out))
    assert not (out / "metrics.json").exists()


def test_shards_are_checked_first_with_allow_incomplete(run, tmp_path, monkeypatch):
    """evaluate calls tfvid.prep.completeness.check_shards(files, allow_incomplete=...)."""
    completeness = pytest.importorskip("tfvid.prep.completeness")
    data = _write(tmp_path / "test-0-of-2.tfrecord", GOOD)
    calls = []

    def fake_check(paths, allow_incomplete=False):
        calls.append((list(paths), allow_incomplete))
        if not allow_incomplete:
            raise ValueError("test-1-of-2.tfrecord is missing")
        return ["shard test-1-of-2.tfrecord is missing: evaluating 1 of 2 shards"]

    monkeypatch.setattr(completeness, "check_shards", fake_check)
    out = tmp_path / "eval"
    with pytest.raises(ValueError, match="test-1-of-2.tfrecord is missing"):
        _main(*_common(run, data, out))
    assert calls == [([data], False)] and not (out / "metrics.json").exists()
    _main(*_common(run, data, out), "--allow_incomplete")
    assert calls[-1] == ([data], True)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["protocol"]["data_warnings"] == [
        "shard test-1-of-2.tfrecord is missing: evaluating 1 of 2 shards"]
    assert summary["num_videos"] == 4
