"""A small video writer (PyAV): uint8 RGB frames -> a video file (the synthetic dataset, tests).
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Sequence

import av
import numpy as np

# Default encoder per container extension; all present in this PyAV build (av.codecs_available).
DEFAULT_CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264",
                  ".avi": "mpeg4", ".webm": "libvpx-vp9"}


def write_video(path, frames: Sequence[np.ndarray] | np.ndarray, fps: float = 25,
                codec: str | None = None, *, bit_rate: int | None = None,
                options: dict[str, str] | None = None) -> str:
    """Writes uint8 RGB frames (n, H, W, 3) to a video file; returns the path.

    codec defaults by extension: .mp4/.mkv/.mov libx264 (crf 18, deterministic single thread),
    .avi mpeg4 (as UCF101's xvid), .webm libvpx-vp9. Pixel format yuv420p, so H and W must be
    even. Quality: libx264 crf 18 and libvpx-vp9 crf 30 (constant quality); other encoders get
    bit_rate (default 1.5 bits per pixel and frame, near-transparent mpeg4 at small sizes).
    libx264 and mpeg4 outputs are byte-identical for identical frames.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if codec is None:
        if ext not in DEFAULT_CODECS:
            raise ValueError(f"{path}: no default codec for extension {ext!r}; "
                             f"known: {sorted(DEFAULT_CODECS)}; pass codec=")
        codec = DEFAULT_CODECS[ext]
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    if any(f.shape != (h, w, 3) or f.dtype != np.uint8 for f in frames):
        raise ValueError(f"{path}: frames must all be uint8 ({h}, {w}, 3)")
    if h % 2 or w % 2:
        raise ValueError(f"{path}: yuv420p needs even frame sizes, got {w}x{h}")
    opts = {}
    if codec in ("libx264", "h264"):
        opts = {"crf": "18", "preset": "veryfast", "threads": "1"}
    elif codec == "libvpx-vp9":
        opts = {"crf": "30", "b": "0", "threads": "1", "deadline": "realtime", "cpu-used": "8"}
    opts.update(options or {})
    rate = Fraction(fps).limit_denominator(1001)
    container = av.open(path, mode="w")
    try:
        stream = container.add_stream(codec, rate=rate, options=opts)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if bit_rate is None and codec not in ("libx264", "h264", "libvpx-vp9"):
            bit_rate = int(w * h * float(fps) * 1.5)
        if bit_rate:
            stream.bit_rate = int(bit_rate)
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return path
