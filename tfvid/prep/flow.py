"""Optical flow: computation (OpenCV) and TSN 8-bit storage (docs/tsn.md, flow storage).

Flow k is the displacement from frame k to frame k+1 (n frames give n-1 flow frames), in pixels,
channels (x, y) = (right, down). Storage follows TSN's dense_flow tool: each component is clipped
to [-bound, bound] and stored as the 8-bit value floor(127.5 + 127.5/bound * v + 0.5)
(bound 20: 0 -> 128, 1 -> 134, -10 -> 64, 20 -> 255), x and y as two separate grayscale JPEGs
(a colour JPEG would mix and subsample them).

Costs on this machine (2 cores, 340x256): TV-L1 about 1.3 s per frame pair, Farneback about
30 ms, DIS about 2-10 ms.
"""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

METHODS = ("tvl1", "dis", "farneback")
DEFAULT_BOUND = 20.0

# Farneback parameters used by OpenCV's samples and most action-recognition scripts.
FARNEBACK_PARAMS = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
                        poly_sigma=1.2, flags=0)


def quantize(flow, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Flow (any shape, pixels) -> uint8 floor(127.5 + 127.5/bound * clip(v, -bound, bound) + 0.5).

    NaN or infinite values count as 0 / +-bound.
    """
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    v = np.nan_to_num(np.asarray(flow, np.float64), nan=0.0, posinf=bound, neginf=-bound)
    v = np.clip(v, -bound, bound)
    return np.floor(127.5 + (127.5 / bound) * v + 0.5).astype(np.uint8)


def dequantize(pixels, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """uint8 (or float) flow pixels -> float32 pixels of displacement: (p - 127.5) * bound / 127.5.

    The inverse of quantize within half a quantisation step (bound / 255) inside [-bound, bound].
    """
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    p = np.asarray(pixels, np.float32)
    return ((p - np.float32(127.5)) * np.float32(bound / 127.5)).astype(np.float32)


def _to_gray(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"compute_flow expects uint8 frames, got {frame.dtype}")
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[-1] == 1:
        return frame[..., 0]
    if frame.ndim == 3 and frame.shape[-1] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"frames must be (H, W, 3) RGB or (H, W) gray, got a frame of shape {frame.shape}")


def _make_flow_fn(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if method == "tvl1":
        if not hasattr(cv2, "optflow"):
            raise RuntimeError("TV-L1 needs OpenCV contrib (opencv-contrib-python-headless): "
                               "cv2.optflow is missing; use method='dis' or 'farneback'")
        # The TSN dense_flow tool uses OpenCV's defaults (tau 0.25, lambda 0.15, theta 0.3,
        # 5 scales, 5 warps, epsilon 0.01).
        algo = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda a, b: algo.calc(a, b, None)
    if method == "dis":
        algo = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return lambda a, b: algo.calc(a, b, None)
    if method == "farneback":
        return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK_PARAMS)
    raise ValueError(f"unknown flow method {method!r}; choose one of {', '.join(METHODS)}")


def compute_flow(frames, method: str = "tvl1",
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Dense optical flow between consecutive frames.

    Args:
      frames: uint8 (n, H, W, 3) RGB or (n, H, W) grayscale (a sequence of frames also works).
      method: "tvl1" (Dual TV-L1, OpenCV contrib, TSN's choice), "dis" (DIS, preset MEDIUM) or
        "farneback".
      progress: optional callback progress(done, total) called after each flow frame.

    Returns:
      float32 (n-1, H, W, 2): flow k maps frame k to frame k+1, channels (x, y) in pixels.
      One frame gives an empty (0, H, W, 2) array.
    """
    fn = _make_flow_fn(method)
    n = len(frames)
    if n == 0:
        raise ValueError("compute_flow needs at least one frame")
    prev = _to_gray(frames[0])
    h, w = prev.shape
    out = np.empty((n - 1, h, w, 2), np.float32)
    for k in range(1, n):
        cur = _to_gray(frames[k])
        if cur.shape != prev.shape:
            raise ValueError(f"frame {k} has shape {cur.shape}, frame 0 has {prev.shape}")
        out[k - 1] = fn(prev, cur)
        prev = cur
        if progress is not None:
            progress(k, n - 1)
    return out


def encode_flow_jpegs(flow, bound: float = DEFAULT_BOUND,
                      quality: int = 95) -> tuple[list[bytes], list[bytes]]:
    """Float flow (m, H, W, 2) -> (x JPEGs, y JPEGs): m grayscale JPEGs of the quantised x and y."""
    flow = np.asarray(flow)
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be (m, H, W, 2), got shape {flow.shape}")
    q = quantize(flow, bound)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]

    def enc(img: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), params)
        if not ok:
            raise ValueError(f"cv2.imencode failed for a flow image of shape {img.shape}")
        return buf.tobytes()

    return [enc(f[..., 0]) for f in q], [enc(f[..., 1]) for f in q]


def decode_flow_pixels(xs: Sequence[bytes], ys: Sequence[bytes]) -> np.ndarray:
    """Grayscale x and y JPEG lists -> uint8 (m, H, W, 2) stored flow pixels."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x images but {len(ys)} y images")

    def dec(b: bytes) -> np.ndarray:
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"not a decodable flow JPEG ({len(b)} bytes)")
        return img

    if not xs:
        return np.zeros((0, 0, 0, 2), np.uint8)
    return np.stack([np.stack([dec(x), dec(y)], axis=-1) for x, y in zip(xs, ys)])


def decode_flow_jpegs(xs: Sequence[bytes], ys: Sequence[bytes],
                      bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Grayscale x and y JPEG lists -> float32 flow (m, H, W, 2) in pixels (TSN values)."""
    return dequantize(decode_flow_pixels(xs, ys), bound)
