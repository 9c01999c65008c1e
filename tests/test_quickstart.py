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
           "--input_size=48", "--train_steps=10", "--batch_size=4", "--num_crops=1",
           "--din_steps=10"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={k: v for k, v in os.environ.items()    # a new user's environment
                            if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFVID_QUIET_TF")
                            and not k.startswith("TQDM_")})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "order-free classes" in r.stdout and "quickstart finished" in r.stdout
    # the printed commands can be pasted: the interpreter is there
    commands = [line[2:] for line in r.stdout.splitlines() if line.startswith("$ ")]
    assert len(commands) == 8, r.stdout        # 7 steps + extract_features, train, evaluate
    assert all(c.split()[0].startswith("python") and c.split()[1:3] == ["-m", c.split()[2]]
               and c.split()[2].startswith("pipelines.") for c in commands), commands
    # the preview names the classes
    assert any(line.startswith("training batch:") and "Move" in line
               for line in r.stdout.splitlines()), r.stdout
    # stderr is not a terminal here: progress bars stay small, TensorFlow stays quiet
    assert len(r.stderr) < 30000, r.stderr[-3000:]
    # (TensorFlow's load-time lines and its Python INFO lines; a uint8 transpose still logs
    # "oneDNN supports DT_UINT8 only on platforms with AVX-512" once per job at run time)
    for noise in ("cuInit", "oneDNN custom operations", "absl::InitializeLog", "cuda drivers",
                  "signature_serialization.py", "functional_saver.py", "fingerprinting_utils.py"):
        assert noise not in r.stderr, r.stderr[-3000:]
    metrics = json.loads((tmp_path / "qs/runs/tsn_rgb/eval/metrics.json").read_text())
    assert metrics["num_videos"] == 3 and set(metrics["per_class_accuracy"]) == {
        "MoveLeft", "MoveRight", "Still"}
    assert os.path.isfile(tmp_path / "saved/quickstart_tsn_rgb/1/saved_model.pb")
    assert os.path.isfile(tmp_path / "qs/preview.png")
    # the second stage: a DIN head on the TSN's cached features, compared with TSN
    din = json.loads((tmp_path / "qs/runs/din_rgb/eval/metrics.json").read_text())
    assert din["num_videos"] == 3
    assert "DIN (two-stage, TSN features)" in r.stdout and "within pair" in r.stdout
