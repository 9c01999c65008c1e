"""TSN builder, partial BN and the model registry (docs/tsn.md, "Model")."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvid import models
from tfvid.layers import apply_partial_bn, batch_norm_layers
from tfvid.models import build, build_tsn, register_model

SIZE = 64
TINY = dict(backbone="tiny", input_size=SIZE)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _snippets(b, k, c, seed=0):
    return np.random.default_rng(seed).normal(size=(b, k, SIZE, SIZE, c)).astype("float32")


# ----------------------------------------------------------------------------- partial BN
def _nested_bn_model():
    """conv-BN backbone nested inside an outer model with one more BN in the head."""
    inner_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inner_in)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(4, 3, name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    inner = keras.Model(inner_in, x, name="inner")
    outer_in = keras.Input((8, 8, 3))
    y = inner(outer_in)
    y = keras.layers.BatchNormalization(name="bn3")(y)
    y = keras.layers.Dense(2, name="fc")(y)
    return keras.Model(outer_in, y, name="outer")


def test_partial_bn_names_and_flags():
    model = _nested_bn_model()
    result = apply_partial_bn(model)
    assert result.learning == ["inner/bn1"]
    assert result.frozen == ["inner/bn2", "bn3"]
    flags = {path: layer.trainable for path, layer in batch_norm_layers(model)}
    assert flags == {"inner/bn1": True, "inner/bn2": False, "bn3": False}


def test_partial_bn_training_step_updates_only_first_bn():
    keras.utils.set_random_seed(0)
    model = _nested_bn_model()
    apply_partial_bn(model)
    bns = dict(batch_norm_layers(model))
    before = {p: [_np(v).copy() for v in (l.moving_mean, l.gamma, l.beta)]
              for p, l in bns.items()}
    trainable_ids = {id(v) for v in model.trainable_variables}
    # Only the first BN's gamma/beta are trainable among BN variables; conv/dense still learn.
    for path, layer in bns.items():
        expected = path == "inner/bn1"
        assert (id(layer.gamma) in trainable_ids) is expected
        assert (id(layer.beta) in trainable_ids) is expected
    assert {"c1", "c2", "fc"} <= {v.path.split("/")[-2] for v in model.trainable_variables}

    x = np.random.default_rng(0).normal(3.0, 2.0, size=(8, 8, 8, 3)).astype("float32")
    y = np.array([0, 1] * 4)
    opt = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(
            y, model(x, training=True), from_logits=True)
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    opt.apply_gradients(zip(grads, model.trainable_variables))

    for path, layer in bns.items():
        after = [_np(v) for v in (layer.moving_mean, layer.gamma, layer.beta)]
        changed = [not np.allclose(a, b) for a, b in zip(after, before[path])]
        if path == "inner/bn1":
            assert changed == [True, True, True], path
        else:
            assert changed == [False, False, False], path


def test_partial_bn_without_bn_is_a_no_op():
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    assert apply_partial_bn(model) == ([], [])


# ---------------------------------------------------------------------------------- TSN
@pytest.mark.parametrize("modality, channels", [("rgb", 3), ("flow", 10), ("rgbdiff", 15)])
def test_output_shapes_per_modality(modality, channels):
    model = build_tsn(7, modality=modality, num_segments=3, **TINY)
    assert model.input_shape == (None, 3, SIZE, SIZE, channels)
    assert model.output_shape == (None, 7)
    out = _np(model(_snippets(2, 3, channels)))
    assert out.shape == (2, 7) and np.all(np.isfinite(out))


def test_new_length_sets_channels():
    assert build_tsn(4, modality="flow", new_length=3, **TINY).input_shape[-1] == 6
    assert build_tsn(4, modality="rgbdiff", new_length=3, **TINY).input_shape[-1] == 6


@pytest.mark.parametrize("modality, rate", [("rgb", 0.8), ("flow", 0.7), ("rgbdiff", 0.7)])
def test_dropout_rate_per_modality(modality, rate):
    model = build_tsn(5, modality=modality, **TINY)
    assert model.get_layer("dropout").rate == pytest.approx(rate)
    assert build_tsn(5, modality=modality, dropout=0.5, **TINY).get_layer(
        "dropout").rate == pytest.approx(0.5)


def test_segment_logits_are_the_shared_net_on_each_snippet():
    """The consensus input equals the per-snippet network applied to each snippet alone."""
    keras.utils.set_random_seed(1)
    model = build_tsn(6, num_segments=3, consensus="max", **TINY)
    x = _snippets(2, 3, 3, seed=1)
    seg = keras.Model(model.input, model.get_layer("segment_logits").output)
    per_segment = _np(seg(x))                                       # (B, K, classes)
    for k in range(3):
        # K is fixed at 3: feed 3 copies of snippet k alone.
        alone = _np(seg(np.repeat(x[:, k:k + 1], 3, axis=1)))[:, 0]
        np.testing.assert_allclose(per_segment[:, k], alone, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(model(x)), per_segment.max(1), rtol=1e-5, atol=1e-6)


def test_average_consensus_is_order_blind():
    keras.utils.set_random_seed(2)
    model = build_tsn(5, num_segments=4, **TINY)
    # Non-trivial classifier weights so that logits differ between snippets.
    fc = model.get_layer("fc")
    fc.set_weights([np.random.default_rng(0).normal(size=w.shape).astype("float32")
                    for w in fc.get_weights()])
    x = _snippets(2, 4, 3, seed=2)
    perm = [2, 0, 3, 1]
    a, b = _np(model(x)), _np(model(x[:, perm]))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # The snippets really differ, so this is not trivially true.
    seg = _np(keras.Model(model.input, model.get_layer("segment_logits").output)(x))
    assert not np.allclose(seg[:, 0], seg[:, 1])


def test_variable_num_segments():
    model = build_tsn(4, num_segments=None, **TINY)
    assert model.input_shape == (None, None, SIZE, SIZE, 3)
    for k in (3, 5):
        assert _np(model(_snippets(2, k, 3, seed=k))).shape == (2, 4)
    # The same weights evaluate K=3 and K=25 snippets (training vs. the test protocol).
    fixed = build_tsn(4, num_segments=3, **TINY)
    fixed.set_weights(model.get_weights())
    x = _snippets(1, 3, 3, seed=9)
    np.testing.assert_allclose(_np(model(x)), _np(fixed(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("consensus", ["max", "topk", "weighted", "attention"])
def test_other_consensus_modes_build_and_run(consensus):
    model = build_tsn(3, num_segments=3, consensus=consensus, top_k=2, **TINY)
    assert _np(model(_snippets(2, 3, 3))).shape == (2, 3)


def test_partial_bn_in_tsn():
    keras.utils.set_random_seed(4)
    model = build_tsn(4, modality="flow", **TINY)
    bns = batch_norm_layers(model)
    flags = [layer.trainable for _, layer in bns]
    assert len(flags) > 1 and flags[0] is True and sum(flags) == 1
    before = [_np(layer.moving_mean).copy() for _, layer in bns]
    x = _snippets(2, 3, 10, seed=5) * 3.0 + 1.0
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            np.array([0, 3]), logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    keras.optimizers.SGD(0.01).apply_gradients(zip(grads, model.trainable_variables))
    changed = [not np.allclose(_np(layer.moving_mean), b) for (_, layer), b in zip(bns, before)]
    assert changed == [True] + [False] * (len(bns) - 1)
    model = build_tsn(4, partial_bn=False, **TINY)
    assert all(layer.trainable for _, layer in batch_norm_layers(model))


def test_save_and_load_keras(tmp_path):
    keras.utils.set_random_seed(3)
    model = build_tsn(5, modality="flow", num_segments=None, consensus="attention", **TINY)
    fc = model.get_layer("fc")
    fc.set_weights([np.random.default_rng(1).normal(size=w.shape).astype("float32")
                    for w in fc.get_weights()])
    model.get_layer("consensus").set_weights([np.random.default_rng(2).normal(
        size=model.get_layer("consensus").weights[0].shape).astype("float32")])
    path = str(tmp_path / "tsn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = _snippets(2, 3, 10, seed=4)
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), rtol=1e-5, atol=1e-6)
    # Partial BN flags survive the round trip.
    assert ([l.trainable for _, l in batch_norm_layers(loaded)]
            == [l.trainable for _, l in batch_norm_layers(model)])


@pytest.mark.parametrize("kwargs, choices", [
    (dict(modality="depth"), "rgbdiff"),
    (dict(backbone="vgg16"), "bninception"),
    (dict(consensus="median"), "attention"),
    (dict(consensus="weighted", num_segments=None), "num_segments"),
])
def test_bad_arguments(kwargs, choices):
    args = dict(TINY, **kwargs)
    with pytest.raises(ValueError, match=choices):
        build_tsn(3, **args)


# ----------------------------------------------------------------------------- registry
def test_registry_build_and_errors():
    assert models.MODELS["tsn"] is build_tsn
    model = build("tsn", 3, num_segments=2, **TINY)
    assert model.output_shape == (None, 3)
    with pytest.raises(ValueError, match="tsn"):
        build("no_such_model", 3)

    def fake(num_classes, **kwargs):
        inp = keras.Input((4,))
        return keras.Model(inp, keras.layers.Dense(num_classes)(inp))

    try:
        register_model("fake_for_test", fake)
        assert build("fake_for_test", 2).output_shape == (None, 2)
    finally:
        models.MODELS.pop("fake_for_test", None)
    with pytest.raises(TypeError):
        register_model("broken", 3)
