"""Weight loading: Keras-applications files, tfvid round trips, conv1 adaptation rules."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfvid.models import weights as weights_lib  # noqa: E402
from tfvid.models.backbones import build_backbone  # noqa: E402
from tfvid.models.weights import (CONV1_RULES, adapt_conv1_kernel,  # noqa: E402
                                  load_backbone_weights, register_conv1_rule)


def _randomize(model, seed=0):
    """Non-trivial values for every variable (BN statistics included), moderate activations."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape, path = tuple(w.shape), w.path
        if path.endswith("kernel"):
            value = rng.normal(size=shape) * np.sqrt(1.0 / np.prod(shape[:-1]))
        elif path.endswith(("gamma", "moving_variance")):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # bias, beta, moving_mean
            value = rng.normal(size=shape) * 0.1
        w.assign(value.astype("float32"))
    return model


def _images(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _assert_same_weights(a, b, skip=()):
    layers_b = {l.name: l for l in b.layers}
    checked = 0
    for layer in a.layers:
        if not layer.weights or layer.name in skip:
            continue
        for wa, wb in zip(layer.get_weights(), layers_b[layer.name].get_weights()):
            np.testing.assert_array_equal(wa, wb, err_msg=layer.name)
        checked += 1
    assert checked > 0


# --------------------------------------------------------------------------- conv1 rules
def test_adapt_rules_numerics():
    kernel = np.random.default_rng(0).normal(size=(7, 7, 3, 4)).astype("float32")
    mean = kernel.mean(axis=2)

    avg = adapt_conv1_kernel(kernel, 10, "average")
    assert avg.shape == (7, 7, 10, 4) and avg.dtype == np.float32
    for c in range(10):
        np.testing.assert_allclose(avg[:, :, c], mean, rtol=1e-6)

    st = adapt_conv1_kernel(kernel, 15, "stnet")  # N = 5 frames
    assert st.shape == (7, 7, 15, 4)
    for c in range(15):
        np.testing.assert_allclose(st[:, :, c], mean / 5, rtol=1e-6)
    # a clip of 5 identical frames gets the response of the averaged-RGB kernel on one frame
    np.testing.assert_allclose(st.sum(axis=2), mean * 3, rtol=1e-5)

    first = adapt_conv1_kernel(kernel, 2, "first")  # dynamic optical flow (u, v)
    np.testing.assert_array_equal(first, kernel[:, :, :2])

    for rule in CONV1_RULES:  # already the right channel count: unchanged copy
        same = adapt_conv1_kernel(kernel, 3, rule)
        np.testing.assert_array_equal(same, kernel)
        assert same is not kernel


def test_adapt_rules_errors_and_registry():
    kernel = np.ones((3, 3, 3, 2), "float32")
    with pytest.raises(ValueError, match="3N"):
        adapt_conv1_kernel(kernel, 10, "stnet")
    with pytest.raises(ValueError, match="at most 3"):
        adapt_conv1_kernel(kernel, 5, "first")
    with pytest.raises(ValueError, match="unknown conv1 rule"):
        adapt_conv1_kernel(kernel, 5, "median")
    with pytest.raises(ValueError, match="already exists"):
        register_conv1_rule("average", lambda k, c: k)
    register_conv1_rule("zeros_test", lambda k, c: np.zeros(k.shape[:2] + (c, k.shape[3])))
    try:
        assert not adapt_conv1_kernel(kernel, 4, "zeros_test").any()
        model = build_backbone("tiny", input_shape=(32, 32, 4), conv1_rule="zeros_test")
        assert model.get_layer("conv1_conv").kernel.shape[2] == 4
    finally:
        CONV1_RULES.pop("zeros_test")


# --------------------------------------------------------------------------- Keras files
@pytest.fixture(scope="module")
def keras_resnet50_file(tmp_path_factory):
    reference = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                            input_shape=(64, 64, 3))
    _randomize(reference)
    path = str(tmp_path_factory.mktemp("keras") / "resnet50.weights.h5")
    reference.save_weights(path)
    return reference, path


def test_keras_resnet50_file_gives_equal_features(keras_resnet50_file):
    reference, path = keras_resnet50_file
    model = build_backbone("resnet50", weights=path, input_shape=(64, 64, 3))
    x = _images((2, 64, 64, 3))
    expected = reference(x).numpy()
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_keras_resnet50_file_into_10_channels(keras_resnet50_file):
    reference, path = keras_resnet50_file
    model = build_backbone("resnet50", weights=path, input_shape=(64, 64, 10))
    rgb = reference.get_layer("conv1_conv").kernel.numpy()
    kernel = model.get_layer("conv1_conv").kernel.numpy()
    assert kernel.shape == (7, 7, 10, 64)
    np.testing.assert_allclose(kernel, np.repeat(rgb.mean(axis=2, keepdims=True), 10, axis=2),
                               rtol=1e-6)
    np.testing.assert_array_equal(model.get_layer("conv1_conv").bias.numpy(),
                                  reference.get_layer("conv1_conv").bias.numpy())
    _assert_same_weights(reference, model, skip=("conv1_conv",))
    # averaged kernel: 10 identical slices g act like the RGB net on (g, g, g) * 10 / 3
    gray = _images((1, 64, 64, 1))
    out10 = model(np.repeat(gray, 10, axis=-1)).numpy()
    out3 = reference(np.repeat(gray * 10 / 3, 3, axis=-1)).numpy()
    np.testing.assert_allclose(out10, out3, rtol=1e-4, atol=1e-4)


