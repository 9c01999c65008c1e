"""Tests for tfvid.prep.flow: TSN quantisation (docs/tsn.md) and flow computation."""
import cv2
import numpy as np
import pytest

from tfvid.prep import flow as fl


def test_quantize_reference_values():
    v = np.array([0.0, 1.0, -10.0, 20.0, -20.0, 25.0, -100.0])
    np.testing.assert_array_equal(fl.quantize(v), [128, 134, 64, 255, 0, 255, 0])
    assert fl.quantize(v).dtype == np.uint8


def test_quantize_other_bound_and_nan():
    np.testing.assert_array_equal(fl.quantize([0.0, 5.0, -5.0, 10.0], bound=5), [128, 255, 0, 255])
    np.testing.assert_array_equal(fl.quantize([np.nan, np.inf, -np.inf]), [128, 255, 0])
    with pytest.raises(ValueError, match="bound"):
        fl.quantize([0.0], bound=0)


def test_dequantize_values():
    np.testing.assert_allclose(fl.dequantize(np.array([0, 255, 128], np.uint8)),
                               [-20.0, 20.0, 20 / 255], atol=1e-6)
    assert fl.dequantize(np.uint8(3)).dtype == np.float32


def test_round_trip_error_bounded():
    rng = np.random.default_rng(0)
    for bound in (20.0, 7.5):
        v = rng.uniform(-bound, bound, size=(5, 16, 16, 2))
        err = np.abs(fl.dequantize(fl.quantize(v, bound), bound) - v)
        assert err.max() <= bound / 255 + 1e-5
    # every 8-bit value is a fixed point of quantize(dequantize(.))
    p = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(fl.quantize(fl.dequantize(p)), p)


def test_flow_jpeg_round_trip():
    yy, xx = np.mgrid[0:48, 0:64]
    smooth = np.stack([6 * np.sin(xx / 9.0), -4 * np.cos(yy / 7.0)], -1)
    flow = np.stack([smooth, smooth * 0.5 + 1, np.zeros_like(smooth)]).astype(np.float32)
    xs, ys = fl.encode_flow_jpegs(flow, bound=20, quality=95)
    assert len(xs) == len(ys) == 3
    # grayscale JPEGs (1 channel)
    img = cv2.imdecode(np.frombuffer(xs[0], np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (48, 64)
    back = fl.decode_flow_jpegs(xs, ys, bound=20)
    assert back.shape == flow.shape and back.dtype == np.float32
    step = 20 / 127.5
    assert np.abs(back - flow).mean() < step            # JPEG noise: well under 1 level on average
    assert np.abs(back - flow).max() < 4 * step
    np.testing.assert_array_equal(fl.decode_flow_pixels(xs, ys)[2], np.full((48, 64, 2), 128))


def _textured_pair(shift=(3, -2), size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, (h + 20, w + 20), dtype=np.uint8)
    base = cv2.GaussianBlur(base, (0, 0), 1.5)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    dx, dy = shift
    a = base[10:10 + h, 10:10 + w]
    # content moves by (dx, dy): frame b at (x, y) shows what a showed at (x - dx, y - dy)
    b = base[10 - dy:10 - dy + h, 10 - dx:10 - dx + w]
    return np.stack([a, b])


@pytest.mark.parametrize("method", ["tvl1", "dis", "farneback"])
def test_methods_recover_translation(method):
    frames = _textured_pair()
    rgb = np.repeat(frames[..., None], 3, axis=-1)
    f = fl.compute_flow(rgb, method=method)
    assert f.shape == (1, 48, 64, 2) and f.dtype == np.float32
    med = np.median(f[0, 8:-8, 8:-8].reshape(-1, 2), axis=0)
    np.testing.assert_allclose(med, [3.0, -2.0], atol=0.25)


def test_frame_count_and_progress():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (4, 24, 32, 3), dtype=np.uint8)
    calls = []
    f = fl.compute_flow(frames, method="dis", progress=lambda d, t: calls.append((d, t)))
    assert f.shape == (3, 24, 32, 2)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert fl.compute_flow(frames[:1], method="farneback").shape == (0, 24, 32, 2)
    # grayscale input is accepted and gives the same result as its RGB replication
    gray = frames[..., 0]
    np.testing.assert_allclose(fl.compute_flow(gray[:2], "farneback"),
                               fl.compute_flow(np.repeat(gray[:2, ..., None], 3, -1), "farneback"))


def test_static_frames_give_zero_flow():
    frames = np.repeat(_textured_pair()[:1], 3, axis=0)
    f = fl.compute_flow(frames, method="dis")
    assert np.abs(f).max() < 0.05
    np.testing.assert_array_equal(fl.quantize(f), 128)


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError, match="tvl1.*dis.*farneback"):
        fl.compute_flow(np.zeros((2, 8, 8, 3), np.uint8), method="lucas")
