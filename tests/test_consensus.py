"""SegmentConsensus: docs/tsn.md numbers, order properties, serialisation."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from tfvid.layers import CONSENSUS_MODES, SegmentConsensus

# docs/tsn.md example: K = 3 segments, 2 classes.
LOGITS = np.array([[[1.0, 2.0], [3.0, 0.0], [2.0, 2.0]]], dtype="float32")


def _run(layer, x):
    return keras.ops.convert_to_numpy(layer(x))


@pytest.mark.parametrize("mode, expected", [
    ("avg", [2.0, 4.0 / 3.0]),
    ("max", [3.0, 2.0]),
    ("topk", [2.5, 2.0]),
])
def test_reference_numbers(mode, expected):
    out = _run(SegmentConsensus(mode, top_k=2), LOGITS)
    assert out.shape == (1, 2)
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


def test_weighted_reference_numbers_and_init():
    layer = SegmentConsensus("weighted", num_segments=3)
    layer.build(LOGITS.shape)
    # Initialised to 1/K: the weighted consensus starts as the average.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.segment_weights), [1 / 3] * 3,
                               rtol=1e-6)
    np.testing.assert_allclose(_run(layer, LOGITS)[0], [2.0, 4.0 / 3.0], rtol=1e-6)
    layer.set_weights([np.array([0.2, 0.3, 0.5], "float32")])
    np.testing.assert_allclose(_run(layer, LOGITS)[0], [2.1, 1.4], rtol=1e-6)


def test_weighted_infers_static_k_and_rejects_mismatch():
    layer = SegmentConsensus("weighted")
    _run(layer, LOGITS)
    assert layer.num_segments == 3
    with pytest.raises(ValueError, match="num_segments"):
        SegmentConsensus("weighted", num_segments=4).build((1, 3, 2))


def test_topk_edge_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5, 7)).astype("float32")
    np.testing.assert_allclose(_run(SegmentConsensus("topk", top_k=1), x), x.max(1), rtol=1e-6)
    np.testing.assert_allclose(_run(SegmentConsensus("topk", top_k=5), x), x.mean(1), rtol=1e-5)
    # Fewer segments than k: average all of them.
    np.testing.assert_allclose(_run(SegmentConsensus("topk", top_k=9), x), x.mean(1), rtol=1e-5)
    # Per class (not per segment) selection: mean of the 3 largest in each column.
    expected = np.sort(x, axis=1)[:, -3:, :].mean(1)
    np.testing.assert_allclose(_run(SegmentConsensus("topk", top_k=3), x), expected, rtol=1e-5)


def test_attention_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 3)).astype("float32")
    feats = rng.normal(size=(2, 4, 6)).astype("float32")
    layer = SegmentConsensus("attention")
    # Zero init: uniform attention, i.e. the average consensus.
    np.testing.assert_allclose(_run(layer, [logits, feats]), logits.mean(1), rtol=1e-5)
    w = rng.normal(size=(6,)).astype("float32")
    layer.set_weights([w])
    e = feats @ w                                         # (B, K)
    a = np.exp(e - e.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)
    expected = (logits * a[:, :, None]).sum(1)
    np.testing.assert_allclose(_run(layer, [logits, feats]), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["avg", "max", "topk"])
def test_order_blind_modes(mode):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 6, 5)).astype("float32")
    layer = SegmentConsensus(mode, top_k=3)
    perm = rng.permutation(6)
    np.testing.assert_allclose(_run(layer, x), _run(layer, x[:, perm]), rtol=1e-6)


def test_weighted_is_order_aware():
    layer = SegmentConsensus("weighted", num_segments=3)
    layer.build(LOGITS.shape)
    layer.set_weights([np.array([0.2, 0.3, 0.5], "float32")])
    assert not np.allclose(_run(layer, LOGITS), _run(layer, LOGITS[:, ::-1]))


def test_variable_k_in_a_model():
    inp = keras.Input((None, 4))
    model = keras.Model(inp, SegmentConsensus("topk", top_k=2)(inp))
    for k in (3, 5):
        x = np.arange(2 * k * 4, dtype="float32").reshape(2, k, 4)
        out = keras.ops.convert_to_numpy(model(x))
        np.testing.assert_allclose(out, np.sort(x, 1)[:, -2:].mean(1), rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="avg"):
        SegmentConsensus("median")
    with pytest.raises(ValueError, match="top_k"):
        SegmentConsensus("topk", top_k=0)
    with pytest.raises(ValueError, match="list"):
        SegmentConsensus("avg")([LOGITS, LOGITS])
    with pytest.raises(ValueError, match="logits"):
        SegmentConsensus("attention")(LOGITS)


@pytest.mark.parametrize("mode", CONSENSUS_MODES)
def test_get_config_round_trip(mode):
    layer = SegmentConsensus(mode, top_k=3, num_segments=3, name="c")
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, SegmentConsensus)
    assert (clone.mode, clone.top_k, clone.num_segments, clone.name) == (mode, 3, 3, "c")
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("mode", CONSENSUS_MODES)
def test_saved_model_round_trip(mode, tmp_path):
    rng = np.random.default_rng(3)
    logits_in = keras.Input((3, 2))
    feats_in = keras.Input((3, 4))
    layer = SegmentConsensus(mode, top_k=2, name="consensus")
    out = layer([logits_in, feats_in]) if mode == "attention" else layer(logits_in)
    model = keras.Model([logits_in, feats_in], out)
    if layer.weights:  # make the learned weights non-default so that loading is checked
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])
    feats = rng.normal(size=(2, 3, 4)).astype("float32")
    x = [np.repeat(LOGITS, 2, axis=0), feats]
    path = str(tmp_path / f"consensus_{mode}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-6)
    assert loaded.get_layer("consensus").get_config() == layer.get_config()
