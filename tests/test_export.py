"""SavedModel export (tfvid.export.savedmodel) and the export job (pipelines.export)."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvid.export import savedmodel
from tfvid.export import export_saved_model, load_export, next_version, resolve_export_dir

SIZE = 32
CLASSES = ["brush_hair", "cartwheel", "catch", "chew", "clap"]


def tiny_tsn(num_segments=3, seed=0):
    """The tiny TSN of the brief with random (not near-zero) classifier weights."""
    from tfvid import models
    keras.utils.set_random_seed(seed)
    model = models.build("tsn", len(CLASSES), backbone="tiny", input_size=SIZE,
                         num_segments=num_segments)
    rng = np.random.default_rng(seed)
    model.get_layer("fc").set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                                       for w in model.get_layer("fc").get_weights()])
    return model


def mini_model():
    """A very small clip classifier for the layout tests (fast to trace)."""
    inputs = keras.Input((3, SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling3D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(len(CLASSES))(x))


def clips(b, t=3, seed=1):
    return np.random.default_rng(seed).normal(size=(b, t, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def model():
    return tiny_tsn()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("saved_models"))
    path = export_saved_model(model, base, "tiny", clip_shape=(3, SIZE, SIZE, 3),
                              sidecar={"class_names": CLASSES, "note": "test"})
    return base, path


# ------------------------------------------------------------------------- library
def test_layout_and_signature(exported, model):
    base, path = exported
    assert path == os.path.join(base, "tiny", "1")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert os.path.isdir(os.path.join(path, "variables"))
    assert sorted(os.listdir(os.path.join(base, "tiny"))) == ["1"]   # no temporary left
    loaded = tf.saved_model.load(path)
    sig = loaded.signatures["serving_default"]
    inputs = sig.structured_input_signature[1]
    assert list(inputs) == ["clip"]
    assert inputs["clip"].dtype == tf.float32
    assert inputs["clip"].shape.as_list() == [None, 3, SIZE, SIZE, 3]
    assert sorted(sig.structured_outputs) == ["logits", "probabilities", "top_k_classes",
                                              "top_k_indices"]
    # without in-graph preprocessing (no sampling / preprocessing in the sidecar) serving_default
    # is the float32 clip signature, also named "clip"
    assert sorted(loaded.signatures) == ["clip", "serving_default"]
    assert loaded.signatures["clip"].structured_input_signature[1]["clip"].shape.as_list() == \
        [None, 3, SIZE, SIZE, 3]


def test_outputs_match_keras(exported, model):
    _, path = exported
    sig = tf.saved_model.load(path).signatures["serving_default"]
    x = clips(4)
    out = sig(clip=tf.constant(x))
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(out["logits"].numpy(), expected, atol=1e-5)
    assert np.abs(expected).max() > 0.1          # not a degenerate all-zero model
    p = out["probabilities"].numpy()
    np.testing.assert_allclose(p, tf.nn.softmax(expected).numpy(), atol=1e-6)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
    top = out["top_k_indices"].numpy()
    assert top.shape == (4, 5) and top.dtype == np.int32
    np.testing.assert_array_equal(top, np.argsort(-expected, axis=-1, kind="stable"))
    assert out["top_k_classes"].numpy()[0, 0].decode() == CLASSES[int(expected[0].argmax())]


def test_dropout_is_off_in_the_signature(exported):
    _, path = exported
    serving, _ = load_export(path)
    x = clips(2)
    a, b = serving(x)["logits"].numpy(), serving(x)["logits"].numpy()
    np.testing.assert_array_equal(a, b)


def test_sidecar(exported):
    _, path = exported
    with open(os.path.join(path, "assets.extra", "tfvid.json"), encoding="utf-8") as f:
        side = json.load(f)
    assert side["class_names"] == CLASSES and side["note"] == "test"
    assert side["num_classes"] == 5 and side["name"] == "tiny" and side["version"] == 1
    assert side["signature"]["name"] == "serving_default"
    assert side["signature"]["inputs"]["clip"] == {"dtype": "float32",
                                                   "shape": [None, 3, SIZE, SIZE, 3]}
    assert side["signature"]["outputs"]["probabilities"]["shape"] == [None, 5]


def test_warmup_requests_parse(exported):
    _, path = exported
    every = savedmodel.read_warmup_requests(path)
    # one request more for the "clip" name of the same function
    assert sorted({lg.predict_log.request.model_spec.signature_name for lg in every}) == \
        ["clip", "serving_default"]
    logs = [lg for lg in every
            if lg.predict_log.request.model_spec.signature_name == "serving_default"]
    assert [int(tf.make_ndarray(lg.predict_log.request.inputs["clip"]).shape[0])
            for lg in logs] == list(savedmodel.WARMUP_BATCH_SIZES)
    for lg in logs:
        req = lg.predict_log.request
        assert req.model_spec.name == "tiny"
        assert req.model_spec.signature_name == "serving_default"
        arr = tf.make_ndarray(req.inputs["clip"])
        assert arr.dtype == np.float32 and arr.shape[1:] == (3, SIZE, SIZE, 3)
        assert not arr.any()
    # the same request runs through the signature
    serving, _ = load_export(path)
    out = serving(tf.make_ndarray(logs[-1].predict_log.request.inputs["clip"]))
    assert out["probabilities"].shape == (savedmodel.WARMUP_BATCH_SIZES[-1], 5)
    # stored compactly: far smaller than the zero tensors themselves
    size = os.path.getsize(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
    assert size < 2000


def test_versions_increment_and_never_overwrite(tmp_path):
    model = mini_model()
    base = str(tmp_path)
    p1 = export_saved_model(model, base, "m", clip_shape=(3, SIZE, SIZE, 3),
                            sidecar={"class_names": CLASSES}, warmup=False)
    marker = os.path.join(p1, "assets.extra", "tfvid.json")
    before = open(marker, encoding="utf-8").read()
    mtime = os.path.getmtime(os.path.join(p1, "saved_model.pb"))
    assert next_version(base, "m") == 2
    p2 = export_saved_model(model, base, "m", clip_shape=(3, SIZE, SIZE, 3),
                            sidecar={"class_names": CLASSES}, warmup=False)
    assert os.path.basename(p2) == "2"
    assert open(marker, encoding="utf-8").read() == before
    assert os.path.getmtime(os.path.join(p1, "saved_model.pb")) == mtime
    assert not os.path.exists(os.path.join(p2, "assets.extra", "tf_serving_warmup_requests"))
    with pytest.raises(FileExistsError, match="1"):
        export_saved_model(model, base, "m", version=1, clip_shape=(3, SIZE, SIZE, 3),
                           sidecar={"class_names": CLASSES})
    p7 = export_saved_model(model, base, "m", version=7, clip_shape=(3, SIZE, SIZE, 3),
                            sidecar={}, warmup=False)
    assert os.path.basename(p7) == "7" and next_version(base, "m") == 8
    assert sorted(os.listdir(os.path.join(base, "m"))) == ["1", "2", "7"]
    assert resolve_export_dir(os.path.join(base, "m")) == p7
    serving, side = load_export(os.path.join(base, "m"))
    assert serving.path == p7 and side["version"] == 7


def test_bad_arguments(tmp_path):
    model = mini_model()
    with pytest.raises(ValueError, match="class names"):
        export_saved_model(model, str(tmp_path), "m", clip_shape=(3, SIZE, SIZE, 3),
                           sidecar={"class_names": CLASSES[:2]})
    with pytest.raises(ValueError, match="only the time dimension"):
        export_saved_model(model, str(tmp_path), "m", clip_shape=(3, None, SIZE, 3), sidecar={})
    with pytest.raises(TypeError):  # not JSON-serialisable: fails before anything is written
        export_saved_model(model, str(tmp_path), "m", clip_shape=(3, SIZE, SIZE, 3),
                           sidecar={"x": object()})
    assert not os.path.exists(os.path.join(tmp_path, "m")) or \
        os.listdir(os.path.join(tmp_path, "m")) == []
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_export(os.path.join(tmp_path, "nowhere"))


def test_variable_time_export(tmp_path):
    model = tiny_tsn(num_segments=None)
    path = export_saved_model(model, str(tmp_path), "var", clip_shape=(None, SIZE, SIZE, 3),
                              sidecar={"class_names": CLASSES})
    serving, side = load_export(path)
    assert side["signature"]["inputs"]["clip"]["shape"] == [None, None, SIZE, SIZE, 3]
    for t in (3, 5):
        x = clips(2, t=t, seed=t)
        np.testing.assert_allclose(serving(x)["logits"].numpy(),
                                   keras.ops.convert_to_numpy(model(x, training=False)),
                                   atol=1e-5)
    logs = savedmodel.read_warmup_requests(path)
    assert tf.make_ndarray(logs[0].predict_log.request.inputs["clip"]).shape[1] == \
        savedmodel.WARMUP_VARIABLE_TIME


# --------------------------------------------------------------------------- the job
def make_run_dir(tmp_path, model, *, num_segments=3, frame_size=(64, 48), classes=CLASSES,
                 extra=None):
    """A training run as the train job leaves it: run_config.json, checkpoints, data dir."""
    from tfvid.data import schema
    from tfvid.prep.video import encode_jpegs

    data = tmp_path / "data"
    data.mkdir()
    (data / "classes.txt").write_text("\n".join(classes) + "\n")
    w, h = frame_size
    frames = encode_jpegs(np.zeros((2, h, w, 3), np.uint8))
    record = schema.make_example("v0", frames, height=h, width=w, frame_rate=25.0, label_index=0)
    train_file = str(data / "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(train_file) as wr:
        wr.write(record.SerializeToString())
    run = tmp_path / "run_tiny"
    run.mkdir()
    cfg = {"model": "tsn", "backbone": "tiny", "modality": "rgb", "width": 1.0,
           "input_size": SIZE, "num_segments": num_segments, "new_length": None,
           "consensus": "avg", "dropout": 0.5, "partial_bn": True, "num_classes": len(classes),
           "train_data": train_file, "seed": 0, **(extra or {})}
    (run / "run_config.json").write_text(json.dumps(cfg))
    ckpt = tf.train.Checkpoint(model=model, optimizer=keras.optimizers.SGD(0.01),
                               step=tf.Variable(10, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(run), max_to_keep=2).save()
    return str(run)


def test_job_export_round_trip(model, tmp_path, capsys):
    from pipelines import export as job

    run = make_run_dir(tmp_path, model)
    base = str(tmp_path / "saved_models")
    path = job.export(run, export_base=base)
    assert path == os.path.join(base, "run_tiny", "1")
    serving, side = load_export(path)
    x = clips(3)
    np.testing.assert_allclose(serving(x)["logits"].numpy(),
                               keras.ops.convert_to_numpy(model(x, training=False)), atol=1e-5)
    assert side["class_names"] == CLASSES
    assert side["input_shape"] == [None, 3, SIZE, SIZE, 3]
    assert side["sampling"] == {"name": "tsn", "num_segments": 3, "new_length": 1,
                                "test_segments": 3}
    assert side["decoding"]["frame_size"] == [64, 48]
    assert side["preprocessing"]["backbone"] == "tiny"
    assert side["preprocessing"]["input_size"] == SIZE
    assert side["model"]["run_config"]["num_classes"] == 5
    text = job.describe(path)
    assert "input  clip: float32 [None, 3, 32, 32, 3]" in text
    assert "signature 'serving_default':\n  input  rgb: uint8 [None, None, None, None, 3]" in text
    assert "signature 'encoded_frames':" in text and "sequence_example" in text
    assert "curl -X POST http://localhost:8501/v1/models/run_tiny:predict" in text


def test_job_variable_time_and_name(model, tmp_path):
    from pipelines import export as job

    run = make_run_dir(tmp_path, model)
    base = str(tmp_path / "sm")
    path = job.export(run, export_base=base, name="tsn_tiny", num_segments=0, version=4)
    assert path == os.path.join(base, "tsn_tiny", "4")
    serving, side = load_export(path)
    assert side["input_shape"][1] is None
    assert side["sampling"]["test_segments"] == 25
    variable = tiny_tsn(num_segments=None)
    variable.set_weights(model.get_weights())
    x = clips(1, t=25)
    np.testing.assert_allclose(serving(x)["logits"].numpy(),
                               keras.ops.convert_to_numpy(variable(x, training=False)), atol=1e-5)
    path = job.export(run, export_base=base, name="tsn_tiny", num_segments=5)
    assert os.path.basename(path) == "5"
    assert load_export(path)[1]["sampling"]["test_segments"] == 5


def test_job_uses_recorded_sampler_classes_and_manifest(model, tmp_path):
    """What the train job records (sampler, class_names, train_files) and prepare_data's
    manifest (decoding options) win over the defaults."""
    from pipelines import export as job

    names = [f"c{i}" for i in range(5)]
    run = make_run_dir(tmp_path, model, extra={
        "sampler": {"name": "tsn", "num_segments": 3, "new_length": 1, "test_segments": 25},
        "class_names": names})
    data = tmp_path / "data"
    (data / "train-manifest.json").write_text(json.dumps({"options": {
        "frame_size": None, "short_side": 128, "fps": 10.0, "flow": "none", "flow_bound": 20}}))
    side = load_export(job.export(run, export_base=str(tmp_path / "sm"), warmup=False))[1]
    assert side["class_names"] == names
    assert side["sampling"]["test_segments"] == 3     # matches the fixed signature T
    assert side["decoding"] == {"frame_size": None, "short_side": 128, "fps": 10.0}


def test_job_errors_name_the_dir(model, tmp_path):
    from pipelines import export as job

    missing = str(tmp_path / "no_such_run")
    with pytest.raises(FileNotFoundError, match="no_such_run"):
        job.export(missing)
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty_run.*run_config.json"):
        job.export(str(empty))
    (empty / "run_config.json").write_text(json.dumps({"model": "tsn", "num_classes": 5}))
    with pytest.raises(FileNotFoundError, match="empty_run.*no checkpoint"):
        job.export(str(empty))


def test_job_main_prints_path_and_curl(model, tmp_path, capsys):
    from absl import flags
    from absl.testing import flagsaver
    from pipelines import export as job

    run = make_run_dir(tmp_path, model)
    base = str(tmp_path / "sm")
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(model_dir=run, export_base=base, name=None, version=0,
                             num_segments=None, input_size=None, warmup=True):
        job.main(["export"])
    out = capsys.readouterr().out
    assert f"exported: {os.path.join(base, 'run_tiny', '1')}" in out
    assert "output probabilities: float32 [None, 5]" in out
    assert "curl" in out and "docker run" in out
