"""The temporal_order benchmark at minimal sizes: every model trains and is evaluated through
the jobs, and the result has its structure (JSON-able rows per model, the table)."""
import json

import pytest

from pipelines import bench_temporal_order as bench


def test_order_metrics_within_pair(tmp_path):
    import numpy as np

    from tfvid.eval.metrics import Scores, save_scores
    names = ["MoveLeft", "MoveRight", "Still"]
    logits = np.array([[2, 1, 3], [1, 2, 0], [0, 1, 3], [1, 0, 0]], np.float32)
    labels = np.array([0, 1, 2, 1])
    path = save_scores(str(tmp_path / "s.npz"), Scores(np.array(list("abcd")), labels, logits,
                                                        names), names)
    m = bench.order_metrics(path)
    # pair videos: a (0 > 1 in the pair: right, Still wins top-1), b (right), d (wrong)
    assert m["within_pair"] == pytest.approx(2 / 3) and m["pair_videos"] == 3
    assert m["order_free"] == 1.0 and m["top1"] == 0.5 and m["pairs"] == pytest.approx(0.25)


def test_benchmark_structure_at_minimal_sizes(tmp_path):
    small = {"bench_dir": str(tmp_path), "num_classes": 3, "videos_per_class": 4,
             "frame_size": (40, 32), "num_frames": (16, 20), "input_size": 32, "width": 0.25,
             "batch_size": 3, "tsn_steps": 2, "din_steps": 2, "videomap_steps": 2,
             "stnet_steps": 2}
    result = bench.run(small)
    json.dumps(result)                                       # JSON-able as it is
    assert [r["model"] for r in result["rows"]] == ["tsn", "din", "videomap", "stnet"]
    for r in result["rows"]:
        assert r["videos"] == 3 and r["pair_videos"] == 2     # one test video per class
        for key in ("top1", "order_free", "pairs", "within_pair"):
            assert 0.0 <= r[key] <= 1.0, (r["model"], key, r[key])
    table = bench.format_table(result)
    assert "within pair" in table and "videomap" in table
