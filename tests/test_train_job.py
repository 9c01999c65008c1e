"""pipelines.train: flag validation, presets, and a tiny end-to-end run on raw-frame data."""
import json
import os

import numpy as np
import pytest
from absl import app, flags

from pipelines import train as job

FLAGS = flags.FLAGS
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "pipelines", "configs")


def parse(*args):
    FLAGS.unparse_flags()
    FLAGS(["train", *args])


def call(*args):
    parse(*args)
    return job.main(["train"])


@pytest.fixture(autouse=True)
def _reset_flags():
    yield
    FLAGS.unparse_flags()


@pytest.fixture
def frames(tmp_path):
    """A raw-frames dataset: 6 videos of 8 tiny JPEG frames, 3 classes, classes.txt."""
    import tensorflow as tf
    rng = np.random.default_rng(0)
    rows = []
    for v in range(6):
        folder = tmp_path / "frames" / f"v{v}"
        folder.mkdir(parents=True)
        for t in range(8):
            img = rng.integers(0, 255, (36, 44, 3), dtype=np.uint8)
            (folder / f"img_{t + 1:05d}.jpg").write_bytes(tf.io.encode_jpeg(img).numpy())
        rows.append(f"frames/v{v} 8 {v % 3}\n")
    (tmp_path / "train.list").write_text("".join(rows))
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    return tmp_path


@pytest.mark.parametrize("flag,value", [("model", "nope"), ("backbone", "vgg99"),
                                        ("modality", "depth")])
def test_unknown_names_name_the_flag_before_any_work(tmp_path, flag, value):
    out = tmp_path / "out"
    with pytest.raises(app.UsageError, match=f"--{flag}="):
        call(f"--{flag}={value}", "--train_data=x", f"--model_dir={out}", "--steps=1")
    assert not out.exists()


@pytest.mark.parametrize("args,pattern", [
    ((), "exactly one of --steps and --epochs"),
    (("--steps=5", "--epochs=2"), "exactly one of --steps and --epochs"),
    (("--steps=5", "--lr_steps=30,10"), "--lr_steps must be positive and increasing"),
    (("--steps=5", "--lr_schedule=plateau"), "plateau needs --val_data"),
    (("--steps=5", "--batch_size=0"), "--batch_size must be positive"),
    (("--steps=5", "--train_data=/no/such/*.tfrecord"), "--train_data"),
])
def test_flag_errors(tmp_path, args, pattern):
    with pytest.raises(app.UsageError, match=pattern):
        call(f"--model_dir={tmp_path / 'out'}", "--train_data=x", *args)  # later flags win


def test_num_classes_checks(frames):
    common = (f"--train_data={frames / 'train.list'}", f"--model_dir={frames / 'out'}",
              "--steps=1")
    with pytest.raises(app.UsageError, match="classes.txt beside the training data lists 3"):
        call(*common, "--num_classes=5")
    (frames / "classes.txt").write_text("a\nb\n")
    with pytest.raises(app.UsageError, match=r"labels \[2\] outside \[0, 2\)"):
        call(*common)
    os.remove(frames / "classes.txt")
    with pytest.raises(app.UsageError, match="--num_classes=0 needs classes.txt"):
        call(*common)


def test_presets_hold_the_paper_solver():
    parse(f"--flagfile={os.path.join(CONFIGS, 'tsn_rgb_ucf101.flags')}")
    assert (FLAGS.lr, FLAGS.lr_steps, FLAGS.steps, FLAGS.batch_size) == (0.001, ["1500", "3000"],
                                                                        3500, 256)
    assert (FLAGS.momentum, FLAGS.weight_decay, FLAGS.clip_norm, FLAGS.dropout) == (0.9, 5e-4,
                                                                                  40, 0.8)
    assert (FLAGS.backbone, FLAGS.num_segments, FLAGS.modality) == ("bninception", 3, "rgb")
    parse(f"--flagfile={os.path.join(CONFIGS, 'tsn_flow_ucf101.flags')}")
    assert (FLAGS.lr, FLAGS.lr_steps, FLAGS.steps) == (0.005, ["12000", "18000"], 20000)
    assert (FLAGS.new_length, FLAGS.dropout, FLAGS.modality) == (5, 0.7, "flow")
    parse(f"--flagfile={os.path.join(CONFIGS, 'tsn_rgbdiff_ucf101.flags')}")
    assert (FLAGS.modality, FLAGS.new_length, FLAGS.num_segments) == ("rgbdiff", 6, 7)


