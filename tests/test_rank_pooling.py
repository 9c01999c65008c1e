"""Approximate and exact rank pooling (docs/dynamic_images.md): coefficients, properties,
the Keras layer (gradient, shapes, serialisation), display conversions, RP and Table 2's metric."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvid.prep import rank_pooling as rpn
from tfvid.layers.rank_pooling import (ApproximateRankPooling, arp_coefficients,
                                       caffenet_normalize, dynamic_image_to_uint8)

EXPECTED = {1: [1.0], 2: [-0.5, 0.5], 3: [-4 / 3, 2 / 3, 2 / 3], 5: [-3.7, 0.3, 1.3, 1.3, 0.8]}


def paper_alpha(T):
    """The paper's eq. (3): 2(T - t + 1) - (T + 1)(H_T - H_{t-1}), t = 1..T."""
    H = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, T + 1))])
    t = np.arange(1, T + 1)
    return 2.0 * (T - t + 1) - (T + 1) * (H[T] - H[t - 1])


# ------------------------------------------------------------------------- coefficients
@pytest.mark.parametrize("T", sorted(EXPECTED))
def test_coefficient_values(T):
    static = arp_coefficients(T)
    dynamic = arp_coefficients(tf.constant(T))
    assert static.dtype == tf.float32 and static.shape == (T,)
    np.testing.assert_allclose(static.numpy(), EXPECTED[T], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dynamic.numpy(), EXPECTED[T], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rpn.arp_weights(T), EXPECTED[T], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T", [2, 3, 4, 7, 10, 25, 64])
def test_coefficient_properties(T):
    alpha = rpn.arp_weights(T)
    np.testing.assert_allclose(alpha, paper_alpha(T), atol=1e-9)       # eq. (3)
    assert abs(alpha.sum()) < 1e-9                                      # zero sum
    t = np.arange(1, T + 1)
    np.testing.assert_allclose((t * alpha).sum(), T * (T * T - 1) / 12.0, rtol=1e-9)
    np.testing.assert_allclose(arp_coefficients(tf.constant(T)).numpy(), alpha, atol=1e-4)


@pytest.mark.parametrize("T", [2, 3, 5, 10])
def test_not_the_2j_minus_T_variant(T):
    """A third-party port sums (2j - T)/j: its weights do not sum to zero; ours do."""
    j = np.arange(1, T + 1)
    variant = np.cumsum(((2.0 * j - T) / j)[::-1])[::-1]
    assert abs(variant.sum()) > 0.5
    assert not np.allclose(arp_coefficients(T).numpy(), variant, atol=1e-3)
    assert abs(float(tf.reduce_sum(arp_coefficients(T)))) < 1e-5


def test_coefficients_reject_empty_window():
    with pytest.raises(ValueError, match="T=0"):
        arp_coefficients(0)


# -------------------------------------------------------------------------------- layer
@pytest.mark.parametrize("T,expected", [(3, 2.0), (5, 10.0), (10, 82.5)])
def test_linear_ramp(T, expected):
    """frame_t = t (1-based) gives DI = T(T^2 - 1)/12 everywhere."""
    ramp = np.broadcast_to(np.arange(1, T + 1, dtype=np.float32)[None, :, None, None, None],
                           (2, T, 3, 4, 3))
    di = ApproximateRankPooling()(ramp).numpy()
    np.testing.assert_allclose(di, expected, rtol=1e-5)
    np.testing.assert_allclose(rpn.approximate_rank_pool(ramp[0]), expected, rtol=1e-5)


def test_layer_matches_weighted_sum_and_constant_invariance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 5, 4, 3)).astype(np.float32)
    alpha = rpn.arp_weights(6)
    expected = np.tensordot(alpha, x, axes=(0, 1))
    layer = ApproximateRankPooling()
    out = layer(x).numpy()
    assert out.shape == (2, 5, 4, 3)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    np.testing.assert_allclose(layer(x + 37.0).numpy(), out, atol=1e-3)     # sum alpha = 0
    np.testing.assert_allclose(rpn.approximate_rank_pool(x, axis=1), expected, atol=1e-4)
    # uint8 pixels are accepted and pooled as floats
    pix = rng.integers(0, 256, (1, 6, 5, 4, 3)).astype(np.uint8)
    np.testing.assert_allclose(layer(pix).numpy()[0],
                               np.tensordot(alpha, pix[0].astype(np.float64), axes=(0, 0)),
                               rtol=1e-5, atol=1e-3)


