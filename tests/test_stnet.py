"""tfvid.models.stnet: StNet builder (parameter counts, variable T, weights, training, saving)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvid.models.stnet import STNET_BACKBONES, backbone_conv_biases, build_stnet

CLASSES, T, N, SIZE = 5, 3, 2, 32
TINY = dict(backbone="tiny", width=0.5, frames_per_segment=N, input_size=SIZE, txb_width=16)


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def tiny(num_segments=T, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    args = dict(TINY, **kw)
    return build_stnet(CLASSES, num_segments=num_segments, **args)


def clips(b=2, t=T, size=SIZE, seed=1):
    return np.random.default_rng(seed).normal(size=(b, t, size, size, 3 * N)).astype("float32")


@pytest.fixture(scope="module")
def model():
    return tiny()


# ----------------------------------------------------------------------------- full size
def test_resnet50_parameter_counts():
    """docs/stnet.md: exactly 33,158,864 trainable parameters for 400 classes (Table 3:
    33.16M), with the bias-free ResNet-50 of the PaddlePaddle code (the default)."""
    m = build_stnet(400)
    assert m.input_shape == (None, 7, 224, 224, 15)
    assert m.output_shape == (None, 400)
    assert trainable(m.get_layer("temporal_res3")) == 787_968
    assert trainable(m.get_layer("temporal_res4")) == 3_148_800
    assert trainable(m.get_layer("temporal_xception")) == 5_266_432
    assert trainable(m.get_layer("fc")) == 410_000
    assert m.get_layer("conv1_conv").kernel.shape == (7, 7, 15, 64)
    assert backbone_conv_biases(m) == 0
    assert trainable(m) == 33_158_864
    assert round(trainable(m) / 1e6, 2) == 33.16


def test_resnet50_keras_layout_parameter_count():
    """conv_bias=True keeps the Keras-applications ResNet-50: 53 conv biases (26,560) more."""
    m = build_stnet(400, conv_bias=True)
    assert backbone_conv_biases(m) == 26_560
    assert trainable(m) == 33_185_424 == 33_158_864 + 26_560


# ----------------------------------------------------------------------------- tiny
def test_shapes_and_layers(model):
    assert model.input_shape == (None, T, SIZE, SIZE, 3 * N)
    assert model.output_shape == (None, CLASSES)
    names = [layer.name for layer in model.layers]
    for name in ("temporal_res3", "temporal_res4", "temporal_xception", "max_over_time", "fc"):
        assert name in names
    assert "dropout" not in names                      # no dropout by default (paper, code)
    assert names.index("temporal_res3") < names.index("temporal_res4")
    assert model(clips(), training=False).shape == (2, CLASSES)
    assert tiny(dropout=0.5).get_layer("dropout").rate == 0.5


def test_segment_order_matters(model):
    """Unlike TSN's average consensus, StNet models temporal order."""
    x = clips(b=1, t=T)
    forward = model(x, training=False).numpy()
    backward = model(x[:, ::-1], training=False).numpy()
    assert np.abs(forward - backward).max() > 1e-4
    shuffled = model(x[:, [1, 0, 2]], training=False).numpy()
    assert np.abs(forward - shuffled).max() > 1e-4


