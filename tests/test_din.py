"""tfvid.models.din and tfvid.layers.dense_image: DenseImage Network (docs/din.md)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from tfvid.layers.dense_image import DenseImageConv, dense_image_conv_param_count
from tfvid.models import build, build_din
from tfvid.models.din import din_head_param_count, transfer_head_weights

CLASSES, T, D = 5, 8, 16
HEAD = dict(feature_dim=D, num_frames=T, embed_dim=8, filters=6)
FRAMES = dict(backbone="tiny", width=0.25, input_size=32, num_frames=T, embed_dim=8, filters=6)


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def features(b=2, t=T, d=D, seed=1):
    return np.random.default_rng(seed).normal(size=(b, t, d)).astype("float32")


def head(seed=0, **kw):
    keras.utils.set_random_seed(seed)
    return build_din(CLASSES, **dict(HEAD, **kw))


# ----------------------------------------------------------------------------- paper sizes
def test_paper_head_parameter_counts():
    """Dense 262,400 + convs sum_h (65,536 h + 256) = 1,312,000 + classifiers 5 (256 C + C)."""
    for classes in (174, 27):
        m = build_din(classes)
        assert m.input_shape == (None, 8, 1024) and m.output_shape == (None, classes)
        assert trainable(m.get_layer("embed")) == 262_400
        assert trainable(m.get_layer("dense_image_conv")) == 1_312_000
        for h in (2, 3, 4, 5, 6):
            assert trainable(m.get_layer(f"fc_h{h}")) == 256 * classes + classes
            assert m.get_layer("dense_image_conv").convs[h - 2].kernel.shape == (h, 256, 256)
        assert trainable(m) == 1_574_400 + 1_285 * classes == din_head_param_count(classes)
    assert trainable(build_din(174)) == 1_797_990
    assert dense_image_conv_param_count(256) == 1_312_000


def test_tiny_parameter_count_and_shapes():
    m = head()
    expected = (D * 8 + 8) + sum(h * 8 * 6 + 6 for h in (2, 3, 4, 5, 6)) + 5 * (6 * CLASSES
                                                                               + CLASSES)
    assert trainable(m) == expected == din_head_param_count(CLASSES, D, 8, filters=6)
    assert m.output_shape == (None, CLASSES)
    assert m(features(), training=False).shape == (2, CLASSES)
    names = [layer.name for layer in m.layers]
    for name in ("feature_dropout", "embed", "dense_image_conv", "dropout_h2", "fc_h6",
                 "sum_scores"):
        assert name in names


def test_scores_are_the_sum_of_the_width_classifiers():
    """Equation 5 with a numpy reference: valid conv per width, ReLU, max over time, fc, sum."""
    m = head(widths=(2, 3), dropout=0.0, feature_dropout=0.0)
    x = features()
    embed = x @ m.get_layer("embed").kernel.numpy() + m.get_layer("embed").bias.numpy()
    total = 0
    for h, conv in zip((2, 3), m.get_layer("dense_image_conv").convs):
        k, b = conv.kernel.numpy(), conv.bias.numpy()            # (h, K, M)
        windows = np.stack([np.einsum("bhk,hkm->bm", embed[:, i:i + h], k) + b
                            for i in range(T - h + 1)], axis=1)   # (B, T - h + 1, M)
        c = np.maximum(windows, 0).max(axis=1)
        fc = m.get_layer(f"fc_h{h}")
        total = total + c @ fc.kernel.numpy() + fc.bias.numpy()
    np.testing.assert_allclose(m(x, training=False).numpy(), total, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- order
def test_reversing_time_changes_din_but_not_tsn_average():
    m = head()
    x = features(b=1)
    forward = m(x, training=False).numpy()
    assert np.abs(forward - m(x[:, ::-1], training=False).numpy()).max() > 1e-4

    keras.utils.set_random_seed(2)
    tsn = build("tsn", CLASSES, backbone="tiny", width=0.25, input_size=32, num_segments=3,
                consensus="avg")
    clip = np.random.default_rng(3).normal(size=(1, 3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(tsn(clip, training=False).numpy(),
                               tsn(clip[:, ::-1], training=False).numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- refusals
def test_width_wider_than_t_is_refused():
    with pytest.raises(ValueError, match=r"h=6.*T=num_frames=5"):
        build_din(CLASSES, num_frames=5)
    with pytest.raises(ValueError, match=r"h=4.*T=num_frames=3"):
        build_din(CLASSES, num_frames=3, widths=(2, 4))
    build_din(CLASSES, num_frames=4, widths=(2, 3, 4), feature_dim=D, embed_dim=4, filters=2)
    with pytest.raises(ValueError, match="feature_dim"):
        build_din(CLASSES, backbone="tiny", width=0.25, input_size=32, feature_dim=1024)


def test_variable_t_checks_at_call_time():
    m = head(num_frames=None)
    assert m.input_shape == (None, None, D)
    assert m(features(t=6), training=False).shape == (2, CLASSES)
    assert m(features(t=20), training=False).shape == (2, CLASSES)
    with pytest.raises(ValueError, match="h=6"):
        m(features(t=4), training=False)
    # in a graph with an unknown T the check is a TensorFlow assertion
    import tensorflow as tf
    graph = tf.function(m.__call__, input_signature=[tf.TensorSpec((None, None, D))])
    assert graph(features(t=8)).shape == (2, CLASSES)
    with pytest.raises(tf.errors.InvalidArgumentError, match="h=6"):
        graph(features(t=4))


# ----------------------------------------------------------------------------- serialisation
def test_layer_config_round_trip():
    layer = DenseImageConv(widths=(2, 4), filters=3, name="dic")
    config = layer.get_config()
    assert config["widths"] == [2, 4] and config["filters"] == 3
    clone = DenseImageConv.from_config(config)
    assert clone.get_config() == config
    x = features(t=5, d=4)
    out = layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    assert [tuple(o.shape) for o in out] == [(2, 3), (2, 3)]
    for a, b in zip(out, clone(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_save_and_load_keras_file(tmp_path):
    m = head()
    path = str(tmp_path / "din.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    x = features()
    np.testing.assert_allclose(loaded(x, training=False).numpy(), m(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- end to end
def test_end_to_end_equals_head_on_backbone_features():
    """The frames model == backbone features (same weights) through the head-only model."""
    keras.utils.set_random_seed(4)
    e2e = build_din(CLASSES, **FRAMES)
    assert e2e.input_shape == (None, T, 32, 32, 3) and e2e.output_shape == (None, CLASSES)
    net = e2e.get_layer("tiny")
    dim = net.output_shape[-1]
    other = build_din(CLASSES, feature_dim=dim, num_frames=T, embed_dim=8, filters=6)
    copied = transfer_head_weights(e2e, other)
    assert {"embed", "dense_image_conv", "fc_h2", "fc_h6"} <= set(copied)
    clip = np.random.default_rng(5).normal(size=(2, T, 32, 32, 3)).astype("float32")
    feats = net(clip.reshape(-1, 32, 32, 3), training=False).numpy().reshape(2, T, dim)
    expected = other(feats, training=False).numpy()
    assert np.abs(expected).max() > 1e-4
    np.testing.assert_allclose(e2e(clip, training=False).numpy(), expected, rtol=1e-4,
                               atol=1e-5)
    # partial BN: only the backbone's first BatchNormalization learns
    bns = [l for l in net.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns[0].trainable and not any(l.trainable for l in bns[1:])


def test_shared_keywords_work_for_both_models():
    shared = dict(backbone=None, feature_dim=D, num_frames=16, input_size=224, width=1.0,
                  weights=None)
    for name in ("din", "videomap"):
        kw = dict(shared, filters=(4, 4, 4), attention_filters=(2, 2)) if name == "videomap" \
            else dict(shared, embed_dim=4, filters=4)
        m = build(name, CLASSES, **kw)
        assert m.input_shape == (None, 16, D) and m.output_shape == (None, CLASSES)


# ----------------------------------------------------------------------------- training
def test_training_lowers_the_loss():
    m = head(dropout=0.0, feature_dropout=0.0)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(16, T, D)).astype("float32")
    y = rng.integers(0, CLASSES, size=16)
    m.compile(optimizer=keras.optimizers.Adam(1e-2),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = m.evaluate(x, y, verbose=0)
    m.fit(x, y, batch_size=8, epochs=15, verbose=0)
    after = m.evaluate(x, y, verbose=0)
    assert after < 0.5 * before
