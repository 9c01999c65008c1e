"""Exports from training runs that read the model spec (tfvid.export.from_run): StNet's test
protocol (T = 25, one centre crop of the test view side) in the graph equals pipelines.evaluate,
and a head-only DIN on cached features exports a float32 "features" (B, T, D) signature."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvid import models

S, N, TRAIN_T, CLASSES = 32, 2, 3, 2


def records_of(path):
    return [r for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]


def video_id(raw):
    from tfvid.data import schema
    ctx = tf.train.SequenceExample.FromString(raw).context.feature
    return ctx[schema.ID].bytes_list.value[0].decode()


def _checkpoint(model, run, cfg):
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps(cfg))
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model, step=tf.Variable(1)),
                               str(run), max_to_keep=1).save()
    return str(run)


@pytest.fixture(scope="module")
def stnet_run(tmp_path_factory, tiny_records):
    """A tiny StNet run (trained side 32, T = 3 super-images of 2 frames) on tiny_records (48 x
    36 frames: the export's graph takes that stored size from them), weights random."""
    from tfvid.data.sampling import StNetSampler
    cfg = {"model": "stnet", "num_classes": CLASSES, "backbone": "tiny", "width": 0.25,
           "input_size": S, "modality": "rgb", "num_segments": TRAIN_T,
           "frames_per_segment": N, "temporal_block": "official",
           "train_files": list(tiny_records),
           "sampler": StNetSampler(num_segments=TRAIN_T, frames_per_segment=N).config()}
    keras.utils.set_random_seed(3)
    model = models.build("stnet", CLASSES, backbone="tiny", width=0.25, input_size=S,
                         num_segments=TRAIN_T, frames_per_segment=N, temporal_block="official")
    return _checkpoint(model, tmp_path_factory.mktemp("stnet") / "run", cfg)


def test_stnet_test_view_side_from_the_spec():
    spec = models.get_spec("stnet")
    assert spec.test_input_size_of({"input_size": 224}) == 256     # the paper's 256 view
    assert spec.test_input_size_of({"input_size": S}) == 36        # S * 256 // 224
    assert spec.test_input_size_of({"input_size": 224}, 224) == 224
    assert models.get_spec("tsn").test_input_size_of({"input_size": S}) == S


def test_stnet_sequence_example_equals_evaluate(stnet_run, tiny_records, tmp_path):
    """StNet's default protocol (25 super-images with the short-video rule, one centre crop at
    the test side 36 for a run trained at 32, the weights loaded into the model rebuilt at 36):
    a prepared record scored through the export's sequence_example = pipelines.evaluate."""
    from pipelines.evaluate import evaluate_model_dir
    from tfvid.eval.metrics import load_scores
    from tfvid.export import read_sidecar
    from tfvid.export.from_run import export_run

    out = tmp_path / "eval"
    summary = evaluate_model_dir(stnet_run, tiny_records[0], output_dir=str(out),
                                 progress=False)
    proto = summary["protocol"]
    assert proto["test_input_size"] == 36 and proto["num_crops"] == 1
    assert proto["sampler"]["test_segments"] == 25
    assert json.loads((out / "metrics.json").read_text())["protocol"]["test_input_size"] == 36
    path = export_run(stnet_run, export_base=str(tmp_path / "sm"), warmup=False)
    side = read_sidecar(path)
    assert side["input_shape"] == [None, TRAIN_T, S, S, 3 * N]      # clip: the trained side
    served = side["serving"]["inputs"]["rgb"]
    assert served["input_size"] == 36 and side["serving"]["num_crops"] == 1
    assert served["sampling"]["test_segments"] == 25
    scores = load_scores(str(out / "scores.npz"))
    raw = records_of(tiny_records[0])
    logits = tf.saved_model.load(path).signatures["sequence_example"](
        examples=tf.constant(raw))["logits"].numpy()
    order = [[video_id(r) for r in raw].index(i) for i in scores.ids.tolist()]
    assert np.abs(scores.logits).max() > 1e-4
    np.testing.assert_allclose(logits[order], scores.logits, atol=1e-4)


def test_export_protocol_defaults_come_from_the_spec(stnet_run, tmp_path):
    from tfvid.export.from_run import default_protocol
    from tfvid.train import run_dir
    cfg = run_dir.read_run_config(stnet_run)
    proto = default_protocol(cfg)
    assert (proto.num_crops, proto.input_size) == (1, 36)
    assert proto.sampler.min_segments == TRAIN_T                   # the short-video rule
    assert default_protocol(cfg, input_size=S).input_size == S     # --input_size overrides
    tsn = {"model": "tsn", "num_classes": 3, "backbone": "tiny", "input_size": S,
           "num_segments": 3}
    proto = default_protocol(tsn)
    assert (proto.num_crops, proto.input_size, proto.sampler.test_segments) == (10, S, 25)


# ------------------------------------------------------------------ head on cached features
def test_feature_run_exports_a_features_signature(tmp_path):
    """DIN trained with --backbone=none --feature=rgb: the export takes float32 features
    (B, T, D) and returns what a clip export returns; a fresh load equals the Keras model."""
    from tfvid.export import load_export, read_sidecar
    from pipelines import export as job

    t, d = 6, 16
    cfg = {"model": "din", "num_classes": 3, "backbone": "none", "feature": "rgb",
           "feature_dim": d, "num_segments": t, "modality": "rgb",
           "class_names": ["a", "b", "c"]}
    keras.utils.set_random_seed(4)
    model = models.build("din", 3, backbone=None, feature_dim=d, num_frames=t)
    run = _checkpoint(model, tmp_path / "din", cfg)
    path = job.export(run, export_base=str(tmp_path / "sm"), name="din")
    loaded = tf.saved_model.load(path)
    assert {"features", "serving_default"} <= set(loaded.signatures)
    x = np.random.default_rng(0).normal(size=(2, t, d)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    for name in ("features", "serving_default"):
        sig = loaded.signatures[name]
        spec = sig.structured_input_signature[1]["features"]
        assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, t, d]
        out = sig(features=tf.constant(x))
        assert set(out) == {"logits", "probabilities", "top_k_indices", "top_k_classes"}
        np.testing.assert_allclose(out["logits"].numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, rtol=1e-5)
        assert out["top_k_classes"].numpy()[0, 0].decode() == "abc"[expected[0].argmax()]
    side = read_sidecar(path)
    assert side["features"] == {"name": "rgb", "dimension": d}
    assert "preprocessing" not in side and side["input_shape"] == [None, t, d]
    assert side["sampling"]["name"] == "uniform"
    serving, _ = load_export(path)                      # the float32 signature by default
    np.testing.assert_allclose(serving(x)["logits"].numpy(), expected, atol=1e-5)
    assert "input  features: float32 [None, 6, 16]" in job.describe(path)
    # and TFLite, as any export: (1, T, D) in, checked against the SavedModel
    from tfvid.export import tflite_report
    report = tflite_report.convert(path, output=str(tmp_path / "din.tflite"),
                                   parity_samples=1, latency_threads=())
    assert report["input_shape"] == [1, t, d] and report["parity"]["max_abs_diff"] < 1e-4


def test_normalization_backbone_from_the_spec():
    tsn = models.get_spec("tsn")
    assert tsn.normalization_backbone({"backbone": "tiny"}) == "tiny"
    assert tsn.normalization_backbone({}) == "resnet50"               # FALLBACK_BACKBONE
    din = models.get_spec("din")
    assert din.normalization_backbone({"backbone": "none"}) is None   # cached features
    assert din.normalization_backbone({"backbone": "tiny"}) == "tiny"