def test_weights_move_from_t7_to_variable_t(model, tmp_path):
    """Train with fixed T, test with any T (paper: 7 and 25) and another crop size."""
    path = str(tmp_path / "stnet.weights.h5")
    model.save_weights(path)
    variable = tiny(num_segments=None, seed=5)
    assert variable.input_shape == (None, None, SIZE, SIZE, 3 * N)
    variable.load_weights(path)
    x = clips(t=T)
    np.testing.assert_allclose(variable(x, training=False).numpy(),
                               model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    big = tiny(num_segments=None, input_size=48, seed=6)      # the 256-crop test, scaled down
    big.load_weights(path)
    out = big(clips(b=1, t=25, size=48), training=False).numpy()
    assert out.shape == (1, CLASSES) and np.all(np.isfinite(out))


def test_backbone_weights_use_the_stnet_conv1_rule(tmp_path):
    from tfvid.models.backbones import build_backbone
    keras.utils.set_random_seed(3)
    source = build_backbone("tiny", input_shape=(SIZE, SIZE, 3), width=0.5, pooling=None)
    path = str(tmp_path / "tiny.weights.h5")
    source.save_weights(path)
    m = build_stnet(CLASSES, num_segments=T, weights=path, **TINY)
    rgb = source.get_layer("conv1_conv").get_weights()[0]             # (3, 3, 3, out)
    expected = np.repeat(rgb.mean(axis=2, keepdims=True) / N, 3 * N, axis=2)
    np.testing.assert_allclose(m.get_layer("conv1_conv").get_weights()[0], expected, rtol=1e-6)
    for name in ("conv2_block1_1_conv", "conv5_block1_2_bn"):
        for a, b in zip(m.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_biased_backbone_weights_fold_into_the_default_bias_free_stnet(tmp_path):
    """A backbone file with conv biases (Keras layout) loads into the default bias-free StNet:
    the biases go into the BN moving means, so the logits equal those of a conv_bias=True
    StNet loaded from the same file (same temporal blocks, TXB and fc)."""
    from tfvid.models.backbones import build_backbone
    keras.utils.set_random_seed(7)
    source = build_backbone("tiny", input_shape=(SIZE, SIZE, 3), width=0.5, pooling=None,
                            conv_bias=True)
    rng = np.random.default_rng(0)
    for w in source.weights:
        if w.path.endswith(("bias", "moving_mean", "beta")):
            w.assign(rng.normal(0, 0.2, tuple(w.shape)).astype("float32"))
        elif w.path.endswith(("moving_variance", "gamma")):
            w.assign(rng.uniform(0.5, 1.5, tuple(w.shape)).astype("float32"))
    path = str(tmp_path / "tiny_biased.weights.h5")
    source.save_weights(path)

    free = build_stnet(CLASSES, num_segments=T, weights=path, **TINY)
    biased = build_stnet(CLASSES, num_segments=T, weights=path, conv_bias=True, **TINY)
    assert backbone_conv_biases(free) == 0 and backbone_conv_biases(biased) > 0
    bias = source.get_layer("conv1_conv").bias.numpy()
    np.testing.assert_allclose(free.get_layer("conv1_bn").moving_mean.numpy(),
                               source.get_layer("conv1_bn").moving_mean.numpy() - bias, rtol=1e-6)
    for name in ("temporal_res3", "temporal_res4", "temporal_xception", "fc"):
        free.get_layer(name).set_weights(biased.get_layer(name).get_weights())
    x = clips()
    expected = biased(x, training=False).numpy()
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(free(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_paper_temporal_block_variant():
    m = tiny(temporal_block="paper")
    block = m.get_layer("temporal_res3")
    assert block.variant == "paper"
    channels = block.conv.kernel.shape[-1]
    np.testing.assert_allclose(block.conv.get_weights()[0], 1.0 / (3 * channels))
    assert np.all(np.isfinite(m(clips(), training=False).numpy()))


def test_bad_arguments():
    with pytest.raises(ValueError, match="resnet50"):
        build_stnet(CLASSES, backbone="bninception")
    with pytest.raises(ValueError, match="official"):
        tiny(temporal_block="lstm")
    with pytest.raises(ValueError, match="input_size"):
        tiny(input_size=None)
    with pytest.raises(ValueError, match="dropout"):
        tiny(dropout=1.0)
    assert "resnext101" in STNET_BACKBONES


def test_training_lowers_the_loss(tmp_path):
    """A few SGD steps of tfvid.train.loop on a learnable synthetic task."""
    from tfvid.train.loop import train

    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, size=40).astype("int32")
    x = rng.normal(0, 0.5, size=(40, T, SIZE, SIZE, 3 * N)).astype("float32")
    x[np.arange(40), :, :, :, labels] += 2.0          # class c brightens channel c everywhere

    def data_fn(ctx):
        per = ctx.get_per_replica_batch_size(8)
        return tf.data.Dataset.from_tensor_slices((x, labels)).repeat().batch(per, True)

    losses = []
    train(lambda: tiny(seed=1), data_fn, model_dir=str(tmp_path / "run"), steps=30,
          global_batch_size=8, learning_rate=0.05, weight_decay=0.0, log_every=10,
          checkpoint_every=30, progress=False,
          step_callback=lambda step, logs: losses.append(float(logs["loss"])))
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_save_load_and_export_agree(model, tmp_path):
    from tfvid.export import export_saved_model, load_export

    x = clips(b=2)
    expected = model(x, training=False).numpy()
    path = str(tmp_path / "stnet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)
    out = export_saved_model(model, str(tmp_path / "sm"), "stnet",
                             clip_shape=(T, SIZE, SIZE, 3 * N), sidecar={"class_names": None},
                             warmup=False)
    serving, _ = load_export(out)
    got = serving(x)
    np.testing.assert_allclose(got["logits"].numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_dataset_super_images_feed_the_model(model, tmp_path):
    """build_dataset with StNetSampler + rgb yields (B, T, S, S, 3N) super-image batches."""
    from tfvid.data import schema
    from tfvid.data.pipeline import build_dataset
    from tfvid.data.sampling import StNetSampler

    rng = np.random.default_rng(0)
    path = str(tmp_path / "train-0-of-1.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for v in range(2):
            frames = rng.integers(0, 256, (12, 40, 48, 3)).astype(np.uint8)
            encoded = [tf.io.encode_jpeg(f).numpy() for f in frames]
            w.write(schema.make_example(f"v{v}", encoded, height=40, width=48, frame_rate=25,
                                        label_index=v).SerializeToString())
    sampler = StNetSampler(num_segments=T, frames_per_segment=N)
    batch = next(iter(build_dataset(path, sampler=sampler, mode="train", modality="rgb",
                                    batch_size=2, input_size=SIZE, backbone="tiny")))
    assert tuple(batch["clip"].shape) == (2, T, SIZE, SIZE, 3 * N)
    assert model(batch["clip"], training=False).shape == (2, CLASSES)
