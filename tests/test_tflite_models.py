"""TFLite for every model family (builtin ops, parity with the SavedModel), quantized variants
(pipelines.convert_tflite --quantize) and the uint8-input variant, at tiny sizes.

Full-size backbones: the @pytest.mark.slow test at the end.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from tfvid import models
from tfvid.export import export_saved_model
from tfvid.export import tflite
from tfvid.export.tflite import TFLiteModel, check_parity, compare, convert_to_tflite, tflite_ops

S, CLASSES = 32, 4


def nonbuiltin(ops):
    return [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]


def spread_fc(model, seed=0, std=0.5):
    """Classifier weights large enough that the top-1 is not a near tie (random models)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name == "fc" or layer.name.startswith("fc_h"):
            layer.set_weights([rng.normal(0, std, w.shape).astype("float32")
                               for w in layer.get_weights()])
    return model


def convert_and_check(path, out, atol=1e-4, **kw):
    out = convert_to_tflite(path, str(out), **kw)
    ops = tflite_ops(out)
    assert not nonbuiltin(ops), ops
    diff = check_parity(path, out, num_samples=1, atol=atol)
    stats = compare(path, out, num_random=2)
    assert stats["top1_agreement"] == 1.0, stats
    return out, ops, diff


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return str(tmp_path_factory.mktemp("saved_models"))


# --------------------------------------------------------------------------------- TSN
TSN_CASES = {   # name: (backbone, width, modality, channels)
    "tiny_rgb": ("tiny", 0.5, "rgb", 3),
    "tiny_flow": ("tiny", 0.5, "flow", 10),
    "tiny_rgbdiff": ("tiny", 0.5, "rgbdiff", 15),
    "bninception_rgb": ("bninception", 0.125, "rgb", 3),
    "resnet50_flow": ("resnet50", 0.125, "flow", 10),
}


@pytest.mark.parametrize("case", sorted(TSN_CASES))
def test_tsn_converts(case, base, tmp_path):
    backbone, width, modality, channels = TSN_CASES[case]
    keras.utils.set_random_seed(0)
    model = spread_fc(models.build("tsn", CLASSES, backbone=backbone, width=width,
                                   modality=modality, input_size=S, num_segments=2))
    path = export_saved_model(model, base, f"tsn_{case}", clip_shape=(2, S, S, channels),
                              sidecar={}, warmup=False)
    out, ops, diff = convert_and_check(path, tmp_path / "m.tflite")
    assert "CONV_2D" in ops and diff < 1e-4
    assert TFLiteModel(out).input_shape == (1, 2, S, S, channels)


# ---------------------------------------------------------------- dynamic image networks
W, L = 2, 4
STREAM_CASES = {"si": {}, "di": {}, "of": {}, "dof": {},
                "dof_map": {"pool_before": "res3"}}      # dynamic maps (the paper's best)


