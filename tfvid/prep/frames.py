"""Decoded frames: the Video record, VideoError and the output-size rule shared by video files
(tfvid.prep.video) and frame folders (tfvid.prep.frame_folders).

Sizes are (width, height); read_video and the frame-folder readers resize to output_size(...)
of the upright source size.
"""
from __future__ import annotations

import dataclasses

import numpy as np

FRAME_FOLDER_FPS = 12.0  # frame rate of a frame folder (Jester and Something-Something v1)


class VideoError(Exception):
    """A video that cannot be read. The message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclasses.dataclass
class Video:
    """Decoded frames of one video.

    frames:        uint8 (n, H, W, 3), RGB.
    frame_rate:    frames per second of the returned frames (the `fps` asked for, if any).
    timestamps_us: int64 (n,), presentation time of each returned frame in microseconds,
                   relative to the first decoded frame (which is at 0).
    source_size:   (width, height) of the stream before resizing (after rotation).
    rotation:      counter-clockwise degrees applied from the file's display rotation (0, 90,
                   180 or 270).
    expected_frames: source frames the container declares (frame count, else duration x
                   rate), None when it declares nothing.
    partial:       None, or why fewer frames than expected were decoded (truncated/damaged).
    """
    frames: np.ndarray
    frame_rate: float
    timestamps_us: np.ndarray
    source_size: tuple[int, int]
    rotation: int = 0
    expected_frames: int | None = None
    partial: str | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the returned frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


def _even(x: float) -> int:
    return max(2, int(np.floor(x / 2.0 + 0.5)) * 2)  # nearest even, halves up


def output_size(source_size: tuple[int, int], frame_size: tuple[int, int] | None = (340, 256),
                short_side: int | None = None) -> tuple[int, int]:
    """(width, height) that read_video produces for a source of `source_size` (w, h).

    short_side keeps the aspect ratio (both sides rounded to even numbers); otherwise frame_size
    (w, h) is used as given; frame_size=None keeps the source size.
    """
    w, h = source_size
    if short_side is not None:
        if short_side <= 0:
            raise ValueError(f"short_side must be positive, got {short_side}")
        if w <= h:
            return _even(short_side), _even(h * short_side / w)
        return _even(w * short_side / h), _even(short_side)
    if frame_size is None:
        return int(w), int(h)
    fw, fh = frame_size
    if fw <= 0 or fh <= 0:
        raise ValueError(f"frame_size must be positive (width, height), got {frame_size}")
    return int(fw), int(fh)
