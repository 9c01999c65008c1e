"""The order report of the quickstart (tfvid.eval.order) and the input preview's display
inversion (tfvid.data.preview)."""
import json

import numpy as np
import pytest

from tfvid.eval.metrics import Scores, save_scores
from tfvid.eval.order import class_group_report, order_table

NAMES = ["MoveLeft", "MoveRight", "Still"]
PAIRS = [("MoveLeft", "MoveRight")]


def test_order_table_rows(tmp_path):
    logits = np.array([[2, 1, 3], [1, 2, 0], [0, 1, 3], [1, 0, 0]], np.float32)
    labels = np.array([0, 1, 2, 1])
    (tmp_path / "run").mkdir()
    save_scores(str(tmp_path / "run" / "scores.npz"),
                Scores(np.array(list("abcd")), labels, logits, NAMES), NAMES)
    text = order_table({"model A": str(tmp_path / "run")}, ["Still"], PAIRS)
    row = text.splitlines()[1]
    # top-1 2/4, order-free 1/1, pair classes (0 + 0.5) / 2, within pair 2/3
    assert row.split()[2:] == ["50.0%", "100.0%", "25.0%", "66.7%"]


def test_class_group_report(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"top1": 0.5, "top5": 1.0, "mean_class_accuracy": 0.5,
                                "per_class_accuracy": {"MoveLeft": 0.0, "MoveRight": 0.5,
                                                       "Still": 1.0}}))
    text = class_group_report(str(path), NAMES, ["Still"], PAIRS)
    assert "(chance 0.333)" in text
    assert "order-free classes: mean accuracy 1.000" in text
    assert "time-reversal pairs: mean accuracy 0.250" in text


@pytest.mark.parametrize("backbone", ["tiny", "bninception", "resnet50"])
def test_denormalize_inverts_normalize(backbone):
    from tfvid.data.normalization import normalize
    from tfvid.data.preview import denormalize
    rgb = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)).astype(np.float32)
    shown = denormalize(normalize(rgb, backbone, "rgb").numpy(), backbone)
    np.testing.assert_allclose(shown, rgb / 255.0, atol=1e-4)