def test_single_frame_window_is_identity():
    x = np.random.default_rng(1).normal(size=(2, 1, 3, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(ApproximateRankPooling()(x).numpy(), x[:, 0], atol=1e-6)


def test_dynamic_map_setting_on_feature_maps():
    """Feature maps (B, T, h, w, c) with scale 0.1 then ReLU, as dynamic maps are built."""
    x = np.random.default_rng(2).normal(size=(3, 10, 7, 7, 16)).astype(np.float32)
    out = ApproximateRankPooling(scale=0.1, activation="relu")(x).numpy()
    expected = np.maximum(0.1 * np.tensordot(rpn.arp_weights(10), x, axes=(0, 1)), 0.0)
    assert out.shape == (3, 7, 7, 16)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert (out == 0).any() and (out > 0).any()


def test_other_axes_and_unknown_time_length():
    x = np.random.default_rng(3).normal(size=(2, 4, 5, 7)).astype(np.float32)   # time last
    out = ApproximateRankPooling(axis=-1)(x).numpy()
    np.testing.assert_allclose(out, np.tensordot(x, rpn.arp_weights(7), axes=(3, 0)), atol=1e-5)

    fn = tf.function(ApproximateRankPooling(axis=1),
                     input_signature=[tf.TensorSpec([None, None, 4, 4, 3], tf.float32)])
    for T in (1, 3, 8):
        v = np.random.default_rng(T).normal(size=(2, T, 4, 4, 3)).astype(np.float32)
        np.testing.assert_allclose(fn(v).numpy(), np.tensordot(rpn.arp_weights(T), v, (0, 1)),
                                   atol=1e-4)
    inp = keras.Input((None, 8, 8, 3))
    model = keras.Model(inp, ApproximateRankPooling()(inp))
    assert model.output_shape == (None, 8, 8, 3)
    with pytest.raises(ValueError, match="batch axis"):
        ApproximateRankPooling(axis=0)


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_gradient_is_alpha_times_upstream(scale):
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(2, 5, 3, 3, 2)), tf.float32)
    upstream = tf.constant(rng.normal(size=(2, 3, 3, 2)), tf.float32)
    layer = ApproximateRankPooling(scale=scale)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    grad = tape.gradient(y, x, output_gradients=upstream).numpy()
    alpha = scale * rpn.arp_weights(5)
    expected = alpha[None, :, None, None, None] * upstream.numpy()[:, None]
    np.testing.assert_allclose(grad, expected, atol=1e-5)
    # the same for other data: the weights do not depend on the frames
    with tf.GradientTape() as tape:
        x2 = 5.0 * x + 3.0
        tape.watch(x2)
        y2 = layer(x2)
    np.testing.assert_allclose(tape.gradient(y2, x2, output_gradients=upstream).numpy(),
                               expected, atol=1e-5)


def test_serialisation_round_trip(tmp_path):
    layer = ApproximateRankPooling(axis=1, scale=0.1, activation="relu", name="arp")
    cfg = layer.get_config()
    assert cfg["axis"] == 1 and cfg["scale"] == 0.1 and cfg["activation"] == "relu"
    clone = ApproximateRankPooling.from_config(cfg)
    assert clone.get_config() == cfg
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, ApproximateRankPooling) and restored.scale == 0.1

    inp = keras.Input((4, 6, 6, 3))
    x = ApproximateRankPooling(scale=0.1, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(2, 3)(x))
    path = str(tmp_path / "arp.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    data = np.random.default_rng(5).normal(size=(2, 4, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(data).numpy(), model(data).numpy(), atol=1e-6)


# ------------------------------------------------------------------- display conversions
def test_uint8_display_uses_one_global_min_max():
    di = np.zeros((2, 2, 3), np.float32)
    di[..., 0] = [[-10.0, 0.0], [5.0, 10.0]]        # wide channel sets the global range
    di[..., 1] = [[0.0, 1.0], [0.0, 1.0]]           # narrow channel must NOT be stretched
    di[..., 2] = 0.0
    out = dynamic_image_to_uint8(di).numpy()
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], [[0, 128], [191, 255]])  # 127.5 rounds up
    np.testing.assert_array_equal(out[..., 1], [[128, 140], [128, 140]])  # 140.25 -> 140
    assert out[..., 1].max() < 255                   # a per-channel min-max would give 255
    batch = dynamic_image_to_uint8(np.stack([di, 3 * di + 1])).numpy()
    np.testing.assert_array_equal(batch[0], out)
    np.testing.assert_array_equal(batch[1], out)     # per image, affine invariant
    np.testing.assert_array_equal(dynamic_image_to_uint8(np.full((2, 2, 3), 4.0)).numpy(), 0)


