"""tfvid.train.run_dir: rebuilding a trained network, its sampler and its class names from a
training directory (run_config.json + checkpoints)."""
import json

import numpy as np
import pytest
import tensorflow as tf

from tfvid.train import run_dir

TSN = {"model": "tsn", "num_classes": 3, "backbone": "tiny", "width": 0.25, "input_size": 32,
       "num_segments": 3, "modality": "rgb", "consensus": "avg", "partial_bn": True}


def test_read_run_config_errors_name_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        run_dir.read_run_config(str(tmp_path))
    (tmp_path / run_dir.RUN_CONFIG).write_text(json.dumps({"model": "tsn"}))
    with pytest.raises(ValueError, match="num_classes"):
        run_dir.read_run_config(str(tmp_path))


def test_builder_kwargs_time_length():
    assert run_dir.builder_kwargs(TSN)["num_segments"] == 3
    assert run_dir.builder_kwargs(TSN, num_segments=None)["num_segments"] is None
    assert run_dir.builder_kwargs(TSN, num_segments=25, input_size=48)["num_segments"] == 25
    assert run_dir.builder_kwargs(TSN, input_size=48)["input_size"] == 48
    with pytest.raises(ValueError, match="not a known model"):
        run_dir.builder_kwargs({**TSN, "model": "nope"})


def test_sampler_from_config_train_and_test():
    train = run_dir.sampler_from_config(TSN, "train")
    assert (train.name, train.num_segments, train.new_length) == ("tsn", 3, 1)
    test = run_dir.sampler_from_config(TSN, "test")
    assert test.test_segments == run_dir.TEST_SEGMENTS == 25
    assert run_dir.sampler_from_config(TSN, "test", 7).test_segments == 7
    flow = run_dir.sampler_from_config({**TSN, "modality": "flow"}, "train")
    assert flow.new_length == 5                                   # TSN flow stacks L=5
    with pytest.raises(ValueError, match="weighted"):
        run_dir.sampler_from_config({**TSN, "consensus": "weighted"}, "test", 25)


def test_checkpoint_round_trip_with_variable_time(tmp_path):
    model = run_dir.build_model(TSN)
    ckpt = tf.train.Checkpoint(model=model)
    tf.train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=1).save()
    clip = np.random.default_rng(0).normal(size=(2, 3, 32, 32, 3)).astype(np.float32)
    rebuilt = run_dir.build_model(TSN, num_segments=None)        # 25 test snippets later
    assert run_dir.restore(rebuilt, str(tmp_path)).startswith(str(tmp_path))
    np.testing.assert_allclose(rebuilt(clip, training=False), model(clip, training=False),
                               atol=1e-5)
    other = run_dir.build_model({**TSN, "num_classes": 4})
    with pytest.raises(ValueError, match="does not match"):
        run_dir.restore(other, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run_dir.latest_checkpoint(str(tmp_path / "empty"))


def test_class_names_precedence(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    assert run_dir.class_names(TSN, str(tmp_path)) == ["a", "b", "c"]
    named = {**TSN, "class_names": ["x", "y", "z"]}
    assert run_dir.class_names(named, str(tmp_path)) == ["x", "y", "z"]
    assert run_dir.class_names(TSN, str(tmp_path / "none")) == ["class_0", "class_1", "class_2"]
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="2 classes"):
        run_dir.class_names(TSN, str(tmp_path), classes_file=str(tmp_path / "two.txt"))


def test_the_spec_decides_keywords_sampler_and_test_protocol():
    din = {"model": "din", "num_classes": 3, "backbone": "tiny", "num_segments": 12,
           "consensus": "avg", "modality": "rgb"}
    assert run_dir.builder_kwargs(din)["num_frames"] == 12         # T goes to num_frames
    assert "consensus" not in run_dir.builder_kwargs(din)          # not a DIN keyword
    uniform = run_dir.sampler_from_config(din, "train")
    assert (uniform.name, uniform.num_frames) == ("uniform", 12)
    stnet = {"model": "stnet", "num_classes": 3, "num_segments": 7}
    assert run_dir.sampler_from_config(stnet, "test").test_segments == 25
    assert run_dir.model_spec(stnet).test_protocol(stnet) == (25, 1)
