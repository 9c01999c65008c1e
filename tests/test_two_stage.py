"""The two-stage path of DIN and VideoMap through the jobs, and their presets.

Stage 1 trains a tiny TSN on the synthetic set, extract_features caches its per-frame features,
stage 2 trains a DIN head and a VideoMap head (--backbone=none --feature=rgb) on them; both are
evaluated (VideoMap also draws attention.png) and their scores fused. Every job runs in this
process through its main() with its command-line flags, as `python -m pipelines.<job>` would.
"""
import glob
import json
import os

import numpy as np
import pytest
from absl import flags

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "pipelines", "configs")
PRESETS = ("din_ssv2", "din_jester", "videomap_hmdb51_rgb", "videomap_hmdb51_flow")


def run_job(name, **values):
    """pipelines.<name>.main with --k=v flags parsed as on the command line; its return value."""
    import importlib
    module = importlib.import_module(f"pipelines.{name}")
    FLAGS.unparse_flags()
    try:
        FLAGS([name, "--noprogress"] + [f"--{k}={v}" for k, v in values.items()])
        return module.main([name])
    finally:
        FLAGS.unparse_flags()


# ------------------------------------------------------------------------------ presets
@pytest.mark.parametrize("preset", PRESETS)
def test_presets_parse_with_the_train_flags(preset, tmp_path):
    from pipelines import train as job
    path = os.path.join(CONFIGS, preset + ".flags")
    FLAGS.unparse_flags()
    try:
        FLAGS(["train", f"--flagfile={path}", f"--model_dir={tmp_path}", "--train_data=x",
               "--val_data=y"])
        job.check_flags()                    # the train job's own validation of the values
        assert FLAGS.momentum == 0.9 and FLAGS.weight_decay == 5e-4
        if preset.startswith("din"):
            assert (FLAGS.model, FLAGS.backbone, FLAGS.num_segments) == ("din", "bninception", 8)
            assert (FLAGS.batch_size, FLAGS.lr, FLAGS.lr_schedule) == (32, 5e-4, "plateau")
        else:
            stream = preset.rsplit("_", 1)[1]
            assert (FLAGS.model, FLAGS.backbone, FLAGS.feature) == ("videomap", "none", stream)
            assert FLAGS.modality == stream and FLAGS.num_segments == 256
            assert (FLAGS.batch_size, FLAGS.lr, FLAGS.lr_schedule) == (128, 0.01, "step")
            assert [int(s) for s in FLAGS.lr_steps][0] == 10000 and FLAGS.epochs == 100
    finally:
        FLAGS.unparse_flags()


# ---------------------------------------------------------------------------- two stages
CLASSES = 3            # MoveLeft, MoveRight (a time-reversal pair), Still
STEPS = {"din": 60, "videomap": 120}      # head training steps (loss logged every 5)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """Synthetic videos -> prepare_data -> a tiny TSN -> extract_features of every frame."""
    from tfvid.prep.synthetic import make_synthetic_dataset
    root = tmp_path_factory.mktemp("two_stage")
    info = make_synthetic_dataset(str(root / "videos"), num_classes=CLASSES, videos_per_class=8,
                                  frame_size=(48, 36), num_frames=(20, 28))
    records = str(root / "records")
    run_job("prepare_data", format="ucf101", videos_dir=info["videos_dir"],
            index=info["splits_dir"], split="train1,test1", output_dir=records, num_shards=1,
            frame_size="48x36", workers=1)
    tsn = str(root / "tsn")
    run_job("train", model="tsn", backbone="tiny", width=0.25, input_size=32, num_segments=3,
            train_data=f"{records}/train1-*.tfrecord", batch_size=6, lr=0.01, steps=24,
            partial_bn=False, model_dir=tsn, log_every=8, checkpoint_every=1000)
    feats = str(root / "features")
    run_job("extract_features", data=records, output_dir=feats, model_dir=tsn)
    return {"root": root, "features": feats, "class_names": info["class_names"]}


def logged_losses(model_dir):
    """The 'loss' values of the train job's TensorBoard log, in step order."""
    import tensorflow as tf
    out = []
    for path in sorted(glob.glob(os.path.join(model_dir, "train", "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.tag == "loss":
                    out.append((event.step, float(tf.make_ndarray(v.tensor))))
    return [value for _, value in sorted(out)]


def train_head(stage1, model, steps, **extra):
    run_dir = str(stage1["root"] / model)
    feats = stage1["features"]
    run_job("train", model=model, backbone="none", feature="rgb",
            train_data=f"{feats}/train1-*.tfrecord", batch_size=6, steps=steps,
            model_dir=run_dir, log_every=5, checkpoint_every=1000, **extra)
    return run_dir


@pytest.fixture(scope="module")
def heads(stage1):
    runs = {"din": train_head(stage1, "din", STEPS["din"], num_segments=8, lr=0.001),
            "videomap": train_head(stage1, "videomap", STEPS["videomap"], num_segments=16,
                                   lr=0.01)}
    feats = stage1["features"]
    for run_dir in runs.values():
        run_job("evaluate", model_dir=run_dir, data=f"{feats}/test1-*.tfrecord",
                batch_size=2)
    return runs


def test_feature_heads_train_and_their_loss_falls(heads):
    for model, run_dir in heads.items():
        config = json.loads(open(os.path.join(run_dir, "run_config.json")).read())
        assert config["backbone"] == "none" and config["feature"] == "rgb"
        losses = logged_losses(run_dir)
        assert len(losses) == STEPS[model] // 5, (model, losses)
        assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), (model, losses)


def test_evaluate_and_fuse_the_two_heads(heads, stage1, tmp_path):
    summaries = {}
    for model, run_dir in heads.items():
        with open(os.path.join(run_dir, "eval", "metrics.json")) as f:
            summaries[model] = json.load(f)
        assert summaries[model]["num_videos"] == 2 * CLASSES          # 2 test videos per class
        assert summaries[model]["protocol"]["num_crops"] == 1         # cached features: 1 view
    assert summaries["videomap"]["protocol"]["sampler"]["num_frames"] == 16
    scores = ",".join(os.path.join(r, "eval", "scores.npz") for r in heads.values())
    run_job("fuse", scores=scores, output_dir=str(tmp_path / "fused"))
    fused = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    assert fused["num_videos"] == 2 * CLASSES
    assert fused["fusion"]["weights"] == [1.0, 1.0]
    assert set(fused["per_class_accuracy"]) == set(stage1["class_names"])


def test_videomap_evaluation_draws_its_attention(heads, stage1):
    png = os.path.join(heads["videomap"], "eval", "attention.png")
    assert os.path.isfile(png) and os.path.getsize(png) > 1000
    assert not os.path.exists(os.path.join(heads["din"], "eval", "attention.png"))
    from matplotlib.image import imread
    assert imread(png).shape[0] > 100


def test_din_checkpoints_hold_the_dense_image_convolutions(tmp_path):
    """tf.train checkpoints (train loop, resume, evaluate's restore) hold every DIN weight,
    including the per-width convolutions DenseImageConv keeps in a list."""
    import tensorflow as tf

    from tfvid.models import build_din
    from tfvid.train import run_dir
    model = build_din(3, feature_dim=16, num_frames=8)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if "conv_h" in name]
    assert len(saved) == 2 * 5                      # kernel and bias of widths 2..6
    other = build_din(3, feature_dim=16, num_frames=8)
    run_dir.restore(other, str(tmp_path), path)
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
