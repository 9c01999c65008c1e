"""Metrics on hand-made arrays, score files, and the confusion-matrix outputs."""
import csv
import json
import os

import numpy as np
import pytest

from tfvid.eval import metrics, plots
from tfvid.eval.metrics import Scores

# 6 classes (3, 4, 5 never occur), 5 labeled videos and one unlabeled (-1).
LABELS = np.array([0, 1, 2, 2, 1, -1])
LOGITS = np.array([
    [5, 1, 0, 0, 0, 0],   # label 0: top-1 correct
    [2, 1, 0, 0, 0, 0],   # label 1: predicted 0, label second -> top-5 only
    [0, 0, 3, 0, 0, 0],   # label 2: correct
    [1, 6, 0, 5, 4, 3],   # label 2: predicted 1, label ranked 6th -> wrong even in top-5
    [0, 4, 0, 0, 0, 1],   # label 1: correct
    [9, 0, 0, 0, 0, 0],   # unlabeled: ignored
], dtype=np.float32)
NAMES = ["walk", "run", "jump", "swim", "ride", "climb"]


def test_topk_accuracy_values():
    assert metrics.topk_accuracy(LABELS, LOGITS, 1) == pytest.approx(3 / 5)
    assert metrics.topk_accuracy(LABELS, LOGITS, 5) == pytest.approx(4 / 5)
    assert metrics.topk_accuracy(LABELS, LOGITS, 2) == pytest.approx(4 / 5)
    # k beyond the number of classes: every labeled video counts.
    assert metrics.topk_accuracy(LABELS, LOGITS, 50) == pytest.approx(1.0)


def test_ties_go_to_the_lower_class_index():
    logits = np.array([[1.0, 1.0, 0.0]])
    assert metrics.topk_accuracy([0], logits, 1) == 1.0
    assert metrics.topk_accuracy([1], logits, 1) == 0.0
    np.testing.assert_array_equal(metrics.topk_predictions(logits, 2), [[0, 1]])


def test_per_class_and_mean_class_accuracy():
    acc, support = metrics.per_class_accuracy(LABELS, LOGITS)
    np.testing.assert_array_equal(support, [1, 2, 2, 0, 0, 0])
    np.testing.assert_allclose(acc[:3], [1.0, 0.5, 0.5])
    assert np.isnan(acc[3:]).all()
    # Mean over the 3 present classes (absent ones excluded), differs from top-1 (0.6).
    assert metrics.mean_class_accuracy(LABELS, LOGITS) == pytest.approx(2 / 3)


def test_confusion_matrix_counts():
    cm = metrics.confusion_matrix(LABELS, LOGITS)
    expected = np.zeros((6, 6), dtype=np.int64)
    expected[0, 0] = 1
    expected[1, 0] = 1
    expected[1, 1] = 1
    expected[2, 2] = 1
    expected[2, 1] = 1
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == 5     # the unlabeled video is not counted


def test_no_labeled_video_gives_nan():
    assert np.isnan(metrics.topk_accuracy([-1, -1], np.zeros((2, 3)), 1))
    assert np.isnan(metrics.mean_class_accuracy([-1], np.zeros((1, 3))))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="outside"):
        metrics.topk_accuracy([0, 7], np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="do not match"):
        metrics.topk_accuracy([0, 1, 2], np.zeros((2, 3)), 1)