def test_caffenet_normalisation():
    rng = np.random.default_rng(6)
    di = rng.uniform(0.5, 1.0, (40, 40, 3)).astype(np.float32)    # 4800 values: none clipped
    out = caffenet_normalize(di).numpy()
    np.testing.assert_allclose(np.linalg.norm(out), 6000.0, rtol=1e-4)
    np.testing.assert_allclose(out / di, (out / di).flat[0], rtol=1e-4)   # one global scale
    spiky = np.zeros((8, 8, 3), np.float32)
    spiky[0, 0, 0], spiky[1, 1, 1] = 1.0, -0.5
    out = caffenet_normalize(spiky).numpy()
    assert out[0, 0, 0] == 128.0 and out[1, 1, 1] == -128.0 and np.abs(out).max() == 128.0
    np.testing.assert_array_equal(caffenet_normalize(np.zeros((4, 4, 3))).numpy(), 0.0)


# --------------------------------------------------------------------- exact RP, metric
def test_pairwise_ranking_accuracy_by_hand():
    up = np.arange(4, dtype=np.float32).reshape(4, 1)          # frames 0, 1, 2, 3
    assert rpn.pairwise_ranking_accuracy(up, [1.0]) == 100.0
    assert rpn.pairwise_ranking_accuracy(up, [-1.0]) == 0.0
    zig = np.array([[0.0], [2.0], [1.0]])
    # frames: pairs (1,2) ok, (1,3) ok, (2,3) wrong -> 2/3
    assert rpn.pairwise_ranking_accuracy(zig, [1.0], representation="frames") == \
        pytest.approx(200.0 / 3)
    # time-varying means 0, 1, 1: the tie (2,3) counts as wrong
    assert rpn.pairwise_ranking_accuracy(zig, [1.0]) == pytest.approx(200.0 / 3)
    with pytest.raises(ValueError, match="d has 2 values"):
        rpn.pairwise_ranking_accuracy(zig, [1.0, 2.0])


def trend_video(T=30, size=(24, 32), seed=0):
    """A bright square sliding right over a noisy background: a clear temporal trend."""
    rng = np.random.default_rng(seed)
    h, w = size
    frames = rng.integers(40, 80, (T, h, w, 3)).astype(np.float32)
    for t in range(T):
        x0 = int(round(t * (w - 8) / (T - 1)))
        frames[t, 8:16, x0:x0 + 8] += 150
    frames += rng.normal(0, 4, frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["svr", "ranksvm"])
def test_exact_rank_pooling_ranks_its_video(method):
    frames = trend_video()
    d = rpn.exact_rank_pool(frames, method=method)
    assert d.shape == frames.shape[1:] and d.dtype == np.float32
    acc = rpn.pairwise_ranking_accuracy(frames, d)
    assert acc > 90.0, acc
    # d captures the motion, not the noise: it also orders the frames themselves of another
    # video with the same motion and other noise (any T-frame sequence in high dimension can
    # be ranked on its own means, so the first check alone proves little)
    other = trend_video(seed=7)
    assert rpn.pairwise_ranking_accuracy(other, d, representation="frames") > 85.0


def test_exact_rank_pooling_reference_options_and_arp_agree():
    frames = trend_video(seed=1)
    opts = dict(nonlinearity="ssr", l2_normalize=True)
    d = rpn.exact_rank_pool(frames, **opts)
    assert rpn.pairwise_ranking_accuracy(frames, d, **opts) > 90.0
    assert rpn.pairwise_ranking_accuracy(trend_video(seed=8), d, **opts) > 90.0
    d_arp = rpn.approximate_rank_pool(frames)
    assert rpn.pairwise_ranking_accuracy(frames, d_arp) > 90.0
    # RP and ARP point the same way (positive correlation over pixels)
    assert np.corrcoef(d.ravel(), d_arp.ravel())[0, 1] > 0.3
    with pytest.raises(ValueError, match="method"):
        rpn.exact_rank_pool(frames, method="lsq")
    with pytest.raises(ValueError, match="at least 2 frames"):
        rpn.exact_rank_pool(frames[:1])
