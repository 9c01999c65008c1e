"""Resuming a training run (issue "Trust the default path", items 3-5): the train job killed
with kill -9 and rerun ends with exactly the weights of an uninterrupted run, in both storage
layouts; a finished run reruns as a no-op; one training run per model_dir at a time.

Every run is a real `python -m pipelines.train` process on a few hundred tiny videos.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tfvid.data import schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES, PER_CLASS, FRAMES = 10, 20, 5       # 200 videos


def _jpeg(rng):
    return tf.io.encode_jpeg(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).numpy()


def write_dataset(root, layout):
    """200 labelled videos of 5 random 16x16 frames: 4 TFRecord shards or a .list file
    (prepare_data's layout: <root>/train.list, frames/train/<id>), and classes.txt."""
    rng = np.random.default_rng(0)
    videos = [(c, k) for c in range(CLASSES) for k in range(PER_CLASS)]
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.writelines(f"class{c}\n" for c in range(CLASSES))
    if layout == "tfrecord":
        paths = [os.path.join(root, f"train-{s:05d}-of-00004.tfrecord") for s in range(4)]
        writers = [tf.io.TFRecordWriter(p) for p in paths]
        for i, (c, k) in enumerate(videos):
            frames = [_jpeg(rng) for _ in range(FRAMES)]
            writers[i * 4 // len(videos)].write(schema.make_example(
                f"class{c}/v{k}", frames, height=16, width=16, frame_rate=25,
                label_index=c).SerializeToString())
        for w in writers:
            w.close()
        return ",".join(paths)
    lines = []
    for c, k in videos:
        folder = os.path.join(root, "frames", "train", f"class{c}", f"v{k}")
        os.makedirs(folder)
        for t in range(1, FRAMES + 1):
            with open(os.path.join(folder, f"img_{t:05d}.jpg"), "wb") as f:
                f.write(_jpeg(rng))
        lines.append(f"frames/train/class{c}/v{k} {FRAMES} {c}\n")
    with open(os.path.join(root, "train.list"), "w") as f:
        f.writelines(lines)
    return os.path.join(root, "train.list")


def env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def job_args(data, model_dir, steps=40, extra=()):
    return [sys.executable, "-m", "pipelines.train", f"--train_data={data}",
            f"--model_dir={model_dir}", "--backbone=tiny", "--width=0.25", "--input_size=32",
            "--num_segments=2", "--batch_size=8", f"--steps={steps}", "--checkpoint_every=5",
            "--log_every=5", "--dropout=0.5", "--nopartial_bn", "--lr=0.01", "--noprogress",
            "--seed=3", *extra]


def run_job(data, model_dir, **kw):
    proc = subprocess.run(job_args(data, model_dir, **kw), env=env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    return proc


def latest_step(model_dir):
    ckpt = tf.train.latest_checkpoint(str(model_dir))
    return int(ckpt.rsplit("-", 1)[1]) if ckpt else 0


def start_and_kill(data, model_dir, at_least=10, **kw):
    """Starts the job and kill -9s it once a checkpoint of step >= at_least exists."""
    proc = subprocess.Popen(job_args(data, model_dir, **kw), env=env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if latest_step(model_dir) >= at_least:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc


def final_weights(model_dir):
    import h5py
    out = []
    with h5py.File(os.path.join(model_dir, "final.weights.h5"), "r") as f:
        f.visititems(lambda name, obj: out.append((name, obj[()]))
                     if isinstance(obj, h5py.Dataset) else None)
    return out


# 4 train-job processes (about 40-100 s on 2 cores): in the default run on purpose (issue 9)
@pytest.mark.parametrize("layout", ["tfrecord", "list"])
def test_kill_9_and_resume_equals_uninterrupted_run(tmp_path, layout):
    data = write_dataset(str(tmp_path / "data"), layout)
    full = run_job(data, str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]

    cut = str(tmp_path / "cut")
    killed = start_and_kill(data, cut)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    step = latest_step(cut)
    assert 10 <= step < 40 and not os.path.exists(os.path.join(cut, "final.weights.h5"))
    resumed = run_job(data, cut)                              # the TFRecord resume used to fail
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads(open(os.path.join(cut, "metrics.json")).read())
    assert metrics["resumed_from_step"] == step and metrics["final_step"] == 40

    reference = final_weights(str(tmp_path / "full"))
    diffs = {name: float(np.max(np.abs(a - b))) if a.size else 0.0
             for (name, a), (_, b) in zip(reference, final_weights(cut))}
    assert max(diffs.values()) == 0.0, diffs

    # a finished run reruns as a no-op that keeps its numbers (and resumes TFRecords fine)
    before = open(os.path.join(cut, "metrics.json")).read()
    rerun = run_job(data, cut)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads(open(os.path.join(cut, "metrics.json")).read()) == json.loads(before)


# 3 train-job processes; in the default run on purpose
def test_two_runs_in_one_model_dir_and_stale_lock(tmp_path):
    data = write_dataset(str(tmp_path / "data"), "list")
    model_dir = str(tmp_path / "run")
    first = subprocess.Popen(job_args(data, model_dir, steps=400), env=env(), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while latest_step(model_dir) < 5 and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()[-3000:]
        second = run_job(data, model_dir, steps=400)
        assert second.returncode != 0
        assert "in use by another training run" in second.stderr
        assert f"pid {first.pid}" in second.stderr            # names the holder
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    # the dead holder's lock is taken over: the next run resumes and finishes
    step = latest_step(model_dir)
    third = run_job(data, model_dir, steps=step + 5)
    assert third.returncode == 0, third.stderr[-3000:]
    metrics = json.loads(open(os.path.join(model_dir, "metrics.json")).read())
    assert metrics["resumed_from_step"] == step and metrics["final_step"] == step + 5