def test_count_videos(tmp_path, frames):
    assert job.count_videos([str(frames / "train.list")]) == 6
    shards = [str(tmp_path / f"train-0000{i}-of-00002.tfrecord") for i in range(2)]
    (tmp_path / "train-summary.json").write_text(json.dumps(
        {"videos": 17, "files": {"shards": shards}}))
    assert job.count_videos(shards) == 17


def test_end_to_end_tiny_run_and_model_mismatch(frames):
    pytest.importorskip("tfvid.data.pipeline")
    pytest.importorskip("tfvid.models.tsn")
    out = frames / "out"
    common = (f"--train_data={frames / 'train.list'}", f"--val_data={frames / 'train.list'}",
              f"--model_dir={out}", "--backbone=tiny", "--width=0.25", "--input_size=32",
              "--num_segments=2", "--batch_size=2", "--log_every=1", "--nopartial_bn",
              "--noprogress")
    metrics = call(*common, "--epochs=1")   # 6 videos / batch 2 = 3 steps
    assert metrics["final_step"] == 3 and 0 <= metrics["val_accuracy"] <= 1
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["num_classes"] == 3 and cfg["class_names"] == ["a", "b", "c"]
    assert cfg["sampler"]["name"] == "tsn" and cfg["steps"] == 3 and cfg["backbone"] == "tiny"
    assert json.loads((out / "metrics.json").read_text())["final_step"] == 3
    with pytest.raises(app.UsageError, match="different model .*num_segments: 2 -> 3"):
        call(*[a.replace("--num_segments=2", "--num_segments=3") for a in common], "--steps=4")
    again = call(*common, "--steps=4")      # resumes at 3
    assert again["resumed_from_step"] == 3 and again["final_step"] == 4


def test_num_segments_defaults_to_the_models_paper_value_and_kernels_are_recorded(frames):
    assert (job.paper_num_segments("tsn"), job.paper_num_segments("stnet")) == (3, 7)
    assert job.paper_num_segments("dynamic_image") is None
    out = frames / "stnet"
    metrics = call(f"--train_data={frames / 'train.list'}", f"--model_dir={out}",
                   "--model=stnet", "--backbone=tiny", "--width=0.25", "--input_size=32",
                   "--batch_size=2", "--steps=1", "--noprogress", "--nopartial_bn")
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["num_segments"] == 7                              # not TSN's 3
    assert cfg["augmentation"] == "random_crop_flip"             # StNet's official reader
    assert (cfg["sampler"]["name"], cfg["sampler"]["num_segments"],
            cfg["sampler"]["frames_per_segment"]) == ("stnet", 7, 5)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["input_kernels"] == metrics["input_kernels"] and saved["input_kernels"]
    assert saved["bad_videos"] == [] and saved["num_bad_videos"] == 0


def test_model_flags_and_paper_time_come_from_the_specs():
    """The model-specific flags are defined from the model specs, presets keep working."""
    from tfvid.models.spec import model_flags
    assert {"consensus", "frames_per_segment", "temporal_block", "stream", "sdi_frames",
            "pooling", "pool_before"} <= set(model_flags())
    assert (job.paper_num_segments("din"), job.paper_num_segments("videomap")) == (8, 256)
    parse(f"--flagfile={os.path.join(CONFIGS, 'stnet_kinetics400.flags')}")
    assert (FLAGS.frames_per_segment, FLAGS.temporal_block) == (5, "official")


def test_features_input_needs_a_feature_name(tmp_path):
    with pytest.raises(app.UsageError, match="--feature="):
        call("--model=din", "--backbone=none", "--train_data=x",
             f"--model_dir={tmp_path / 'out'}", "--steps=1")


def test_augmentation_and_data_service_reach_build_dataset():
    """--augmentation (default: the spec's) and --data_service go to the training input only."""
    from tfvid.train.launch import input_options
    cfg = {"model": "tsn", "modality": "rgb", "backbone": "tiny",
           "augmentation": "random_crop_flip", "data_service": "grpc://localhost:5050"}
    assert input_options(cfg) == {"modality": "rgb", "backbone": "tiny",
                                  "augmentation": "random_crop_flip",
                                  "data_service": "grpc://localhost:5050"}
    assert input_options({**cfg, "data_service": None})["augmentation"] == "random_crop_flip"
    parse("--augmentation=multiscale_crop_flip", "--model=stnet")
    assert FLAGS.augmentation == "multiscale_crop_flip"
    from tfvid.train.config import ConfigError, check_values
    values = {name: FLAGS[name].value for name in job.job_flags()}
    with pytest.raises(ConfigError, match="--data_service='nohost'"):
        check_values({**values, "model_dir": "x", "steps": 1, "data_service": "nohost"},
                     job.job_flags(), modality_given=False)
