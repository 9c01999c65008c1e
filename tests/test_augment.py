"""Augmentation, evaluation views, normalisation and modality stacking (docs/tsn.md, docs/stnet.md)."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvid.data import augment, modality  # noqa: E402


def coord_clip(height=256, width=340, frames=2):
    """float32 (T, H, W, 3): channel 0 = x, channel 1 = y, channel 2 = frame index."""
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return tf.constant(np.stack([np.stack([x, y, np.full_like(x, t)], -1)
                                 for t in range(frames)]).astype(np.float32))


# ----------------------------------------------------------------------------- geometry
def test_crop_size_pairs_340x256():
    pairs = augment.crop_size_pairs(340, 256)
    assert pairs == [(256, 256), (224, 256),
                     (256, 224), (224, 224), (192, 224),
                     (224, 192), (192, 192), (168, 192),
                     (192, 168), (168, 168)]
    assert {v for p in pairs for v in p} == {256, 224, 192, 168}
    assert len(augment.crop_size_pairs(340, 256, scales=augment.FLOW_SCALES)) == 7
    # a candidate within 2 pixels of input_size snaps to it
    assert augment.crop_size_pairs(300, 226, scales=(1,))[0] == (224, 224)
    assert augment.crop_size_pairs(300, 228, scales=(1,))[0] == (228, 228)


def test_fixed_crop_origins_340x256():
    ws, hs = 29, 8
    expected = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs),
                (0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),
                (ws, hs), (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs)]
    assert augment.fixed_crop_origins(340, 256, 224, 224) == expected
    assert augment.fixed_crop_origins(340, 256, 224, 224, more_fixed=False) == expected[:5]


def test_sample_crop_window_draws_candidates():
    pairs = set(augment.crop_size_pairs(340, 256))
    seen_pairs, seen_origins = set(), set()
    for s in range(300):
        y, x, h, w = augment.sample_crop_window(256, 340, [s, 1]).numpy().tolist()
        assert (w, h) in pairs
        assert (x, y) in augment.fixed_crop_origins(340, 256, w, h)
        seen_pairs.add((w, h))
        seen_origins.add(augment.fixed_crop_origins(340, 256, w, h).index((x, y)))
    assert seen_pairs == pairs and seen_origins == set(range(13))
    a = augment.sample_crop_window(256, 340, [4, 2]).numpy()
    assert (a == augment.sample_crop_window(256, 340, tf.constant([4, 2])).numpy()).all()


def test_multiscale_crop_same_crop_for_all_frames():
    clip = coord_clip(64, 80, frames=3)
    out = augment.multiscale_crop(clip, [1, 2], input_size=32)
    assert out.shape == (3, 32, 32, 3) and out.dtype == tf.float32
    assert np.allclose(out[0, ..., :2], out[2, ..., :2])
    assert np.allclose(out[..., 2].numpy().mean(axis=(1, 2)), [0, 1, 2])
    # dynamic H, W inside a graph
    f = tf.function(lambda c, s: augment.multiscale_crop(c, s, input_size=32),
                    input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8),
                                     tf.TensorSpec([2], tf.int32)])
    assert f(tf.zeros([2, 50, 70, 3], tf.uint8), tf.constant([0, 0])).shape == (2, 32, 32, 3)


# -------------------------------------------------------------------------------- flips
def test_flow_flip_inverts_only_x():
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (2, 4, 5, 10)).astype(np.uint8)      # x1 y1 ... x5 y5
    out = augment.flip(tf.constant(stack), is_flow=True).numpy()
    mirrored = stack[:, :, ::-1, :]
    assert (out[..., 0::2] == 255 - mirrored[..., 0::2]).all()
    assert (out[..., 1::2] == mirrored[..., 1::2]).all()
    rgb = augment.flip(tf.constant(stack), is_flow=False).numpy()
    assert (rgb == mirrored).all()
    twice = augment.flip(augment.flip(tf.constant(stack, tf.float32), True), True)
    assert (twice.numpy() == stack).all()


def test_random_flip_is_seeded():
    clip = coord_clip(8, 10, frames=1)
    outcomes = set()
    for s in range(20):
        out = augment.random_flip(clip, [s, 3]).numpy()
        outcomes.add(out[0, 0, 0, 0])
        assert (augment.random_flip(clip, [s, 3]).numpy() == out).all()
    assert outcomes == {0.0, 9.0}


# ------------------------------------------------------------------------- evaluation views
def test_ten_crop_origins_and_flips():
    views = augment.ten_crop(coord_clip(), 224).numpy()
    assert views.shape == (10, 2, 224, 224, 3)
    corners = [tuple(views[v, 0, 0, 0, :2].astype(int)) for v in range(5)]
    assert corners == [(0, 0), (116, 0), (0, 32), (116, 32), (58, 16)]
    for v in range(5):                  # flipped view: same crop mirrored
        assert (views[v + 5] == views[v][:, :, ::-1]).all()
    flow = augment.ten_crop(tf.fill([1, 256, 340, 2], 200.0), 224, is_flow=True).numpy()
    assert (flow[:5, ..., 0] == 200).all() and (flow[5:, ..., 0] == 55).all()
    assert (flow[..., 1] == 200).all()


def test_center_and_three_crop():
    c = augment.center_crop(coord_clip(), 224).numpy()
    assert c.shape == (1, 2, 224, 224, 3) and tuple(c[0, 0, 0, 0, :2]) == (58, 16)
    three = augment.three_crop(coord_clip(), 224).numpy()
    assert [tuple(three[v, 0, 0, 0, :2]) for v in range(3)] == [(0, 16), (58, 16), (116, 16)]
    portrait = augment.three_crop(coord_clip(340, 256), 224).numpy()
    assert [tuple(portrait[v, 0, 0, 0, :2]) for v in range(3)] == [(16, 0), (16, 58), (16, 116)]


def test_scale_size_keeps_the_stored_frame_for_a_larger_test_view():
    """StNet's test view: a 256 x 256 centre crop of the 340 x 256 frame, not rescaled
    (scale_size=256); without it the short side goes to 256 * 256 // 224 = 292 first."""
    clip = coord_clip()
    c = augment.center_crop(clip, 256, scale_size=256).numpy()
    np.testing.assert_array_equal(c[0], clip.numpy()[:, :, 42:298])
    assert augment.eval_views(clip, 10, 256, scale_size=256).shape == (10, 2, 256, 256, 3)
    assert tuple(augment.center_crop(clip, 256).numpy()[0, 0, 0, 0, :2]) != (42, 0)
    with pytest.raises(ValueError, match="scale_size"):
        augment.center_crop(clip, 256, scale_size=224)


