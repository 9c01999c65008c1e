"""Dynamic image networks (tfvid.models.dynamic_image): streams SI/DI/OF/DOF, SDI/MDI, dynamic
maps, parametric pooling, cyclic window padding, conv1 rules, round trips and the train job."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvid.models.dynamic_image import (build_dynamic_image_net, input_channels,  # noqa: E402
                                        stream_modality)
from tfvid.layers.window_pooling import (MaxOverWindows, ParametricPooling,  # noqa: E402
                                         frames_to_window)

S, L, K, WIDTH = 32, 10, 4, 0.25


def build(stream="di", **kw):
    keras.utils.set_random_seed(0)
    kw.setdefault("backbone", "tiny")
    return build_dynamic_image_net(K, stream=stream, input_size=S, width=WIDTH, **kw)


def windows(stream, b=2, w=3, seed=0, window=L):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, w, S, S, input_channels(stream, window))).astype("float32")


def reverse_frames(x, frame_channels):
    """Reverses the frame order inside every window of (B, W, S, S, C*L)."""
    shape = x.shape
    frames = x.reshape(shape[:-1] + (-1, frame_channels))
    return frames[..., ::-1, :].reshape(shape)


def run(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


# ------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("stream,kw,channels", [
    ("si", {}, 30), ("si", {"si_frame": "all"}, 30), ("di", {}, 30), ("of", {}, 20),
    ("dof", {}, 20), ("di", {"pool_before": "res3"}, 30), ("dof", {"pool_before": "res3"}, 20),
    ("di", {"pooling": "pp1"}, 30), ("di", {"pooling": "pp2", "pool_before": "res3"}, 30),
    ("di", {"pooling": "mean"}, 30), ("dof", {"pooling": "max"}, 20)])
def test_output_shapes(stream, kw, channels):
    model = build(stream, **kw)
    assert model.input_shape == (None, None, S, S, channels)
    for w in (1, 3):                       # a variable number of windows per video
        assert run(model, windows(stream, b=2, w=w)).shape == (2, K)


def test_sdi_is_one_window_over_the_whole_video():
    model = build("di", window=16, num_windows=1)
    assert model.input_shape == (None, 1, S, S, 48)
    clip = np.random.default_rng(1).normal(size=(2, 16, S, S, 3)).astype("float32")
    one = frames_to_window(clip).numpy()   # UniformSampler(16) clips -> one 16-frame window
    assert one.shape == (2, 1, S, S, 48)
    np.testing.assert_array_equal(one[0, 0, :, :, 3 * 5:3 * 6], clip[0, 5])   # frame-major
    assert run(model, one).shape == (2, K)


def test_stream_modalities_and_argument_errors():
    assert [stream_modality(s) for s in ("si", "di", "of", "dof")] == ["rgb", "rgb", "flow",
                                                                      "flow"]
    with pytest.raises(ValueError, match="stream"):
        build("rgb")
    with pytest.raises(ValueError, match="pool_before='res9'"):
        build("di", pool_before="res9")
    with pytest.raises(ValueError, match="dynamic streams"):
        build("of", pool_before="res3")
    with pytest.raises(ValueError, match="pooling"):
        build("di", pooling="svm")


# -------------------------------------------------------------------------- invariances
def test_di_depends_on_frame_order_and_si_all_does_not():
    di, x = build("di"), windows("di")
    assert not np.allclose(run(di, x), run(di, reverse_frames(x, 3)), atol=1e-4)
    dmap = build("di", pool_before="res3")
    assert not np.allclose(run(dmap, x), run(dmap, reverse_frames(x, 3)), atol=1e-4)
    dof, f = build("dof"), windows("dof")
    assert not np.allclose(run(dof, f), run(dof, reverse_frames(f, 2)), atol=1e-4)
    si_all = build("si", si_frame="all")     # max over all W*L frames: symmetric in time
    np.testing.assert_allclose(run(si_all, x), run(si_all, reverse_frames(x, 3)), atol=1e-5)


def test_si_first_sees_only_the_first_frame_of_each_window():
    si, x = build("si"), windows("si")
    y = x.copy()
    y[..., 3:] = np.random.default_rng(5).normal(size=y[..., 3:].shape)   # frames 2..L
    np.testing.assert_allclose(run(si, x), run(si, y), atol=1e-5)


@pytest.mark.parametrize("stream", ["si", "di", "of", "dof"])
def test_max_over_windows_ignores_repeated_windows(stream):
    """Cyclic padding (a video's own windows repeated) leaves every stream's output exact."""
    model, x = build(stream), windows(stream, b=2, w=3)
    padded = x[:, [0, 1, 2, 0, 1, 2, 0]]
    np.testing.assert_allclose(run(model, x), run(model, padded), rtol=1e-5, atol=1e-5)
    # a window the video does not have (here: the other video's, scaled up) changes it
    other = np.concatenate([x, 3 * x[::-1, :1]], axis=1)
    assert not np.allclose(run(model, x), run(model, other), atol=1e-4)


def test_max_over_windows_layer():
    feats = np.arange(12, dtype="float32").reshape(6, 2)       # 2 videos x 3 windows
    out = MaxOverWindows()([feats, np.zeros((2, 3, 1), "float32")])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), [[4, 5], [10, 11]])


def test_parametric_pooling_numbers():
    layer = ParametricPooling(hidden=0, activation=None)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    layer.build(x.shape)
    layer.kernel.assign([1.0, 0.0, -2.0, 0.5, 0.0])
    layer.bias.assign(0.25)
    expected = x[:, 0] - 2 * x[:, 2] + 0.5 * x[:, 3] + 0.25
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-6)
    pp2 = ParametricPooling(hidden=5)
    assert pp2(x).shape == (2, 3) and len(pp2.weights) == 4       # 5x5 + 5, 5 + 1
    assert sum(int(np.prod(w.shape)) for w in pp2.weights) == 36


# ----------------------------------------------------------------------- data padding
def _write_videos(path, lengths):
    from tfvid.data import schema
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path)) as w:
        for v, n in enumerate(lengths):
            frames = rng.integers(0, 256, (n, 36, 44, 3)).astype(np.uint8)
            enc = [tf.io.encode_jpeg(f).numpy() for f in frames]
            w.write(schema.make_example(f"v{v}", enc, height=36, width=44, frame_rate=25,
                                        label_index=v % K).SerializeToString())


def test_mdi_batches_are_padded_cyclically_and_exact(tmp_path):
    from tfvid.data.pipeline import build_dataset, cyclic_pad
    from tfvid.data.sampling import MDISampler

    np.testing.assert_array_equal(
        cyclic_pad(np.arange(3).reshape(3, 1, 1, 1), 7).numpy().ravel(), [0, 1, 2, 0, 1, 2, 0])
    path = tmp_path / "v.tfrecord"
    _write_videos(path, [14, 30, 75])          # 3, 5 and 13 windows at validation
    common = dict(sampler=MDISampler(), modality="rgb", input_size=S, backbone="tiny")
    batch = next(iter(build_dataset(str(path), mode="val", batch_size=3, **common)))
    clip, steps = batch["clip"].numpy(), batch["num_steps"].numpy()
    assert clip.shape == (3, 1, 13, S, S, 30) and steps.tolist() == [3, 5, 13]
    np.testing.assert_array_equal(clip[0, 0, 3:6], clip[0, 0, :3])        # cyclic, not zeros
    np.testing.assert_array_equal(clip[1, 0, 5:10], clip[1, 0, :5])
    model = build("di")
    together = run(model, clip[:, 0])
    for i, n in enumerate(steps):
        np.testing.assert_allclose(together[i], run(model, clip[i:i + 1, 0, :n])[0],
                                   rtol=1e-5, atol=1e-5)
    train = build_dataset(str(path), mode="train", batch_size=2, **common)
    assert train.element_spec["clip"].shape == (2, 10, S, S, 30)   # max_windows: static
    tb = next(iter(train))
    n = int(tb["num_steps"][0])
    assert 1 <= n <= 10
    np.testing.assert_array_equal(tb["clip"][0, n:].numpy(), tb["clip"][0, :10 - n].numpy())


# --------------------------------------------------------------------------- weights
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A locally made 3-channel tiny backbone weights file (no downloads here)."""
    from tfvid.models.backbones import build_backbone
    keras.utils.set_random_seed(3)
    net = build_backbone("tiny", input_shape=(None, None, 3), width=WIDTH, pooling=None)
    rng = np.random.default_rng(3)
    net.set_weights([rng.normal(size=w.shape).astype("float32") for w in net.get_weights()])
    path = str(tmp_path_factory.mktemp("w") / "tiny.weights.h5")
    net.save_weights(path)
    return path, net


def test_conv1_rules_when_loading_rgb_weights(tiny_weights):
    path, net = tiny_weights
    rgb = net.get_layer("conv1_conv").get_weights()[0]                  # (3, 3, 3, out)
    dof = build("dof", weights=path)
    np.testing.assert_array_equal(dof.get_layer("conv1_conv").get_weights()[0], rgb[:, :, :2])
    dmap = build("dof", weights=path, pool_before="res3")
    np.testing.assert_array_equal(dmap.get_layer("conv1_conv").get_weights()[0], rgb[:, :, :2])
    of = build("of", weights=path)
    np.testing.assert_allclose(of.get_layer("conv1_conv").get_weights()[0],
                               np.repeat(rgb.mean(axis=2, keepdims=True), 20, axis=2),
                               rtol=1e-6)
    di = build("di", weights=path)
    np.testing.assert_array_equal(di.get_layer("conv1_conv").get_weights()[0], rgb)
    for model in (dof, dmap, of, di):                                   # the rest copied
        for a, b in zip(model.get_layer("conv5_block1_2_conv").get_weights(),
                        net.get_layer("conv5_block1_2_conv").get_weights()):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------ round trips
def _random_fc(model):
    fc = model.get_layer("fc")
    fc.set_weights([np.random.default_rng(1).normal(0, 0.5, w.shape).astype("float32")
                    for w in fc.get_weights()])
    return model


@pytest.mark.parametrize("stream,kw", [("si", {}), ("di", {}), ("of", {}), ("dof", {}),
                                       ("di", {"pooling": "pp2", "pool_before": "res3"}),
                                       ("si", {"si_frame": "all"})])
def test_keras_save_load_round_trip(stream, kw, tmp_path):
    model, x = _random_fc(build(stream, **kw)), windows(stream, b=2, w=2, seed=4)
    expected = run(model, x)
    assert np.abs(expected).max() > 1e-3
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    assert loaded.name == model.name
    np.testing.assert_allclose(run(loaded, x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stream", [pytest.param("si", marks=pytest.mark.slow), "di",
                                    pytest.param("of", marks=pytest.mark.slow), "dof"])
def test_export_round_trip(stream, tmp_path):
    """(si and of also go through an export inside tests/test_four_stream.py.)"""
    from tfvid.export import export_saved_model, load_export

    model, x = _random_fc(build(stream)), windows(stream, b=2, w=2, seed=4)
    expected = run(model, x)
    out = export_saved_model(model, str(tmp_path / "sm"), stream,
                             clip_shape=model.input_shape[1:], sidecar={}, warmup=False)
    serving, _ = load_export(out)
    got = serving(windows(stream, b=2, w=5, seed=4))          # variable W in the signature
    assert got["logits"].shape == (2, K)
    np.testing.assert_allclose(serving(x)["logits"].numpy(), expected, rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------- train job
@pytest.fixture
def records(tiny_records):
    return tiny_records


def _train_job_args(records, out):
    """The train job's flags for a tiny dynamic_image run into `out` (registers the model)."""
    from tfvid import models
    if "dynamic_image" not in models.MODELS:           # the lead registers it
        models.register_model("dynamic_image", build_dynamic_image_net)
    return [f"--train_data={','.join(records)}", f"--model_dir={out}", "--backbone=tiny",
            "--width=0.25", "--input_size=32", "--batch_size=2", "--log_every=1",
            "--noprogress", "--model=dynamic_image"]


def test_train_job_di_stream(records, tmp_path):
    from absl import app, flags

    from pipelines import train as job
    FLAGS = flags.FLAGS
    out = tmp_path / "run"
    common = _train_job_args(records, out)
    try:
        FLAGS.unparse_flags()
        FLAGS(["train", *common, "--stream=dof", "--modality=rgb", "--steps=1"])
        with pytest.raises(app.UsageError, match="--modality=rgb contradicts --stream=dof"):
            job.main(["train"])
        assert not out.exists()
        FLAGS.unparse_flags()
        FLAGS(["train", *common, "--stream=di", "--steps=2"])
        metrics = job.main(["train"])
    finally:
        FLAGS.unparse_flags()
    assert metrics["final_step"] == 2
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["modality"] == "rgb" and cfg["stream"] == "di"
    assert cfg["model_kwargs"] == {"stream": "di"} and cfg["sampler"]["name"] == "mdi"
    from tfvid.train import run_dir
    model = run_dir.build_model(cfg)
    run_dir.restore(model, str(out))
    assert model.name.startswith("dynamic_image_di") and model.input_shape[-1] == 30
    from pipelines.evaluate import evaluate_model_dir   # score file for pipelines.fuse
    summary = evaluate_model_dir(str(out), ",".join(records), num_crops=1, progress=False)
    assert os.path.isfile(out / "eval" / "scores.npz") and summary


def test_train_job_sdi(records, tmp_path):
    """--sdi_frames=T: one window of T frames over the whole video, through train, evaluate
    and export; errors name the flags."""
    from absl import app, flags

    from pipelines import train as job
    FLAGS = flags.FLAGS
    out = tmp_path / "sdi"
    common = _train_job_args(records, out) + ["--steps=2"]
    try:
        for bad, pattern in ((["--stream=si", "--sdi_frames=8"], "--stream=di or dof"),
                             (["--stream=di", "--sdi_frames=-1"], "--sdi_frames must be")):
            FLAGS.unparse_flags()
            FLAGS(["train", *common, *bad])
            with pytest.raises(app.UsageError, match=pattern):
                job.main(["train"])
        assert not out.exists()
        FLAGS.unparse_flags()
        FLAGS(["train", *common, "--stream=di", "--sdi_frames=8"])
        metrics = job.main(["train"])
    finally:
        FLAGS.unparse_flags()
    assert metrics["final_step"] == 2
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["sampler"] == {"name": "sdi", "frames": 8}
    assert cfg["model_kwargs"] == {"stream": "di", "window": 8, "num_windows": 1}
    from tfvid.train import run_dir
    model = run_dir.build_model(cfg)
    assert model.input_shape == (None, 1, S, S, 24)
    from pipelines.evaluate import evaluate_model_dir
    summary = evaluate_model_dir(str(out), ",".join(records), num_crops=1, progress=False)
    assert summary and os.path.isfile(out / "eval" / "scores.npz")
    from pipelines.export import export as export_run
    from tfvid.export import load_export
    path = export_run(str(out), export_base=str(tmp_path / "exports"), warmup=False)
    serving, sidecar = load_export(path)
    assert sidecar["sampling"] == {"name": "sdi", "frames": 8}
    x = np.random.default_rng(0).normal(size=(1, 1, S, S, 24)).astype("float32")
    run_dir.restore(model, str(out))
    np.testing.assert_allclose(serving(x)["logits"].numpy(), run(model, x), rtol=1e-4,
                               atol=1e-5)
    from pipelines.export_four_stream import load_stream
    with pytest.raises(ValueError, match="samples 'sdi' windows"):   # four streams need MDI
        load_stream("di", str(out), None)


@pytest.mark.parametrize("stream", ["si", "di", "of", "dof"])
def test_presets_match_the_reference_code(stream):
    from absl import flags

    from pipelines import train as job
    FLAGS = flags.FLAGS
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    preset = os.path.join(root, "pipelines", "configs", f"dynamic_image_{stream}_ucf101.flags")
    try:
        FLAGS.unparse_flags()
        FLAGS(["train", f"--flagfile={preset}"])
        assert (FLAGS.model, FLAGS.stream, FLAGS.backbone) == ("dynamic_image", stream,
                                                             "resnext50")
        job.check_stream()                   # the preset's --modality agrees with its stream
        assert FLAGS.modality == stream_modality(stream)
        assert (FLAGS.batch_size, FLAGS.lr, FLAGS.momentum, FLAGS.weight_decay) == (
            128, 0.01, 0.9, 5e-4)
        assert FLAGS.dropout == (0.5 if stream in ("si", "di") else 0.8)
        assert FLAGS.epochs == 150 and FLAGS.clip_norm == 0 and FLAGS.lr_steps[0] == "746"
    finally:
        FLAGS.unparse_flags()
