"""The quickstart job end to end with small settings (slow: run with -m slow)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_small(tmp_path):
    cmd = [sys.executable, "-m", "pipelines.quickstart", f"--workdir={tmp_path / 'qs'}",
           f"--export_base={tmp_path / 'saved'}", "--num_classes=3", "--videos_per_class=4",
           "--input_size=48", "--train_steps=10", "--batch_size=4", "--num_crops=1"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "order-free classes" in r.stdout and "quickstart finished" in r.stdout
    metrics = json.loads((tmp_path / "qs/runs/tsn_rgb/eval/metrics.json").read_text())
    assert metrics["num_videos"] == 3 and set(metrics["per_class_accuracy"]) == {
        "MoveLeft", "MoveRight", "Still"}
    assert os.path.isfile(tmp_path / "saved/quickstart_tsn_rgb/1/saved_model.pb")
    assert os.path.isfile(tmp_path / "qs/preview.png")
