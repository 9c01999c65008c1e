"""pipelines.benchmark --bench=train-step (pipelines/bench_train_step.py) on a tiny model: the
job's JSON, the time shares, the worker's memory budget, and (when torch is installed; CI does
not install it) the PyTorch side, which runs in a worker process."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
from absl import app, flags

from pipelines import bench_train_step as bts, benchmark as job

FLAGS = flags.FLAGS
HAVE_TORCH = importlib.util.find_spec("torch") is not None
TINY = dict(model="tsn-tiny", batch=2, warmup=1, steps=3, breakdown=True, seed=0)


def call(*args):
    FLAGS.unparse_flags()
    FLAGS(["benchmark", *args])
    return job.main(["benchmark"])


@pytest.fixture(autouse=True)
def _reset_flags():
    yield
    FLAGS.unparse_flags()


def test_job_writes_the_json(tmp_path, capsys):
    """The whole job in this process on the tiny TSN: every field of the JSON, positive rates,
    time shares summing to 1, a table; the PyTorch fields are null (with a note) exactly
    when torch is not installed."""
    out = tmp_path / "train_step.json"
    call("--bench=train-step", "--train_models=tsn-tiny", "--train_batch=2",
         "--train_warmup_steps=1", "--train_timed_steps=3", "--notrain_isolate",
         f"--json={out}")
    result = json.loads(out.read_text())
    assert result["bench"] == "train-step"
    assert set(result["models"]) == {"tsn-tiny"}
    row = result["models"]["tsn-tiny"]
    assert {"tfvid_clips_per_s", "pytorch_clips_per_s", "ratio"} <= set(row)
    assert row["batch"] == 2 and row["tfvid_clips_per_s"] > 0 and row["tfvid_step_s"] > 0
    assert set(row["shares"]) == {"forward", "backward", "optimizer", "loop_overhead"}
    assert sum(row["shares"].values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in row["step_parts_s"].values()) and row["step_parts_s"]["forward"] > 0
    raw = result["raw"]["tsn-tiny"]["tfvid"]
    assert len(raw["loop_step_times_s"]) == 3 and min(raw["loop_step_times_s"]) > 0
    s = result["settings"]
    assert s["batch"] == 2 and s["timed_steps"] == 3 and s["solver"]["clip_norm"] == 40.0
    assert len(result["load_average"]["before"]) == 3
    if HAVE_TORCH:
        assert row["pytorch_clips_per_s"] > 0 and row["ratio"] > 0
        assert row["ratio"] == pytest.approx(row["tfvid_clips_per_s"] / row["pytorch_clips_per_s"])
        assert result["target"]["met"] in (True, False)
    else:
        assert row["pytorch_clips_per_s"] is None and row["ratio"] is None
        assert "torch" in row["pytorch_note"] and result["target"]["met"] is None
    table = capsys.readouterr().out
    assert "tsn-tiny" in table and "tfvid clips/s" in table and "PyTorch clips/s" in table


def test_models_without_pytorch_rows_are_null():
    """A model torchvision lacks gets null PyTorch fields and a note, whatever is installed."""
    res = {"model": "tsn-tiny", "batch": 2, "clips_per_s": 10.0, "clips_per_s_median": 9.0,
           "loop_step": {"best_s": 0.2, "median_s": 0.22, "n": 3}, "params": 5,
           "forward": {"best_s": 0.05}, "forward_grad": {"best_s": 0.12},
           "step": {"best_s": 0.15}}
    row = bts._row(res, None, "no torchvision model: PyTorch not measured", None)
    assert row["pytorch_clips_per_s"] is None and row["ratio"] is None
    assert row["step_parts_s"] == pytest.approx({"forward": 0.05, "backward": 0.07,
                                                 "optimizer": 0.03, "loop_overhead": 0.05})
    result = {"models": {"stnet-resnet50": row}, "target": {"ratio": 1.0, "met": None},
              "settings": {"cores": 2, "cpu": "x", "timed_steps": 3, "warmup_steps": 1,
                           "onednn": "default", "intra_threads": 0, "inter_threads": 0},
              "load_average": {"before": [1, 1, 1], "after": [2, 2, 2]}, "notes": []}
    text = bts.format_table(result)
    assert "no torchvision model" in text and "stnet-resnet50" in text
    assert bts.format_table(result, markdown=True).startswith("| model |")


def test_worker_memory_budget_and_automatic_batch():
    """A worker process past its memory budget stops with OUT_OF_MEMORY; the automatic batch
    then goes down 32 -> 16 -> 8 before giving up (the model is never built: the budget is
    one byte)."""
    oom = bts._run_worker("tfvid", TINY, isolate=True, env=None, mem_limit=1)
    assert oom["out_of_memory"] and "exit status 75" in oom["error"], oom
    logged = []
    result = bts.run_train_step_benchmark(["tsn-tiny"], batch=0, warmup=1, steps=1,
                                          mem_gb=1e-9, log=logged.append)
    assert result["raw"]["tsn-tiny"]["batches_tried"] == [32, 16, 8]
    row = result["models"]["tsn-tiny"]
    assert row["tfvid_clips_per_s"] is None and row["pytorch_clips_per_s"] is None
    assert "exit status 75" in row["error"] and "tfvid not measured" in bts.format_table(result)


CHECK_PLAIN_RESNET50 = """
import importlib.util, torch
from torch import nn
from pipelines import bench_train_step as bts
plain = bts._plain_resnet50(torch, nn)
assert sum(p.numel() for p in plain.parameters()) == 25_557_032
assert plain.layer1[0].conv2.stride == (1, 1) and plain.layer2[0].conv2.stride == (2, 2)
assert plain.layer2[0].conv1.stride == (1, 1)
if importlib.util.find_spec("torchvision") is not None:
    import torchvision
    ref = torchvision.models.resnet50()
    assert [p.shape for p in plain.parameters()] == [p.shape for p in ref.parameters()]