def test_keras_file_with_top_and_sub_network(tmp_path, keras_resnet50_file):
    reference, _ = keras_resnet50_file
    top = keras.applications.ResNet50(weights=None, include_top=True, input_shape=(64, 64, 3))
    top.set_weights(reference.get_weights() + top.get_weights()[-2:])
    path = str(tmp_path / "top.weights.h5")
    top.save_weights(path)
    head = build_backbone("resnet50", weights=path, input_shape=(64, 64, 3),
                          last_stage="res3", pooling=None)
    _assert_same_weights(head, reference)
    x = _images((1, 64, 64, 3))
    expected = keras.Model(reference.input, reference.get_layer("conv3_block4_out").output)(x)
    np.testing.assert_allclose(head(x).numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_mismatched_width_names_layer_and_shapes(keras_resnet50_file):
    _, path = keras_resnet50_file
    with pytest.raises(ValueError, match=r"conv1_conv.*\(7, 7, 3, 8\).*\(7, 7, 3, 64\)"):
        build_backbone("resnet50", weights=path, input_shape=(64, 64, 3), width=0.125)


def test_imagenet_offline_error_is_actionable(monkeypatch):
    def offline(name, **kwargs):
        if kwargs.get("weights") == "imagenet":
            raise OSError("URL fetch failure: no internet")
        raise AssertionError("unexpected call")

    monkeypatch.setattr(weights_lib, "_keras_application", offline)
    target = build_backbone("tiny", input_shape=(32, 32, 3))  # the source fails first
    with pytest.raises(RuntimeError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
                       r"(.|\n)*weights="):
        load_backbone_weights(target, "resnet50", "imagenet")
    with pytest.raises(ValueError, match="no ImageNet weights ship with Keras for backbone 'bninception'"):
        load_backbone_weights(target, "bninception", "imagenet")


# --------------------------------------------------------------------------- tfvid files
@pytest.mark.parametrize("name,conv1", [("bninception", "conv1_7x7_s2"),
                                        ("resnext50", "conv1_conv")])
def test_own_file_round_trip(tmp_path, name, conv1):
    source = _randomize(build_backbone(name, input_shape=(64, 64, 3), width=0.125))
    path = str(tmp_path / f"{name}.weights.h5")
    source.save_weights(path)
    loaded = build_backbone(name, input_shape=(64, 64, 3), width=0.125, weights=path)
    _assert_same_weights(source, loaded)
    x = _images((2, 64, 64, 3))
    np.testing.assert_allclose(loaded(x).numpy(), source(x).numpy(), rtol=1e-5, atol=1e-5)

    flow = build_backbone(name, input_shape=(None, None, 10), width=0.125, weights=path,
                          pooling=None)
    rgb = source.get_layer(conv1).kernel.numpy()
    np.testing.assert_allclose(flow.get_layer(conv1).kernel.numpy(),
                               np.repeat(rgb.mean(axis=2, keepdims=True), 10, axis=2), rtol=1e-6)
    _assert_same_weights(source, flow, skip=(conv1,))


def test_own_multichannel_file_loads_directly(tmp_path):
    source = _randomize(build_backbone("tiny", input_shape=(32, 32, 15)))
    path = str(tmp_path / "tiny15.weights.h5")
    source.save_weights(path)
    loaded = build_backbone("tiny", input_shape=(32, 32, 15), weights=path, conv1_rule="stnet")
    _assert_same_weights(source, loaded)  # conv1 copied as is, no rule applied
    with pytest.raises(ValueError, match="cannot adapt"):
        build_backbone("tiny", input_shape=(32, 32, 6), weights=path)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_backbone("tiny", weights=str(tmp_path / "missing.weights.h5"))
    path = str(tmp_path / "tiny.weights.h5")
    build_backbone("tiny", input_shape=(32, 32, 3), width=0.5).save_weights(path)
    with pytest.raises(ValueError, match="matches no known layout for backbone 'tiny'"):
        build_backbone("tiny", input_shape=(32, 32, 3), weights=path)  # width 1 vs 0.5
    with pytest.raises(TypeError):
        build_backbone("tiny", weights=3)


def test_strict_and_partial_loading(tmp_path):
    source = _randomize(build_backbone("tiny", input_shape=(32, 32, 3)))
    path = str(tmp_path / "tiny.weights.h5")
    source.save_weights(path)
    target = build_backbone("tiny", input_shape=(32, 32, 3))
    bigger = keras.Model(target.input, keras.layers.Dense(5, name="classifier")(target.output))
    with pytest.raises(ValueError, match="classifier"):
        load_backbone_weights(bigger, "tiny", path)
    loaded = load_backbone_weights(bigger, "tiny", path, strict=False)
    assert "classifier" not in loaded and "conv1_conv" in loaded
    _assert_same_weights(source, target)


def test_loading_into_a_wrapped_backbone(tmp_path):
    """A backbone nested in a bigger model (e.g. TimeDistributed over snippets) still loads."""
    source = _randomize(build_backbone("tiny", input_shape=(32, 32, 3)))
    path = str(tmp_path / "tiny.weights.h5")
    source.save_weights(path)
    backbone = build_backbone("tiny", input_shape=(32, 32, 2))
    clips = keras.Input((4, 32, 32, 2))
    features = keras.layers.TimeDistributed(backbone, name="snippets")(clips)
    video = keras.Model(clips, features)
    loaded = load_backbone_weights(video, "tiny", path, conv1_rule="first")
    assert "conv1_conv" in loaded
    np.testing.assert_array_equal(backbone.get_layer("conv1_conv").kernel.numpy(),
                                  source.get_layer("conv1_conv").kernel.numpy()[:, :, :2])
    _assert_same_weights(source, backbone, skip=("conv1_conv",))


# --------------------------------------------------------------------------- conv biases
def test_keras_file_into_bias_free_resnet50_folds_biases(keras_resnet50_file):
    """Keras-applications convs carry biases; a conv_bias=False ResNet-50 gets them folded into
    the BN moving means (mean - bias), which gives the same features in inference."""
    reference, path = keras_resnet50_file
    model = build_backbone("resnet50", weights=path, input_shape=(64, 64, 3), conv_bias=False)
    assert not any(l.use_bias for l in model.layers if isinstance(l, keras.layers.Conv2D))
    for conv, bn in (("conv1_conv", "conv1_bn"), ("conv2_block1_0_conv", "conv2_block1_0_bn"),
                     ("conv4_block6_2_conv", "conv4_block6_2_bn")):
        bias = reference.get_layer(conv).bias.numpy()
        assert np.abs(bias).max() > 1e-3
        np.testing.assert_allclose(model.get_layer(bn).moving_mean.numpy(),
                                   reference.get_layer(bn).moving_mean.numpy() - bias, rtol=1e-6)
        np.testing.assert_array_equal(model.get_layer(conv).kernel.numpy(),
                                      reference.get_layer(conv).kernel.numpy())
        np.testing.assert_array_equal(model.get_layer(bn).gamma.numpy(),
                                      reference.get_layer(bn).gamma.numpy())
    x = _images((2, 64, 64, 3))
    expected = reference(x, training=False).numpy()
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_bias_free_file_into_biased_resnet50_sets_zero_biases(tmp_path, keras_resnet50_file):
    """The reverse direction: a bias-free tfvid file (detected by its array count) loads into
    the default Keras-layout ResNet-50 with all conv biases zero; features stay equal."""
    reference, path = keras_resnet50_file
    free = build_backbone("resnet50", weights=path, input_shape=(64, 64, 3), conv_bias=False)
    free_path = str(tmp_path / "free.weights.h5")
    free.save_weights(free_path)
    biased = build_backbone("resnet50", weights=free_path, input_shape=(64, 64, 3))
    convs = [l for l in biased.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 53 and all(l.use_bias and not l.bias.numpy().any() for l in convs)
    x = _images((2, 64, 64, 3))
    np.testing.assert_allclose(biased(x, training=False).numpy(),
                               reference(x, training=False).numpy(), rtol=1e-4, atol=1e-4)


def test_bias_folding_is_exact_in_training_mode_too():
    """With batch statistics the bias cancels in the batch mean: same outputs as well."""
    source = _randomize(build_backbone("tiny", input_shape=(32, 32, 3), conv_bias=True), seed=4)
    target = build_backbone("tiny", input_shape=(32, 32, 3), conv_bias=False)
    loaded = weights_lib.copy_weights_by_name(source, target)
    assert "conv1_conv" in loaded and "conv1_bn" in loaded
    x = _images((4, 32, 32, 3), seed=2)
    for training in (False, True):
        np.testing.assert_allclose(target(x, training=training).numpy(),
                                   source(x, training=training).numpy(), rtol=1e-4, atol=1e-4)


def test_biased_conv_without_a_following_bn_cannot_be_folded():
    def small(use_bias):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, use_bias=use_bias, name="head_conv")(inputs)
        x = keras.layers.BatchNormalization(name="other_bn")(keras.layers.ReLU()(x))
        return keras.Model(inputs, x)

    with pytest.raises(ValueError, match="head_conv.*feeds no BatchNormalization"):
        weights_lib.copy_weights_by_name(small(True), small(False))
