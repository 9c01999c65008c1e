"""tfvid.layers.temporal: StNet's temporal modelling block and temporal Xception block."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from tfvid.layers.temporal import (TemporalModelingBlock, TemporalXceptionBlock,
                                   txb_param_count)

RNG = np.random.default_rng(0)


def trainable(layer_or_model):
    return sum(int(np.prod(w.shape)) for w in layer_or_model.trainable_weights)


# ----------------------------------------------------------------------------- numpy references
def np_bn(x, gamma, beta, mean, var, eps=1e-5):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_depthwise_same(x, kernel, bias):
    """x (B, T, C), kernel (k, C), 'same' zero padding in time."""
    k = kernel.shape[0]
    pad = np.pad(x, ((0, 0), (k // 2, k // 2), (0, 0)))
    return sum(pad[:, i:i + x.shape[1]] * kernel[i] for i in range(k)) + bias


def np_txb(x, layer):
    w = {name: getattr(layer, name).get_weights() for name in
         ("bn_in", "long_dw1", "long_pw1", "long_bn", "long_dw2", "long_pw2", "short_pw", "bn_out")}
    v = np_bn(x, *w["bn_in"])
    long = np_depthwise_same(v, w["long_dw1"][0][:, :, 0], w["long_dw1"][1])
    long = long @ w["long_pw1"][0] + w["long_pw1"][1]
    long = np.maximum(np_bn(long, *w["long_bn"]), 0)
    long = np_depthwise_same(long, w["long_dw2"][0][:, :, 0], w["long_dw2"][1])
    long = long @ w["long_pw2"][0] + w["long_pw2"][1]
    short = v @ w["short_pw"][0] + w["short_pw"][1]
    return np.maximum(np_bn(long + short, *w["bn_out"]), 0)


def randomise(layer, seed=1):
    """Random weights everywhere, positive BN variances (so inference-mode BN is not identity)."""
    rng = np.random.default_rng(seed)
    values = []
    for v in layer.weights:
        a = rng.normal(0, 0.5, v.shape)
        if "variance" in v.path:
            a = rng.uniform(0.5, 2.0, v.shape)
        values.append(a.astype("float32"))
    layer.set_weights(values)


# ----------------------------------------------------------------------------- TXB
def test_txb_parameter_counts_match_reference():
    layer = TemporalXceptionBlock()
    layer.build((None, 7, 2048))
    assert trainable(layer) == 5_266_432 == txb_param_count(2048)
    # BN moving statistics are the only non-trainable weights: 2 * (2048 + 1024 + 1024)
    assert sum(int(np.prod(w.shape)) for w in layer.non_trainable_weights) == 8192

    # TXB on 1536-d InceptionResNet-v2 features + 400-way fc: paper Table 1, 4.6M
    inputs = keras.Input((25, 1536))
    x = TemporalXceptionBlock()(inputs)
    x = keras.layers.GlobalMaxPooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(400)(x))
    assert trainable(model) == 4_624_784 == txb_param_count(1536) + 1024 * 400 + 400
    assert round(trainable(model) / 1e6, 2) == 4.62


def test_txb_matches_numpy_reference_any_length():
    layer = TemporalXceptionBlock(width=3)
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, layer(inputs))
    randomise(layer)
    for t in (1, 2, 5, 9):
        x = RNG.normal(size=(2, t, 4)).astype("float32")
        got = model(x, training=False).numpy()
        assert got.shape == (2, t, 3)
        np.testing.assert_allclose(got, np_txb(x, layer), rtol=1e-4, atol=1e-5)


def test_txb_receptive_field_is_five_frames():
    """Long branch: two k=3 channel-wise convs -> an impulse at t spreads to t-2 .. t+2 only."""
    layer = TemporalXceptionBlock(width=4)
    layer.build((None, 11, 3))
    randomise(layer, seed=3)
    base = np.zeros((1, 11, 3), "float32")
    impulse = base.copy()
    impulse[0, 5] = 3.0
    diff = np.abs(layer(impulse, training=False).numpy() - layer(base, training=False).numpy())
    changed = np.nonzero(diff.max(axis=-1)[0] > 1e-6)[0]
    assert set(changed) <= {3, 4, 5, 6, 7} and 5 in changed


def test_txb_config_round_trip_and_errors():
    layer = TemporalXceptionBlock(width=8, kernel_size=5, epsilon=1e-3, momentum=0.5,
                                  name="txb")
    clone = TemporalXceptionBlock.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)).width == 8
    assert clone.compute_output_shape((None, 7, 16)) == (None, 7, 8)
    with pytest.raises(ValueError, match="width"):
        TemporalXceptionBlock(width=0)
    with pytest.raises(ValueError, match="kernel_size"):
        TemporalXceptionBlock(kernel_size=2)
    with pytest.raises(ValueError, match=r"\(B, T, C\)"):
        TemporalXceptionBlock().build((None, 7, 7, 16))


# ----------------------------------------------------------------------------- TM block
def tm_model(variant="official", channels=4, time=None):
    inputs = keras.Input((time, 3, 2, channels))
    block = TemporalModelingBlock(variant=variant, name="tm")
    return keras.Model(inputs, block(inputs)), block


def test_tm_block_parameter_count():
    block = TemporalModelingBlock()
    block.build((None, 7, 28, 28, 512))
    assert trainable(block) == 3 * 512 * 512 + 512 + 2 * 512 == 787_968
    block = TemporalModelingBlock()
    block.build((None, 7, 14, 14, 1024))
    assert trainable(block) == 3_148_800


@pytest.mark.parametrize("training", [False, True])
def test_zeroed_official_block_is_identity(training):
    model, block = tm_model()
    block.set_weights([np.zeros(w.shape, "float32") if "gamma" in w.path or "beta" in w.path
                       or "conv" in w.path else w.numpy() for w in block.weights])
    x = RNG.normal(size=(2, 5, 3, 2, 4)).astype("float32")
    np.testing.assert_allclose(model(x, training=training).numpy(), x, atol=1e-6)


def test_official_block_matches_numpy_reference():
    model, block = tm_model()
    randomise(block, seed=2)
    kernel, bias, gamma, beta, mean, var = block.get_weights()
    x = RNG.normal(size=(2, 6, 3, 2, 4)).astype("float32")
    pad = np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0), (0, 0)))
    conv = sum(pad[:, i:i + 6] @ kernel[i, 0, 0] for i in range(3)) + bias
    expected = x + np_bn(np.maximum(conv, 0), gamma, beta, mean, var)
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_paper_block_initialisation_averages_the_window():
    """Paper variant at init: kernel 1/(3C), BN identity, ReLU, no residual -> every output
    channel is ReLU(mean of the input over 3 frames and all channels) (interior frames)."""
    model, block = tm_model("paper")
    kernel = block.conv.get_weights()[0]
    np.testing.assert_allclose(kernel, 1.0 / 12)
    x = RNG.normal(size=(2, 6, 3, 2, 4)).astype("float32")
    got = model(x, training=False).numpy()
    window = np.stack([x[:, t - 1:t + 2].mean(axis=(1, 4)) for t in range(1, 5)], axis=1)
    expected = np.repeat(np.maximum(window, 0)[..., None], 4, axis=-1) / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(got[:, 1:5], expected, rtol=1e-4, atol=1e-5)


def test_tm_block_mixes_time_and_keeps_shape():
    model, block = tm_model()
    x = RNG.normal(size=(1, 4, 3, 2, 4)).astype("float32")
    y = model(x, training=False).numpy()
    x2 = x.copy()
    x2[0, 0] += 1.0                      # frame 0 changes -> frames 0 and 1 change, not 2, 3
    y2 = model(x2, training=False).numpy()
    changed = np.abs(y2 - y).max(axis=(0, 2, 3, 4)) > 1e-6
    assert changed.tolist() == [True, True, False, False]
    assert model(RNG.normal(size=(3, 9, 3, 2, 4)).astype("float32")).shape == (3, 9, 3, 2, 4)


def test_tm_block_config_round_trip_and_errors(tmp_path):
    model, block = tm_model("paper")
    clone = TemporalModelingBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    path = str(tmp_path / "tm.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = RNG.normal(size=(1, 3, 3, 2, 4)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    assert loaded.get_layer("tm").variant == "paper"
    with pytest.raises(ValueError, match="official"):
        TemporalModelingBlock(variant="residual")
    with pytest.raises(ValueError, match=r"\(B, T, H, W, C\)"):
        TemporalModelingBlock().build((None, 7, 16))
