"""JPEG (and PNG) coding of frames with OpenCV: encoding for the records, decoding, and reading a
JPEG's size from its header without decoding the pixels (frame folders stored byte for byte).
"""
from __future__ import annotations

import cv2
import numpy as np


def encode_jpegs(frames, quality: int = 90) -> list[bytes]:
    """JPEG-encodes RGB frames uint8 (n, H, W, 3) (or grayscale (n, H, W)); one bytes per frame."""
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    out = []
    for f in frames:
        f = np.asarray(f)
        if f.dtype != np.uint8:
            raise ValueError(f"encode_jpegs expects uint8 frames, got {f.dtype}")
        img = cv2.cvtColor(f, cv2.COLOR_RGB2BGR) if f.ndim == 3 else f
        ok, buf = cv2.imencode(".jpg", img, params)
        if not ok:
            raise ValueError(f"cv2.imencode failed for a frame of shape {f.shape}")
        out.append(buf.tobytes())
    return out


def decode_jpeg(data: bytes, grayscale: bool = False) -> np.ndarray:
    """Decodes JPEG bytes to uint8 (H, W, 3) RGB, or (H, W) with grayscale=True."""
    buf = np.frombuffer(data, np.uint8)
    flag = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    img = cv2.imdecode(buf, flag)
    if img is None:
        raise ValueError(f"not a decodable JPEG ({len(data)} bytes)")
    return img if grayscale else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_image(data: bytes) -> np.ndarray | None:
    """Decodes JPEG/PNG bytes to uint8 (H, W, 3) RGB (EXIF orientation ignored, as TensorFlow's
    decoders do); None when OpenCV cannot decode them."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8),
                       cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_info(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG's frame header without decoding the pixels;
    None when `data` is not a complete JPEG (no SOI, no frame header, or no end-of-image
    marker after it, as in a truncated file)."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker == 0xD9:
            return None
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF_MARKERS:
            if i + 10 > n or length < 8:
                return None
            h = int.from_bytes(data[i + 5:i + 7], "big")
            w = int.from_bytes(data[i + 7:i + 9], "big")
            if not w or not h or data.rfind(b"\xff\xd9") < i:
                return None
            return w, h, data[i + 9]
        if length < 2:
            return None
        i += 2 + length
    return None
