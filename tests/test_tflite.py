"""tfvid.export.tflite and pipelines.convert_tflite: builtin-ops conversion and parity."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvid.export import export_saved_model
from tfvid.export import tflite
from tfvid.export.tflite import (ParityError, TFLiteConversionError, TFLiteModel, check_parity,
                                 convert_to_tflite, tflite_ops)

SIZE, T, N, CLASSES = 32, 3, 2, 5


def tiny_stnet(num_segments=T):
    from tfvid.models.stnet import build_stnet
    keras.utils.set_random_seed(0)
    return build_stnet(CLASSES, backbone="tiny", width=0.5, num_segments=num_segments,
                       frames_per_segment=N, input_size=SIZE, txb_width=16)


@pytest.fixture(scope="module")
def stnet_export(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("saved_models"))
    model = tiny_stnet(num_segments=None)
    path = export_saved_model(model, base, "stnet", clip_shape=(None, SIZE, SIZE, 3 * N),
                              sidecar={"class_names": list("abcde"),
                                       "sampling": {"name": "stnet", "num_segments": T,
                                                    "frames_per_segment": N,
                                                    "test_segments": 4}},
                              warmup=False)
    return model, path


def test_stnet_converts_with_builtin_ops_and_matches(stnet_export, tmp_path):
    model, path = stnet_export
    out = convert_to_tflite(path, str(tmp_path / "stnet.tflite"), time_steps=T)
    ops = tflite_ops(out)
    assert "CONV_3D" in ops and "DEPTHWISE_CONV_2D" in ops and "CONV_2D" in ops
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    diff = check_parity(path, out, num_samples=2, atol=1e-4)
    assert 0 <= diff < 1e-4
    lite = TFLiteModel(out)
    assert lite.input_shape == (1, T, SIZE, SIZE, 3 * N)
    signatures = lite.interpreter.get_signature_list()
    assert sorted(signatures["serving_default"]["outputs"]) == ["logits", "probabilities"]
    x = np.random.default_rng(3).normal(size=lite.input_shape).astype("float32")
    got = lite(x)
    np.testing.assert_allclose(got["logits"], model(x, training=False).numpy(), atol=1e-4)
    np.testing.assert_allclose(got["probabilities"].sum(), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="takes clips of shape"):
        lite(x[:, :2])


def test_variable_time_needs_time_steps(stnet_export, tmp_path):
    _, path = stnet_export
    with pytest.raises(ValueError, match="time_steps"):
        convert_to_tflite(path, str(tmp_path / "x.tflite"))
    assert tflite.fixed_input_shape([None, 7, 8, 8, 3]) == [1, 7, 8, 8, 3]
    assert tflite.fixed_input_shape([None, None, 8, 8, 3], batch_size=2,
                                    time_steps=25) == [2, 25, 8, 8, 3]
    with pytest.raises(ValueError, match="fixes T=7"):
        tflite.fixed_input_shape([None, 7, 8, 8, 3], time_steps=25)


def test_tiny_tsn_converts(tmp_path):
    from tfvid import models
    keras.utils.set_random_seed(0)
    model = models.build("tsn", CLASSES, backbone="tiny", input_size=SIZE, num_segments=3)
    path = export_saved_model(model, str(tmp_path / "sm"), "tsn", clip_shape=(3, SIZE, SIZE, 3),
                              sidecar={}, warmup=False)
    out = convert_to_tflite(path, str(tmp_path / "tsn.tflite"))
    assert check_parity(path, out, num_samples=1) < 1e-4
    assert TFLiteModel(out).input_shape == (1, 3, SIZE, SIZE, 3)


@keras.saving.register_keras_serializable(package="tfvid_test")
class MatrixInverse(keras.layers.Layer):
    """tf.linalg.inv has no TFLite builtin kernel (it needs Select TF ops)."""

    def call(self, x):
        m = tf.reshape(x, (-1, 2, 2)) + 3.0 * tf.eye(2)
        return tf.reshape(tf.linalg.inv(m), (-1, 4))


def test_non_builtin_op_fails_loudly(tmp_path):
    inputs = keras.Input((2, 8, 8, 3))
    x = keras.layers.GlobalAveragePooling3D()(inputs)
    x = MatrixInverse()(keras.layers.Dense(4)(x))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(x))
    path = export_saved_model(model, str(tmp_path / "sm"), "inv", clip_shape=(2, 8, 8, 3),
                              sidecar={}, warmup=False)
    target = tmp_path / "inv.tflite"
    with pytest.raises(TFLiteConversionError,
                       match=r"builtin.*needs non-builtin ops \(TF Select ops: MatrixInverse\)"):
        convert_to_tflite(path, str(target))
    assert not target.exists()


def test_parity_failure_is_reported(stnet_export, tmp_path):
    _, path = stnet_export
    out = convert_to_tflite(path, str(tmp_path / "q.tflite"), time_steps=T,
                            optimizations=["default"])           # int8 weights: not exact
    with pytest.raises(ParityError, match="atol"):
        check_parity(path, out, atol=1e-9)
    with pytest.raises(ValueError, match="unknown optimization"):
        convert_to_tflite(path, str(tmp_path / "z.tflite"), time_steps=T, optimizations=["int4"])


def test_job_converts_beside_the_version(stnet_export, capsys):
    from absl import flags
    from absl.testing import flagsaver
    from pipelines import convert_tflite as job

    _, path = stnet_export
    model_dir = os.path.dirname(path)
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(export_dir=model_dir, output=None, time_steps=None, optimize="none",
                             quantize="none", uint8_input=False, eval_data=None,
                             latency_runs=2, parity_samples=1, atol=1e-4):
        job.main(["convert_tflite"])
    out = capsys.readouterr().out
    target = os.path.join(model_dir, "1.tflite")
    assert os.path.isfile(target) and f"wrote {os.path.abspath(target)}" in out
    assert "parity: max |tflite - SavedModel|" in out and "CONV_3D" in out
    report = json.loads(open(target + ".json").read())
    assert report["input_shape"] == [1, 4, SIZE, SIZE, 3 * N]     # sidecar test_segments
    assert report["class_names"] == list("abcde")
    assert report["parity"]["max_abs_diff"] < 1e-4
    assert report["quantize"] == "none" and report["input_dtype"] == "float32"
    assert report["parity"]["top1_agreement"] == 1.0 and report["parity"]["clips"] == 1
    assert set(report["latency_ms"]) == {"1_threads_ms", "2_threads_ms"}
    assert "top-1 agreement 100.0%" in out and "latency per clip" in out
    assert job.default_output(path, "int8", True) == target[:-len(".tflite")] + \
        "-int8-uint8.tflite"
    assert job.default_output(path, "float16") == target[:-len(".tflite")] + "-float16.tflite"
    with pytest.raises(SystemExit, match="convert_tflite failed"):
        with flagsaver.flagsaver(export_dir=os.path.join(model_dir, "missing")):
            job.main(["convert_tflite"])