def test_eval_rescales_short_side_only_when_needed():
    assert augment.scale_short_side(tf.zeros([1, 48, 64, 3], tf.uint8)).shape == (1, 256, 341, 3)
    assert augment.scale_short_side(tf.zeros([1, 48, 64, 3]), 32).shape == (1, 36, 48, 3)
    clip = coord_clip()
    assert (augment.scale_short_side(clip).numpy() == clip.numpy()).all()   # 340x256: as is
    assert augment.center_crop(tf.zeros([3, 48, 64, 3], tf.uint8), 224).shape == \
        (1, 3, 224, 224, 3)
    with pytest.raises(ValueError, match="num_crops"):
        augment.eval_views(clip, 5)


# ----------------------------------------------------------------------------- normalisation
def test_normalisation_values():
    rgb = tf.constant([[[[10.0, 20.0, 30.0]]]])
    np.testing.assert_allclose(augment.normalize(rgb, "resnet50")[0, 0, 0],
                               [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)
    np.testing.assert_allclose(augment.normalize(rgb, "bninception")[0, 0, 0],
                               [30 - 104, 20 - 117, 10 - 123], rtol=1e-6)
    torch = (np.array([10, 20, 30]) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    for name in ("resnext50", "resnext101", "tiny"):
        np.testing.assert_allclose(augment.normalize(rgb, name)[0, 0, 0], torch, rtol=1e-5)
    # multi-frame stacks: every colour triple separately; uint8 input works
    stack = tf.constant(np.arange(6, dtype=np.uint8).reshape(1, 1, 1, 6))
    np.testing.assert_allclose(augment.normalize(stack, "bninception")[0, 0, 0],
                               [2 - 104, 1 - 117, 0 - 123, 5 - 104, 4 - 117, 3 - 123])
    flow = tf.constant([[[[0.0, 128.0, 255.0, 64.0]]]])
    np.testing.assert_allclose(augment.normalize(flow, "resnet50", "flow")[0, 0, 0],
                               [-128, 0, 127, -64])
    np.testing.assert_allclose(augment.normalize(flow, "tiny", "flow")[0, 0, 0],
                               [-1, 0, 127 / 128, -0.5])
    diff = tf.constant([[[[-5.0, 0.0, 7.0]]]])
    np.testing.assert_allclose(augment.normalize(diff, "resnet101", "rgbdiff")[0, 0, 0],
                               [7, 0, -5])
    np.testing.assert_allclose(augment.normalize(diff, "tiny", "rgbdiff")[0, 0, 0],
                               [-5 / 255, 0, 7 / 255], rtol=1e-6)
    big = tf.random.stateless_uniform([2, 3, 5, 7, 15], [1, 1], maxval=255.0)
    ref = (tf.reshape(big, [2, 3, 5, 7, 5, 3])[..., ::-1] - [103.939, 116.779, 123.68])
    np.testing.assert_allclose(augment.normalize(big, "resnet50"),
                               tf.reshape(ref, big.shape), atol=1e-4)


def test_normalisation_errors_and_config():
    with pytest.raises(ValueError, match="bninception.*resnet50"):
        augment.normalize(tf.zeros([1, 1, 1, 3]), "vgg16")
    with pytest.raises(ValueError, match="modality"):
        augment.normalization_config("resnet50", "depth")
    for backbone in augment.NORMALIZATION:
        for m in modality.MODALITIES:
            cfg = augment.normalization_config(backbone, m)
            assert json.loads(json.dumps(cfg)) == cfg
    assert augment.normalization_config("resnet50")["channel_order"] == "bgr"
    assert augment.normalization_config("tiny", "flow")["std"] == [128.0]


# --------------------------------------------------------------------------------- modality
def test_rgb_stack_is_frame_major():
    frames = np.arange(5 * 3).reshape(1, 5, 1, 1, 3).repeat(2, axis=0)   # (T, L, H, W, 3)
    out = modality.rgb_stack(tf.constant(frames)).numpy()
    assert out.shape == (2, 1, 1, 15)
    assert out[0, 0, 0].tolist() == list(range(15))       # channel c: frame c//3, colour c%3


def test_flow_stack_interleaves():
    x = np.array([10, 11, 12, 13, 14]).reshape(1, 5, 1, 1)
    y = np.array([20, 21, 22, 23, 24]).reshape(1, 5, 1, 1)
    out = modality.flow_stack(tf.constant(x), tf.constant(y)).numpy()
    assert out[0, 0, 0].tolist() == [10, 20, 11, 21, 12, 22, 13, 23, 14, 24]


def test_rgb_diff_example():
    values = np.array([0, 1, 3, 6, 10, 15], np.uint8)
    frames = np.broadcast_to(values.reshape(1, 6, 1, 1, 1), (2, 6, 4, 4, 3))
    out = modality.rgb_diff(tf.constant(frames)).numpy()
    assert out.shape == (2, 4, 4, 15) and out.dtype == np.float32
    assert out[0, 0, 0].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5]
    down = modality.rgb_diff(tf.constant(frames[:, ::-1].copy())).numpy()   # no uint8 wrap
    assert down[0, 0, 0, 0] == -5


def test_num_channels():
    assert modality.num_channels("rgb", 1) == 3
    assert modality.num_channels("rgb", 5) == 15
    assert modality.num_channels("flow", 5) == 10
    assert modality.num_channels("rgbdiff", 6) == 15
    with pytest.raises(ValueError):
        modality.num_channels("rgbdiff", 1)
    with pytest.raises(ValueError, match="known"):
        modality.num_channels("depth", 1)


def test_flip_commutes_with_resize_and_resize_any_rank():
    """The pipeline flips uint8 crops before resizing: the same as flipping after (bilinear,
    half-pixel centres, up- and downscaling), also for flow."""
    rng = np.random.default_rng(1)
    for shape in [(2, 3, 21, 30, 3), (2, 20, 26, 10)]:
        x = rng.integers(0, 256, shape).astype(np.uint8)
        is_flow = shape[-1] == 10
        for size in ([16, 16], [32, 40]):
            a = augment.resize(augment.flip(x, is_flow), size).numpy()
            b = augment.flip(augment.resize(x, size), is_flow).numpy()
            np.testing.assert_allclose(a, b, atol=1e-3)
            flat = tf.image.resize(tf.cast(x.reshape((-1,) + shape[-3:]), tf.float32), size)
            np.testing.assert_allclose(a.reshape(flat.shape), augment.flip(
                flat, is_flow).numpy(), atol=1e-3)
        same = augment.resize(x, list(shape[-3:-1])).numpy()          # no-op size: a cast
        assert same.dtype == np.float32 and (same == x).all()