def test_summarize_reports_absent_and_unlabeled():
    s = metrics.summarize(LABELS, LOGITS, NAMES)
    json.dumps(s)     # JSON-ready: no NaN, no numpy scalars
    assert s["num_videos"] == 6 and s["num_labeled"] == 5 and s["num_unlabeled"] == 1
    assert s["top1"] == pytest.approx(0.6) and s["top5"] == pytest.approx(0.8)
    assert s["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert s["classes_present"] == 3
    assert s["absent_classes"] == ["swim", "ride", "climb"]
    assert any("excluded from mean_class_accuracy" in n for n in s["notes"])
    assert any("unlabeled" in n for n in s["notes"])
    row = s["per_class"][1]
    assert row == {"index": 1, "name": "run", "support": 2, "correct": 1, "accuracy": 0.5}
    assert s["per_class"][4]["accuracy"] is None
    assert s["per_class_accuracy"] == {"walk": 1.0, "run": 0.5, "jump": 0.5, "swim": None,
                                       "ride": None, "climb": None}
    text = metrics.format_summary(s)
    assert "top1" in text and "60.00%" in text and "66.67%" in text and "jump" in text


def test_summarize_few_classes_clips_top5():
    s = metrics.summarize([0, 1], np.array([[0, 1.0], [0, 1.0]]), ["a", "b"])
    assert s["top1"] == 0.5 and s["top5"] == 1.0
    assert any("exceeds" in n for n in s["notes"])


def test_scores_npz_round_trip(tmp_path):
    scores = Scores(ids=["v_ApplyEyeMakeup_g01_c01", "vidéo-2", "x"], labels=[3, -1, 0],
                    logits=np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
                    class_names=["a", "b", "c", "Ünïcode"])
    path = metrics.save_scores(str(tmp_path / "sub" / "scores"), scores)
    assert path.endswith("scores.npz") and os.path.isfile(path)
    assert not [f for f in os.listdir(tmp_path / "sub") if f.endswith(".tmp")]
    back = metrics.load_scores(path)
    assert back.ids.tolist() == scores.ids.tolist()
    np.testing.assert_array_equal(back.labels, [3, -1, 0])
    np.testing.assert_array_equal(back.logits, scores.logits)
    assert back.logits.dtype == np.float32
    assert back.class_names == ["a", "b", "c", "Ünïcode"]
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["class_names", "ids", "labels", "logits"]


def test_save_scores_default_names_and_errors(tmp_path):
    scores = Scores(ids=["a"], labels=[0], logits=[[1.0, 2.0]])
    back = metrics.load_scores(metrics.save_scores(str(tmp_path / "s.npz"), scores))
    assert back.class_names == ["class_0", "class_1"]
    with pytest.raises(ValueError, match="class names"):
        metrics.save_scores(str(tmp_path / "t.npz"), scores, ["only_one"])
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        metrics.load_scores(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="disagree"):
        Scores(ids=["a", "b"], labels=[0], logits=[[1.0, 2.0]])


def test_row_normalize():
    cm = np.array([[2, 2], [0, 0]])
    np.testing.assert_allclose(plots.row_normalize(cm), [[0.5, 0.5], [0, 0]])


def test_confusion_png_and_csv(tmp_path):
    cm = metrics.confusion_matrix(LABELS, LOGITS)
    png = plots.save_confusion_png(cm, NAMES, str(tmp_path / "cm.png"), title="test")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 1000
    path = plots.save_confusion_csv(cm, NAMES, str(tmp_path / "cm.csv"))
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true\\predicted"] + NAMES
    assert rows[2] == ["run", "1", "1", "0", "0", "0", "0"]
    with pytest.raises(ValueError, match="class names"):
        plots.save_confusion_csv(cm, NAMES[:2], str(tmp_path / "bad.csv"))


def test_confusion_png_many_classes(tmp_path):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 5, size=(101, 101))
    names = [f"ActionClassWithALongName{i:03d}" for i in range(101)]
    png = plots.save_confusion_png(cm, names, str(tmp_path / "big.png"))
    assert os.path.getsize(png) > 10000


def test_write_report(tmp_path):
    scores = Scores(ids=[f"v{i}" for i in range(6)], labels=LABELS, logits=LOGITS,
                    class_names=NAMES)
    summary = plots.write_report(scores, str(tmp_path / "eval"), extra={"run": "x"})
    out = tmp_path / "eval"
    for name in ("metrics.json", "scores.npz", "confusion.png", "confusion.csv",
                 "per_class.csv"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "metrics.json") as f:
        written = json.load(f)
    assert written["top1"] == pytest.approx(0.6) and written["run"] == "x"
    assert summary["mean_class_accuracy"] == pytest.approx(2 / 3)
    with open(out / "per_class.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "name", "support", "correct", "accuracy"]
    assert rows[1] == ["0", "walk", "1", "1", "1.000000"]
    assert rows[4] == ["3", "swim", "0", "0", ""]
    assert metrics.load_scores(str(out / "scores.npz")).class_names == NAMES


def test_write_report_lists_bad_videos(tmp_path):
    """Bad videos left out of the scores are listed in metrics.json and bad_videos.tsv."""
    scores = Scores(ids=[f"v{i}" for i in range(6)], labels=LABELS, logits=LOGITS,
                    class_names=NAMES)
    bad = [{"id": "v9", "problem": "label 11 outside [0, 6) (and not -1 = unlabeled)"},
           {"id": "odd\tid", "problem": "corrupt JPEG\nframe 3"}]
    out = tmp_path / "eval"
    summary = plots.write_report(scores, str(out), bad_videos=bad)
    with open(out / "metrics.json") as f:
        written = json.load(f)
    assert written["num_bad_videos"] == 2 and written["bad_videos"][0]["id"] == "v9"
    assert written["top1"] == pytest.approx(0.6) and written["num_videos"] == 6
    assert any("2 bad videos" in n for n in written["notes"])
    lines = (out / "bad_videos.tsv").read_text(encoding="utf-8").splitlines()
    assert lines == ["id\tproblem", "v9\tlabel 11 outside [0, 6) (and not -1 = unlabeled)",
                     "odd id\tcorrupt JPEG frame 3"]
    assert "bad videos: 2" in metrics.format_summary(summary)
    # No bad video: an empty list and a header-only file (no stale list from an older run).
    plots.write_report(scores, str(out))
    assert (out / "bad_videos.tsv").read_text(encoding="utf-8") == "id\tproblem\n"
    with open(out / "metrics.json") as f:
        assert json.load(f)["bad_videos"] == []
