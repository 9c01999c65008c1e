"""Late fusion: weights, id alignment, error messages, and the fuse job."""
import json
import os

import numpy as np
import pytest
from absl import app

from tfvid.eval import fusion, metrics
from tfvid.eval.metrics import Scores

NAMES = ["a", "b", "c"]


def streams():
    rng = np.random.default_rng(0)
    ids = np.array([f"v{i}" for i in range(6)])
    labels = np.array([0, 1, 2, 0, -1, 1])
    rgb = Scores(ids, labels, rng.normal(size=(6, 3)), NAMES)
    flow_logits = rng.normal(size=(6, 3))
    perm = rng.permutation(6)
    flow = Scores(ids[perm], labels[perm], flow_logits[perm], NAMES)   # shuffled order
    return rgb, flow, flow_logits


def test_weighted_average_aligned_by_id():
    rgb, flow, flow_logits = streams()
    fused = fusion.fuse([rgb, flow], [1, 1.5])
    assert fused.ids.tolist() == rgb.ids.tolist()
    np.testing.assert_allclose(fused.logits, (1 * rgb.logits + 1.5 * flow_logits) / 2.5,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fused.labels, rgb.labels)
    assert fused.class_names == NAMES


def test_default_weights_are_equal_and_one_stream_is_identity():
    rgb, flow, flow_logits = streams()
    np.testing.assert_allclose(fusion.fuse([rgb, flow]).logits, (rgb.logits + flow_logits) / 2,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fusion.fuse([rgb], [3.0]).logits, rgb.logits, rtol=1e-6)


def test_zero_weight_drops_a_stream():
    rgb, flow, flow_logits = streams()
    np.testing.assert_allclose(fusion.fuse([rgb, flow], [0, 2]).logits, flow_logits, rtol=1e-6)


def test_label_filled_from_other_stream():
    a = Scores(["x", "y"], [-1, 1], np.zeros((2, 2)))
    b = Scores(["y", "x"], [1, 0], np.ones((2, 2)))
    np.testing.assert_array_equal(fusion.fuse([a, b]).labels, [0, 1])


def test_missing_ids_are_named():
    rgb, flow, _ = streams()
    short = Scores(flow.ids[:4], flow.labels[:4], flow.logits[:4], NAMES)
    missing = sorted(set(rgb.ids) - set(short.ids))
    with pytest.raises(ValueError, match=f"stream 1 lacks 2 video ids.*'{missing[0]}', '{missing[1]}'"):
        fusion.fuse([rgb, short])
    with pytest.raises(ValueError, match="stream 0 lacks"):
        fusion.fuse([short, rgb])


def test_mismatches_are_errors():
    rgb, flow, _ = streams()
    with pytest.raises(ValueError, match="class names differ"):
        fusion.fuse([rgb, Scores(flow.ids, flow.labels, flow.logits, ["a", "B", "c"])])
    with pytest.raises(ValueError, match="classes"):
        fusion.fuse([rgb, Scores(flow.ids, flow.labels, flow.logits[:, :2])])
    with pytest.raises(ValueError, match="labels disagree.*'v"):
        fusion.fuse([rgb, Scores(flow.ids, (flow.labels + 1) % 3, flow.logits)])
    with pytest.raises(ValueError, match="repeats video ids"):
        fusion.fuse([rgb, Scores(["v0"] * 6, flow.labels, flow.logits)])
    with pytest.raises(ValueError, match="2 weights for 1"):
        fusion.fuse([rgb], [1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        fusion.fuse([rgb, flow], [1, -1])
    with pytest.raises(ValueError, match="at least one"):
        fusion.fuse([])


def test_fuse_from_files_and_fusion_can_fix_errors(tmp_path):
    ids = ["p", "q"]
    # rgb gets q wrong and flow gets p wrong; the fused scores get both right.
    rgb = Scores(ids, [0, 1], [[2.0, 0.0], [1.0, 0.0]], ["x", "y"])
    flow = Scores(ids[::-1], [1, 0], [[0.0, 3.0], [0.0, 0.5]], ["x", "y"])
    p1 = metrics.save_scores(str(tmp_path / "rgb.npz"), rgb)
    p2 = metrics.save_scores(str(tmp_path / "flow.npz"), flow)
    fused = fusion.fuse([p1, p2], [1, 1.5])
    # p: (2 + 0)/2.5 vs (0 + 0.75)/2.5 -> x (correct); q: (1 + 0)/2.5 vs (0 + 4.5)/2.5 -> y
    np.testing.assert_allclose(fused.logits, [[0.8, 0.3], [0.4, 1.8]], rtol=1e-6)
    assert metrics.topk_accuracy(fused.labels, fused.logits, 1) == 1.0
    assert metrics.topk_accuracy(rgb.labels, rgb.logits, 1) == 0.5


def test_fuse_job(tmp_path):
    from absl import flags
    from pipelines import fuse as job
    rgb, flow, _ = streams()
    p1 = metrics.save_scores(str(tmp_path / "rgb.npz"), rgb)
    p2 = metrics.save_scores(str(tmp_path / "flow.npz"), flow)
    out = tmp_path / "fused"
    flags.FLAGS(["fuse", f"--scores={p1},{p2}", "--weights=1,1.5", f"--output_dir={out}"])
    try:
        job.main(["fuse"])
    finally:
        flags.FLAGS.unparse_flags()
    for name in ("metrics.json", "scores.npz", "confusion.png", "confusion.csv", "per_class.csv"):
        assert os.path.getsize(out / name) > 0, name
    with open(out / "metrics.json") as f:
        written = json.load(f)
    expected = fusion.fuse([rgb, flow], [1, 1.5])
    assert written["top1"] == pytest.approx(metrics.topk_accuracy(expected.labels, expected.logits, 1))
    assert written["fusion"]["weights"] == [1.0, 1.5]
    np.testing.assert_allclose(metrics.load_scores(str(out / "scores.npz")).logits, expected.logits)
    with pytest.raises(app.UsageError, match="2 values for 3"):
        job.parse_weights("1,2", 3)
    with pytest.raises(app.UsageError, match="comma-separated numbers"):
        job.parse_weights("1,x", 2)


def test_fuse_job_errors_are_usage_errors(tmp_path):
    """Mismatching ids, an unreadable file, a missing file: UsageError (one line from run_job),
    before anything is written."""
    from absl import flags

    from pipelines import fuse as job
    from pipelines.common import UsageError
    rgb, flow, _ = streams()
    p1 = metrics.save_scores(str(tmp_path / "rgb.npz"), rgb)
    short = Scores(flow.ids[:4], flow.labels[:4], flow.logits[:4], NAMES)
    p2 = metrics.save_scores(str(tmp_path / "short.npz"), short)
    (tmp_path / "junk.npz").write_text("junk")
    out = tmp_path / "fused"
    for scores, match in [(f"{p1},{p2}", "--scores: stream 1 .*lacks 2 video ids"),
                          (f"{p1},{tmp_path / 'junk.npz'}", "is not a scores .npz"),
                          (f"{p1},{tmp_path / 'none.npz'}", "no such file"),
                          (",", "give one or more")]:
        flags.FLAGS(["fuse", f"--scores={scores}", f"--output_dir={out}"])
        try:
            with pytest.raises(UsageError, match=match):
                job.main(["fuse"])
        finally:
            flags.FLAGS.unparse_flags()
    assert not out.exists()
