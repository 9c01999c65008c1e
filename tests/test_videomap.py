"""tfvid.models.videomap and tfvid.layers.temporal_attention: VideoMap head ConvNet with
hierarchical temporal attention (docs/videomap.md)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from tfvid.layers.temporal_attention import (ColumnPooling, PoolAttention, ScaleRows,
                                             TemporalAttention)
from tfvid.models import build, build_videomap, videomap_attention
from tfvid.models.din import transfer_head_weights
from tfvid.models.videomap import min_frames, videomap_head_param_count

CLASSES, T, D = 5, 16, 16
SMALL = dict(filters=(4, 6, 8), attention_filters=(2, 3))
HEAD = dict(SMALL, feature_dim=D, num_frames=T)


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def features(b=2, t=T, d=D, seed=1):
    return np.random.default_rng(seed).uniform(0, 2, size=(b, t, d)).astype("float32")


def head(seed=0, **kw):
    keras.utils.set_random_seed(seed)
    return build_videomap(CLASSES, **dict(HEAD, **kw))


# ----------------------------------------------------------------------------- paper sizes
def test_default_head_parameter_counts():
    """Defaults (T 256, D 1024): convs 257,024 + attention 529,600 + classifier 129 C."""
    m = build_videomap(51)
    assert m.input_shape == (None, 256, 1024) and m.output_shape == (None, 51)
    assert [trainable(m.get_layer(f"conv{i}")) for i in (1, 2, 3)] == [832, 51_264, 204_928]
    assert trainable(m.get_layer("att_conv1")) + trainable(m.get_layer("att_conv2")) == 13_248
    assert trainable(m.get_layer("attention_a0")) == (63 * 32 + 1) * 256 == 516_352
    assert trainable(m.get_layer("fc")) == 129 * 51
    assert trainable(m) == 786_624 + 129 * 51 == 793_203 == videomap_head_param_count(51)
    assert m.get_layer("pool1").output.shape == (None, 127, 511, 32)
    assert m.get_layer("attention_a1").output.shape == (None, 127)
    assert m.get_layer("attention_a2").output.shape == (None, 63)
    assert m.get_layer("pool3").output.shape == (None, 31, 127, 128)
    plain = build_videomap(51, attention="none")
    assert trainable(plain) == 257_024 + 129 * 51 == videomap_head_param_count(51,
                                                                               attention="none")


def test_tiny_parameter_counts_per_mode():
    convs = (25 * 4 + 4) + (25 * 4 * 6 + 6) + (25 * 6 * 8 + 8)
    attention = (25 * 2 + 2) + (25 * 2 * 3 + 3) + (3 * 3 + 1) * T      # T=16 -> 7 -> 3 rows
    fc = 8 * CLASSES + CLASSES
    for mode, expected in (("none", convs + fc), ("a0", convs + attention + fc),
                           ("a1a2", convs + attention + fc), ("all", convs + attention + fc)):
        m = head(attention=mode)
        assert trainable(m) == expected == videomap_head_param_count(
            CLASSES, T, D, SMALL["filters"], SMALL["attention_filters"], mode), mode
        names = {layer.name for layer in m.layers}
        attended = {n for n in names if n.startswith("attend_f")}
        assert attended == {"none": set(), "a0": {"attend_f0"},
                            "a1a2": {"attend_f1", "attend_f2"},
                            "all": {"attend_f0", "attend_f1", "attend_f2"}}[mode]
        assert m(features(), training=False).shape == (2, CLASSES)
    flat = head(classifier_pooling="flatten")
    assert trainable(flat.get_layer("fc")) == (1 * 1 * 8) * CLASSES + CLASSES   # 16 -> 1 row


# ----------------------------------------------------------------------------- attention
def test_attention_vector_and_equation_2_at_the_input():
    """a0 is (B, T) in (0, 1); with attention 'a0' the model equals the attention-free head
    (same conv / fc weights) applied to the VideoMap multiplied row-wise by a0."""
    x = features()
    m = head(attention="a0", dropout=0.0)
    a0 = videomap_attention(m, x)
    assert a0.shape == (2, T) and np.all((a0 > 0) & (a0 < 1))
    plain = head(attention="none", dropout=0.0, seed=9)
    assert set(transfer_head_weights(m, plain)) == {"conv1", "conv2", "conv3", "fc"}
    np.testing.assert_allclose(m(x, training=False).numpy(),
                               plain(x * a0[:, :, None], training=False).numpy(),
                               rtol=1e-4, atol=1e-5)
    a1 = videomap_attention(head(), x, level=1)
    assert a1.shape == (2, 7)
    soft = videomap_attention(head(attention_activation="softmax"), x)
    np.testing.assert_allclose(soft.mean(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="attention='none'"):
        videomap_attention(plain, x)


def test_pool_attention_matches_the_head_row_pooling():
    a = np.random.default_rng(2).uniform(size=(2, T)).astype("float32")
    pooled = PoolAttention()(a).numpy()
    expected = np.stack([a[:, 2 * i:2 * i + 3].max(axis=1) for i in range(7)], axis=1)
    np.testing.assert_array_equal(pooled, expected)
    rows = keras.layers.MaxPooling2D(3, 2, padding="valid")(np.zeros((1, T, D, 1), "float32"))
    assert rows.shape[1] == pooled.shape[1]
    x = np.random.default_rng(3).normal(size=(2, T, 3, 2)).astype("float32")
    np.testing.assert_allclose(ScaleRows()([x, a]).numpy(), x * a[:, :, None, None], rtol=1e-6)


# ----------------------------------------------------------------------------- order
def test_reversing_time_changes_videomap_but_not_tsn_average():
    x = features(b=1)
    for mode in ("all", "none"):
        m = head(attention=mode)
        forward = m(x, training=False).numpy()
        assert np.abs(forward - m(x[:, ::-1], training=False).numpy()).max() > 1e-5, mode
    keras.utils.set_random_seed(2)
    tsn = build("tsn", CLASSES, backbone="tiny", width=0.25, input_size=32, num_segments=3,
                consensus="avg")
    clip = np.random.default_rng(3).normal(size=(1, 3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(tsn(clip, training=False).numpy(),
                               tsn(clip[:, ::-1], training=False).numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- refusals
def test_too_short_videomaps_are_refused():
    assert min_frames(3) == 15
    with pytest.raises(ValueError, match="minimum is T=15"):
        build_videomap(CLASSES, num_frames=14)
    with pytest.raises(ValueError, match="minimum is T=15"):
        build_videomap(CLASSES, num_frames=8, attention="none")
    with pytest.raises(ValueError, match="minimum is D=15"):
        build_videomap(CLASSES, num_frames=T, feature_dim=8, **SMALL)
    with pytest.raises(ValueError, match="fixed num_frames"):
        build_videomap(CLASSES, num_frames=None)
    with pytest.raises(ValueError, match="attention"):
        build_videomap(CLASSES, attention="a2")
    assert head(num_frames=15).output_shape == (None, CLASSES)


def test_variable_t_without_attention():
    m = head(num_frames=None, attention="none")
    assert m.input_shape == (None, None, D)
    for t in (15, 25, 32):
        assert m(features(t=t), training=False).shape == (2, CLASSES)


# ----------------------------------------------------------------------------- serialisation
def test_layer_configs_round_trip():
    for layer in (ColumnPooling("max"), TemporalAttention(7, activation="softmax"),
                  PoolAttention(3, 2, "same"), ScaleRows()):
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config


def test_save_and_load_keras_file(tmp_path):
    m = head()
    path = str(tmp_path / "videomap.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    x = features()
    np.testing.assert_allclose(loaded(x, training=False).numpy(), m(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(videomap_attention(loaded, x), videomap_attention(m, x),
                               rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- end to end
def test_end_to_end_equals_head_on_backbone_features():
    keras.utils.set_random_seed(4)
    frames_t = 15
    e2e = build_videomap(CLASSES, backbone="tiny", width=0.25, input_size=32,
                         num_frames=frames_t, **SMALL)
    assert e2e.input_shape == (None, frames_t, 32, 32, 3)
    net = e2e.get_layer("tiny")
    dim = net.output_shape[-1]
    other = build_videomap(CLASSES, feature_dim=dim, num_frames=frames_t, **SMALL)
    copied = transfer_head_weights(e2e, other)
    assert {"conv1", "att_conv1", "attention_a0", "fc"} <= set(copied)
    clip = np.random.default_rng(5).normal(size=(1, frames_t, 32, 32, 3)).astype("float32")
    feats = net(clip.reshape(-1, 32, 32, 3), training=False).numpy().reshape(1, frames_t, dim)
    expected = other(feats, training=False).numpy()
    assert np.abs(expected).max() > 1e-5
    np.testing.assert_allclose(e2e(clip, training=False).numpy(), expected, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(videomap_attention(e2e, clip), videomap_attention(other, feats),
                               rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- training
def test_training_lowers_the_loss():
    m = head(dropout=0.0, filters=(8, 8, 8))
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 2, size=(16, T, D)).astype("float32")
    y = rng.integers(0, CLASSES, size=16)
    m.compile(optimizer=keras.optimizers.Adam(1e-2),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = m.evaluate(x, y, verbose=0)
    m.fit(x, y, batch_size=8, epochs=25, verbose=0)
    after = m.evaluate(x, y, verbose=0)
    assert after < 0.7 * before