plain.fc = nn.Identity()
assert plain(torch.zeros(1, 3, 64, 64)).shape == (1, 2048)
print("ok")
"""


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (pip install tfvid[bench])")
def test_plain_resnet50_matches_torchvision():
    """The fallback without torchvision has torchvision's resnet50 layout (v1.5: stride on the
    3x3 conv). In a separate process: torch beside TensorFlow in one process crashes."""
    proc = subprocess.run([sys.executable, "-c", CHECK_PLAIN_RESNET50], capture_output=True,
                          text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__))))
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_bad_flags():
    with pytest.raises(app.UsageError, match="unknown"):
        call("--bench=train-step", "--train_models=nope")
    with pytest.raises(app.UsageError, match="train_timed_steps"):
        call("--bench=train-step", "--train_models=tsn-tiny", "--train_timed_steps=0")
    with pytest.raises(ValueError, match="unknown train-step models"):
        bts.run_train_step_benchmark(["nope"])


def test_precision_rows_give_the_speedup_against_float32(tmp_path):
    """--precision=mixed_bfloat16: the tfvid step runs under that policy and float32 is timed
    in the same run; the row gives both rates and their ratio."""
    out = tmp_path / "train_step.json"
    call("--bench=train-step", "--train_models=tsn-tiny", "--train_batch=2",
         "--train_warmup_steps=1", "--train_timed_steps=2", "--notrain_isolate",
         "--notrain_pytorch", "--notrain_breakdown", "--precision=mixed_bfloat16",
         f"--json={out}")
    result = json.loads(out.read_text())
    row = result["models"]["tsn-tiny"]
    raw = result["raw"]["tsn-tiny"]
    assert raw["tfvid"]["precision"] == "mixed_bfloat16"
    assert raw["tfvid_float32"]["precision"] == "float32"
    assert row["precision"] == "mixed_bfloat16" and row["float32_clips_per_s"] > 0
    assert row["precision_speedup"] == pytest.approx(row["tfvid_clips_per_s"] /
                                                     row["float32_clips_per_s"])
    assert result["settings"]["precision"] == "mixed_bfloat16"