def stream_net(stream, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    return spread_fc(models.build("dynamic_image", CLASSES, stream=stream.split("_")[0],
                                  backbone="tiny", width=0.5, input_size=S, num_windows=W,
                                  window=L, **kw), seed)


@pytest.mark.parametrize("case", sorted(STREAM_CASES))
def test_dynamic_image_streams_convert(case, base, tmp_path):
    from tfvid.models.dynamic_image import input_channels

    model = stream_net(case, **STREAM_CASES[case])
    c = input_channels(case.split("_")[0], L)
    path = export_saved_model(model, base, f"di_{case}", clip_shape=(W, S, S, c), sidecar={},
                              warmup=False)
    out, ops, _ = convert_and_check(path, tmp_path / "m.tflite")
    if case in ("di", "dof", "dof_map"):
        assert "SUM" in ops or "MUL" in ops                     # approximate rank pooling
    x = np.random.default_rng(1).normal(size=(1, W, S, S, c)).astype("float32")
    np.testing.assert_allclose(TFLiteModel(out)(x)["logits"], model(x, training=False).numpy(),
                               atol=1e-4)


def test_four_stream_converts_with_two_inputs(base, tmp_path):
    from tfvid.export.four_stream import export_four_stream
    from tfvid.models.four_stream import build_four_stream_model

    nets = {s: stream_net(s, i) for i, s in enumerate(("si", "di", "of", "dof"))}
    model = build_four_stream_model(nets, {"si": 1, "di": 2, "of": 1, "dof": 0.5})
    path = export_four_stream(model, base, "four_stream", sidecar={}, warmup=False)
    out, ops, diff = convert_and_check(path, tmp_path / "four.tflite")
    lite = TFLiteModel(out)
    assert sorted(lite.input_names) == ["flow", "rgb"]
    assert lite.input_shapes == {"rgb": (1, W, S, S, 3 * L), "flow": (1, W, S, S, 2 * L)}
    rng = np.random.default_rng(2)
    x = {"rgb": rng.normal(size=(1, W, S, S, 3 * L)).astype("float32"),
         "flow": rng.normal(size=(1, W, S, S, 2 * L)).astype("float32")}
    np.testing.assert_allclose(lite(**x)["logits"], model(x, training=False).numpy(),
                               atol=1e-4)
    with pytest.raises(ValueError, match="takes inputs"):
        lite(rgb=x["rgb"])


# ------------------------------------------------------------------------ StNet, DIN, VideoMap
def test_stnet_converts(base, tmp_path):
    keras.utils.set_random_seed(0)
    model = spread_fc(models.build("stnet", CLASSES, backbone="tiny", width=0.5,
                                   num_segments=3, frames_per_segment=2, input_size=S,
                                   txb_width=16))
    path = export_saved_model(model, base, "stnet", clip_shape=(3, S, S, 6), sidecar={},
                              warmup=False)
    _, ops, _ = convert_and_check(path, tmp_path / "stnet.tflite")
    assert "CONV_3D" in ops


HEAD_CASES = {
    "din": dict(num_frames=6, embed_dim=16, filters=8),
    "videomap": dict(num_frames=16, filters=(4, 4, 4), attention_filters=(4, 4)),
}


@pytest.mark.parametrize("name", sorted(HEAD_CASES))
def test_end_to_end_on_frames_converts(name, base, tmp_path):
    keras.utils.set_random_seed(0)
    kw = HEAD_CASES[name]
    model = spread_fc(models.build(name, CLASSES, backbone="tiny", width=0.5, input_size=S,
                                   **kw))
    path = export_saved_model(model, base, f"{name}_e2e",
                              clip_shape=(kw["num_frames"], S, S, 3), sidecar={}, warmup=False)
    convert_and_check(path, tmp_path / "m.tflite")


@pytest.mark.parametrize("name", sorted(HEAD_CASES))
def test_head_on_features_converts(name, tmp_path):
    """backbone=None: input "features" (B, T, D); export_saved_model takes clips only, so
    the head goes through a plain Keras model.export() artifact (serving_default)."""
    keras.utils.set_random_seed(0)
    kw = HEAD_CASES[name]
    model = spread_fc(models.build(name, CLASSES, backbone=None, feature_dim=32, **kw))
    path = str(tmp_path / "export")
    model.export(path, verbose=False)
    out, ops, diff = convert_and_check(path, tmp_path / "head.tflite")
    lite = TFLiteModel(out)
    assert lite.input_shape == (1, kw["num_frames"], 32)
    x = np.random.default_rng(4).normal(size=lite.input_shape).astype("float32")
    got = next(iter(lite(x).values()))
    np.testing.assert_allclose(got, model(x, training=False).numpy(), atol=1e-4)


# ---------------------------------------------------------- quantized variants, uint8 input
def tsn_sidecar(backbone="tiny", modality="rgb"):
    from tfvid.data import augment

    return {"class_names": list("abcd"),
            "sampling": {"name": "tsn", "num_segments": 3, "new_length": 1,
                         "test_segments": 3},
            "preprocessing": {"modality": modality, "backbone": backbone, "input_size": S,
                              "normalization": augment.normalization_config(backbone, modality),
                              "mode": "test"}}


@pytest.fixture(scope="module")
def tsn_export(base):
    keras.utils.set_random_seed(1)
    model = spread_fc(models.build("tsn", CLASSES, backbone="tiny", width=0.5, input_size=S,
                                   num_segments=3), seed=1)
    return model, export_saved_model(model, base, "tsn_q", clip_shape=(3, S, S, 3),
                                     sidecar=tsn_sidecar(), warmup=False)


def test_quantize_variants_report(tsn_export, tiny_records, tmp_path):
    from pipelines import convert_tflite as job

    _, path = tsn_export
    reports = {}
    for q in ("none", "dynamic", "float16", "int8"):
        reports[q] = job.convert(path, output=str(tmp_path / f"{q}.tflite"), quantize=q,
                                 representative_data=tiny_records if q == "int8" else None,
                                 representative_samples=4, eval_data=tiny_records,
                                 latency_runs=2, max_top1_drop=100.0)
    for q, r in reports.items():
        assert os.path.isfile(r["tflite"]) and r["quantize"] == q
        assert json.loads(open(r["tflite"] + ".json").read())["quantize"] == q
        assert not nonbuiltin(r["ops"])
        assert set(r["latency_ms"]) == {"1_threads_ms", "2_threads_ms"}
        assert all(v > 0 for v in r["latency_ms"].values())
        p = r["parity"]
        for key in ("max_abs_diff", "top1_agreement", "clips", "accuracy_tflite",
                    "accuracy_savedmodel"):
            assert key in p, (q, key)
        assert p["clips"] == 4 and p["source"] == "--eval_data"
    assert reports["none"]["parity"]["max_abs_diff"] < 1e-4
    assert reports["float16"]["parity"]["top1_agreement"] == 1.0
    sizes = {q: r["size_bytes"] for q, r in reports.items()}
    assert sizes["dynamic"] < sizes["none"] and sizes["int8"] < sizes["none"]
    assert sizes["float16"] < sizes["none"]
    assert reports["int8"]["int8_ops"] in ("int8", "mixed")
    assert reports["int8"]["representative_samples"] == 4
    assert "QUANTIZE" in reports["int8"]["ops"] or "DEQUANTIZE" in reports["int8"]["ops"]
    with pytest.raises(ValueError, match="needs --representative_data"):
        job.convert(path, output=str(tmp_path / "x.tflite"), quantize="int8")


def test_max_top1_drop_fails_and_removes(tsn_export, tiny_records, tmp_path, monkeypatch):
    from pipelines import convert_tflite as job

    _, path = tsn_export
    real = tflite.compare

    def worse(*a, **kw):   # a quantized model that lost 25 points
        out = real(*a, **kw)
        out["accuracy_tflite"] = out["accuracy_savedmodel"] - 0.25
        return out
    monkeypatch.setattr(tflite, "compare", worse)
    target = tmp_path / "dyn.tflite"
    with pytest.raises(tflite.ParityError, match="points below the SavedModel"):
        job.convert(path, output=str(target), quantize="dynamic", eval_data=tiny_records,
                    latency_threads=())
    assert not target.exists()


@pytest.mark.parametrize("norm,modality,channels", [("tiny", "rgb", 3),
                                                    ("bninception", "rgb", 3),
                                                    ("tiny", "flow", 10),
                                                    ("tiny", "rgbdiff", 15)])
def test_uint8_input_matches_host_normalisation(norm, modality, channels, base, tmp_path):
    """norm: whose normalisation constants (bninception: Caffe BGR, mean 104/117/128); the
    model is a tiny TSN either way (the constants, not the backbone, matter here)."""
    from tfvid.data import augment

    keras.utils.set_random_seed(2)
    model = spread_fc(models.build("tsn", CLASSES, backbone="tiny", modality=modality,
                                   input_size=S, num_segments=2, width=0.5))
    sidecar = tsn_sidecar(norm, modality)
    sidecar["sampling"] = {"name": "tsn", "num_segments": 2, "test_segments": 2,
                           "new_length": 5 if modality == "flow" else
                           6 if modality == "rgbdiff" else 1}
    path = export_saved_model(model, base, f"u8_{norm}_{modality}",
                              clip_shape=(2, S, S, channels), sidecar=sidecar, warmup=False)
    out = convert_to_tflite(path, str(tmp_path / "u8.tflite"), uint8_input=True)
    lite = TFLiteModel(out)
    c0 = channels + 3 if modality == "rgbdiff" else channels
    assert lite.input_shape == (1, 2, S, S, c0) and lite.input_dtype == np.uint8
    assert not nonbuiltin(tflite_ops(out))
    clip = np.random.default_rng(5).integers(0, 256, size=lite.input_shape).astype(np.uint8)
    host = clip.astype(np.float32)
    if modality == "rgbdiff":
        host = host[..., 3:] - host[..., :-3]
    host = augment.normalize(host, norm, modality).numpy()           # the client's way
    expected = model(host, training=False).numpy()
    np.testing.assert_allclose(lite(clip)["logits"], expected, atol=1e-4)
    assert check_parity(path, out, num_samples=2, atol=1e-4) < 1e-4
    with pytest.raises(ValueError, match="uint8"):
        lite(np.zeros(lite.input_shape, np.float32))


def test_uint8_job_with_eval_data(tsn_export, tiny_records, tmp_path, capsys):
    from absl import flags
    from absl.testing import flagsaver
    from pipelines import convert_tflite as job

    _, path = tsn_export
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(export_dir=path, output=None, uint8_input=True, quantize="int8",
                             representative_data=tiny_records[0], representative_samples=2,
                             eval_data=tiny_records[0], latency_runs=2, optimize="none",
                             max_top1_drop=100.0, time_steps=None):
        job.main(["convert_tflite"])
    target = os.path.join(os.path.dirname(path), os.path.basename(path) + "-int8-uint8.tflite")
    text = capsys.readouterr().out
    assert f"wrote {os.path.abspath(target)}" in text and "uint8 input" in text
    assert "top-1 accuracy: tflite" in text and "latency per clip" in text
    report = json.loads(open(target + ".json").read())
    assert report["input_dtype"] == "uint8" and report["normalization"]["clip"]["backbone"] \
        == "tiny"
    assert report["parity"]["clips"] == 4
    # uint8 clips from the records: the same clips as the float pipeline, rounded
    samples, labels = job.load_clips(tiny_records, read(path), [1, 3, S, S, 3], uint8=True)
    floats, _ = job.load_clips(tiny_records, read(path), [1, 3, S, S, 3])
    assert samples[0].dtype == np.uint8 and len(samples) == 4 and len(labels) == 4
    norm = report["normalization"]["clip"]
    np.testing.assert_allclose(tflite.host_normalize(samples[0], norm), floats[0],
                               atol=0.6 / 58.0)   # rounding to the 8-bit grid (torch std)


def read(path):
    from tfvid.export import read_sidecar
    return read_sidecar(path)


# -------------------------------------------------------------------------- full size
@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["bninception", "resnet50"])
def test_full_size_tsn_converts(backbone, tmp_path):
    keras.utils.set_random_seed(0)
    model = models.build("tsn", 101, backbone=backbone, input_size=224, num_segments=3)
    path = export_saved_model(model, str(tmp_path / "sm"), backbone,
                              clip_shape=(3, 224, 224, 3), sidecar={}, warmup=False)
    out = convert_to_tflite(path, str(tmp_path / "m.tflite"))
    assert not nonbuiltin(tflite_ops(out))
    assert check_parity(path, out, num_samples=1, atol=1e-3) < 1e-3
