"""Four-stream dynamic image network: fused Keras model, one SavedModel, the export job, and the
same fusion through score files (pipelines.fuse)."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvid.export.four_stream import export_four_stream  # noqa: E402
from tfvid.layers.fusion import WeightedAverage  # noqa: E402
from tfvid.models.four_stream import build_four_stream_model  # noqa: E402
from tfvid.models.dynamic_image import build_dynamic_image_net  # noqa: E402

S, K, WIDTH = 32, 3, 0.25
STREAMS = ("si", "di", "of", "dof")
WEIGHTS = {"si": 1.0, "di": 2.0, "of": 0.5, "dof": 1.5}
CLASSES = ["a", "b", "c"]


def stream_model(stream, seed):
    keras.utils.set_random_seed(seed)
    model = build_dynamic_image_net(K, stream=stream, backbone="tiny", input_size=S,
                                    width=WIDTH)
    fc = model.get_layer("fc")
    rng = np.random.default_rng(seed)
    fc.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in fc.get_weights()])
    return model


@pytest.fixture(scope="module")
def models():
    return {s: stream_model(s, i) for i, s in enumerate(STREAMS)}


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(7)
    return {"rgb": rng.normal(size=(2, 3, S, S, 30)).astype("float32"),
            "flow": rng.normal(size=(2, 2, S, S, 20)).astype("float32")}   # W may differ


def expected_logits(models, inputs, weights):
    total = sum(weights.values())
    out = 0
    for s in STREAMS:
        x = inputs["rgb" if s in ("si", "di") else "flow"]
        out = out + weights[s] * keras.ops.convert_to_numpy(models[s](x, training=False))
    return out / total


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_fused_logits_are_the_weighted_average(models, inputs):
    fused = build_four_stream_model(models, WEIGHTS)
    assert sorted(t.name for t in fused.inputs) == ["flow", "rgb"]
    assert fused.output_shape == (None, K)
    got = keras.ops.convert_to_numpy(fused(inputs, training=False))
    want = expected_logits(models, inputs, WEIGHTS)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(want).max() > 1e-2
    equal = build_four_stream_model(models, name="equal")           # default: plain average
    np.testing.assert_allclose(keras.ops.convert_to_numpy(equal(inputs, training=False)),
                               expected_logits(models, inputs, dict.fromkeys(STREAMS, 1.0)),
                               rtol=1e-5, atol=1e-6)


def test_rgb_only_model_has_one_input(models, inputs):
    two = build_four_stream_model({"si": models["si"], "di": models["di"]}, name="rgb_only")
    assert [t.name for t in two.inputs] == ["rgb"]
    assert two({"rgb": inputs["rgb"]}).shape == (2, K)


def test_errors(models):
    with pytest.raises(ValueError, match="unknown streams"):
        build_four_stream_model({"rgb": models["si"]})
    with pytest.raises(ValueError, match="without a model"):
        build_four_stream_model({"si": models["si"]}, {"di": 1.0})
    with pytest.raises(ValueError, match="distinct names"):
        build_four_stream_model({"si": models["si"], "di": models["si"]})
    other = build_dynamic_image_net(K + 1, stream="di", backbone="tiny", input_size=S,
                                    width=WIDTH)
    with pytest.raises(ValueError, match="number of classes"):
        build_four_stream_model({"si": models["si"], "di": other})
    with pytest.raises(ValueError, match="not all zero"):
        WeightedAverage([0.0, 0.0])


def test_keras_round_trip_and_one_savedmodel(models, inputs, tmp_path):
    from tfvid.export import load_export, read_warmup_requests

    fused = build_four_stream_model(models, WEIGHTS)
    want = expected_logits(models, inputs, WEIGHTS)
    fused.save(str(tmp_path / "fused.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "fused.keras"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(inputs, training=False)),
                               want, rtol=1e-5, atol=1e-6)
    path = export_four_stream(fused, str(tmp_path / "sm"), "four", sidecar={
        "class_names": CLASSES})
    assert path == str(tmp_path / "sm" / "four" / "1")
    serving, sidecar = load_export(path)
    assert sorted(serving.input_specs) == ["flow", "rgb"]
    assert serving.input_specs["rgb"].shape.as_list() == [None, None, S, S, 30]
    assert sidecar["signature"]["inputs"]["flow"]["shape"] == [None, None, S, S, 20]
    out = serving(rgb=inputs["rgb"], flow=inputs["flow"])
    np.testing.assert_allclose(out["logits"].numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy(), softmax(want), rtol=1e-5,
                               atol=1e-6)
    logs = read_warmup_requests(path)
    assert logs and all(sorted(lg.predict_log.request.inputs) == ["flow", "rgb"] for lg in logs)
    request = logs[0].predict_log.request.inputs
    warm = serving({k: tf.make_ndarray(v) for k, v in request.items()})
    assert warm["probabilities"].shape == (1, K)


def test_score_file_fusion_matches_the_fused_model(models, inputs, tmp_path):
    """The four-stream route without an export: evaluate score files + pipelines.fuse."""
    from pipelines.fuse import fuse_files
    from tfvid.eval.metrics import Scores, load_scores, save_scores

    paths = []
    for s in STREAMS:
        x = inputs["rgb" if s in ("si", "di") else "flow"]
        logits = keras.ops.convert_to_numpy(models[s](x, training=False))
        order = [1, 0] if s == "of" else [0, 1]          # files may list videos in any order
        paths.append(save_scores(str(tmp_path / f"{s}.npz"), Scores(
            np.array(["v0", "v1"])[order], np.array([0, 2])[order], logits[order], CLASSES)))
    fuse_files(paths, [WEIGHTS[s] for s in STREAMS], str(tmp_path / "fused"))
    fused = load_scores(str(tmp_path / "fused" / "scores.npz"))
    assert fused.ids.tolist() == ["v0", "v1"]
    np.testing.assert_allclose(fused.logits, expected_logits(models, inputs, WEIGHTS),
                               rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------ export job
def write_run(models, stream, root):
    """A training run directory as pipelines/train.py leaves it (config + final weights)."""
    folder = root / stream
    folder.mkdir()
    cfg = {"model": "dynamic_image", "num_classes": K, "backbone": "tiny", "width": WIDTH,
           "input_size": S, "modality": "rgb" if stream in ("si", "di") else "flow",
           "stream": stream, "model_kwargs": {"stream": stream}, "class_names": CLASSES,
           "sampler": {"name": "mdi", "window": 10, "stride": 6, "max_windows": 10}}
    (folder / "run_config.json").write_text(json.dumps(cfg))
    models[stream].save_weights(str(folder / "final.weights.h5"))
    return str(folder)


def test_export_job(models, inputs, tmp_path):
    from pipelines import export_four_stream as job
    from tfvid import models as registry
    from tfvid.export import load_export
    if "dynamic_image" not in registry.MODELS:           # the lead registers it
        registry.register_model("dynamic_image", build_dynamic_image_net)

    assert job.parse_weights(None) == dict.fromkeys(STREAMS, 1.0)
    assert job.parse_weights("1,2,0.5,1.5") == WEIGHTS
    with pytest.raises(ValueError, match="--weights needs 4"):
        job.parse_weights(["1", "2"])
    dirs = {s: write_run(models, s, tmp_path) for s in STREAMS}
    with pytest.raises(ValueError, match="--dof_dir is required"):
        job.export({**dirs, "dof": None}, export_base=str(tmp_path / "sm"))
    with pytest.raises(ValueError, match="--si_dir=.* stream 'di', not 'si'"):
        job.export({**dirs, "si": dirs["di"]}, export_base=str(tmp_path / "sm"))
    path = job.export(dirs, weights=WEIGHTS, name="fs", export_base=str(tmp_path / "sm"),
                      warmup=False)
    serving, sidecar = load_export(path)
    np.testing.assert_allclose(serving(inputs)["logits"].numpy(),
                               expected_logits(models, inputs, WEIGHTS), rtol=1e-5, atol=1e-5)
    assert sidecar["class_names"] == CLASSES
    assert sidecar["model"]["fusion"]["weights"] == WEIGHTS
    assert sidecar["streams"]["dof"]["preprocessing"]["modality"] == "flow"
    assert sidecar["streams"]["di"]["sampling"]["name"] == "mdi"
    assert path.endswith(os.path.join("fs", "1"))
    fixed, _, _ = job.load_stream("of", dirs["of"], num_windows=2)     # --num_windows=2
    assert fixed.input_shape == (None, 2, S, S, 20)


# --------------------------------------------------------------- serving input checks
def test_four_stream_signature_checks_both_inputs(models, inputs, tmp_path):
    """Both inputs are checked like the single-clip export's: shape, the same B, finite
    values; B = 0 gives empty outputs. Called through tf.saved_model.load as TF Serving's
    Python clients do."""
    from tfvid.export import load_export

    fused = build_four_stream_model({"si": models["si"], "of": models["of"]}, name="two")
    path = export_four_stream(fused, str(tmp_path / "sm"), "two", sidecar={
        "class_names": CLASSES}, warmup=False)
    sig = tf.saved_model.load(path).signatures["serving_default"]
    specs = sig.structured_input_signature[1]
    assert specs["rgb"].shape.as_list() == [None, None, S, S, 30]
    assert specs["flow"].shape.as_list() == [None, None, S, S, 20]
    rgb, flow = tf.constant(inputs["rgb"]), tf.constant(inputs["flow"])
    assert sig(rgb=rgb, flow=flow)["logits"].shape == (2, K)
    empty = sig(rgb=tf.zeros((0, 3, S, S, 30)), flow=tf.zeros((0, 1, S, S, 20)))
    assert empty["probabilities"].shape == (0, K)
    bad = [
        ({"rgb": tf.zeros((2, 3, 64, 64, 30)), "flow": flow},
         r"input rgb must be a float32 tensor of shape \(B, T, 32, 32, 30\).*got shape\] "
         r"\[2 3 64 64 30\]"),
        ({"rgb": rgb, "flow": tf.zeros((2, 2, S, S, 30))},
         r"input flow must be .*\(B, T, 32, 32, 20\).*got shape\] \[2 2 32 32 30\]"),
        ({"rgb": tf.zeros((2, S, S, 30)), "flow": flow}, r"input rgb must be .*got shape\] "
                                                        r"\[2 32 32 30\]"),
        ({"rgb": rgb, "flow": tf.zeros((2, 0, S, S, 20))}, r"T >= 1 .*got shape\] \[2 0 32"),
        ({"rgb": rgb[:1], "flow": flow}, r"inputs (rgb and flow|flow and rgb) must hold the "
                                         r"same number of clips B; got batch sizes\] "
                                         r"\[(1 2|2 1)\]"),
        ({"rgb": rgb, "flow": tf.tensor_scatter_nd_update(flow, [[1, 0, 0, 0, 0]],
                                                          [float("inf")])},
         r"input flow has non-finite values"),
    ]
    for kwargs, pattern in bad:
        with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
            sig(**kwargs)
    serving, sidecar = load_export(path)
    assert sidecar["class_names"] == CLASSES


def test_four_stream_sidecar_is_checked_against_the_signature(models, tmp_path):
    """A stream sidecar that contradicts the signature is refused before anything is written
    (the reader's checks, tfvid.export.validate_sidecar)."""
    from tfvid.export import SidecarError

    fused = build_four_stream_model({"si": models["si"], "of": models["of"]}, name="two")
    with pytest.raises(SidecarError, match=r"'streams.of.input_shape' .*contradicts the "
                                           r"signature's 'flow' input"):
        export_four_stream(fused, str(tmp_path / "sm"), "two", warmup=False, sidecar={
            "class_names": CLASSES,
            "streams": {"of": {"preprocessing": {"modality": "flow", "input_size": S},
                               "input_shape": [None, None, S, S, 30]}}})
    with pytest.raises(SidecarError, match=r"'streams.si.preprocessing'.input_size 64"):
        export_four_stream(fused, str(tmp_path / "sm"), "two", warmup=False, sidecar={
            "class_names": CLASSES,
            "streams": {"si": {"preprocessing": {"modality": "rgb", "input_size": 64}}}})
    with pytest.raises(SidecarError, match="'class_names' has 2 class names"):
        export_four_stream(fused, str(tmp_path / "sm"), "two", warmup=False,
                           sidecar={"class_names": CLASSES[:2]})
    assert not os.path.exists(tmp_path / "sm" / "two") or not os.listdir(tmp_path / "sm" / "two")


def test_export_job_protocol_signatures(models, tmp_path):
    """The job's export also takes uint8 rgb frames + 8-bit x/y flow (serving_default), their
    JPEGs (encoded_frames) and records with flow (sequence_example): the streams' MDI test
    windows, views and fusion in the graph, as the fused Keras model on preprocess_video."""
    from pipelines import export_four_stream as job
    from tfvid import models as registry
    from tfvid.data import sampling, schema
    from tfvid.data.pipeline import preprocess_video
    from tfvid.export import load_export
    from tfvid.export.signatures import InputProtocol, resize_frames
    if "dynamic_image" not in registry.MODELS:
        registry.register_model("dynamic_image", build_dynamic_image_net)

    dirs = {s: write_run(models, s, tmp_path) for s in STREAMS}
    path = job.export(dirs, weights=WEIGHTS, name="fsp", export_base=str(tmp_path / "sm"),
                      warmup=False, protocol_crops=1)
    serving, sidecar = load_export(path)
    assert sorted(serving.signature_names) == ["clip", "encoded_frames", "sequence_example",
                                               "serving_default"]
    assert sorted(sidecar["serving"]["inputs"]) == ["flow", "rgb"]
    rng = np.random.default_rng(0)
    n, h, w = 16, 24, 32
    frames = rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8)
    flow = rng.integers(0, 255, (n - 1, h, w, 2), dtype=np.uint8)
    out = serving.call("serving_default", rgb=frames[None], flow=flow[None])
    assert out["logits"].shape == (1, K) and out["top_k_classes"].shape == (1, K)
    # the reference: resize to the stored size, MDI windows, centre view, fused model
    fused = build_four_stream_model(models, WEIGHTS)
    views = {}
    for key, part in (("rgb", sidecar["streams"]["si"]), ("flow", sidecar["streams"]["of"])):
        proto = InputProtocol(key, part["preprocessing"]["modality"], part["sampling"], S,
                              "tiny", tuple(part["decoding"]["frame_size"]))
        sampler = sampling.get_sampler(**part["sampling"])
        if key == "rgb":
            views[key] = preprocess_video(resize_frames(frames, proto), sampler=sampler,
                                          input_size=S, backbone="tiny", num_crops=1)
        else:
            big = resize_frames(flow, proto).numpy()
            views[key] = preprocess_video(None, flow_x=big[..., 0], flow_y=big[..., 1],
                                          sampler=sampler, modality="flow", input_size=S,
                                          backbone="tiny", num_crops=1)
    want = keras.ops.convert_to_numpy(fused(views, training=False)).mean(0)
    np.testing.assert_allclose(out["logits"].numpy()[0], want, rtol=1e-4, atol=1e-4)
    # JPEGs and a record with flow: the same as serving_default on the decoded JPEGs
    rgb_j = [tf.io.encode_jpeg(f).numpy() for f in frames]
    fx = [tf.io.encode_jpeg(f[..., :1]).numpy() for f in flow]
    fy = [tf.io.encode_jpeg(f[..., 1:]).numpy() for f in flow]
    dec = serving.call("serving_default", rgb=np.stack([tf.io.decode_jpeg(j).numpy()
                                                        for j in rgb_j])[None],
                       flow=np.stack([np.concatenate([tf.io.decode_jpeg(a).numpy(),
                                                      tf.io.decode_jpeg(b).numpy()], -1)
                                      for a, b in zip(fx, fy)])[None])["logits"].numpy()
    enc = serving.call("encoded_frames", rgb=np.array([rgb_j], dtype=object),
                       flow=np.array([list(zip(fx, fy))], dtype=object))["logits"].numpy()
    record = schema.make_example("v", rgb_j, height=h, width=w, frame_rate=25.0, flow_x=fx,
                                 flow_y=fy).SerializeToString()
    rec = serving.call("sequence_example", examples=[record])["logits"].numpy()
    np.testing.assert_allclose(enc, dec, atol=1e-5)
    np.testing.assert_allclose(rec, dec, atol=1e-5)
