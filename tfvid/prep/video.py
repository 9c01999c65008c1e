"""Video decoding (PyAV): a video file (or a frame folder) -> RGB frames.

Decoding happens once, at dataset-preparation time; training reads JPEG frames from TFRecords.

Resizing uses PyAV's reformat (FFmpeg swscale, AREA filter) fused with the YUV -> RGB conversion:
measured on this machine for a 640x480 H.264 source resized to 340x256, decode + convert +
resize took about 5.8 ms/frame with swscale AREA against 11.4 ms/frame with
``to_ndarray(rgb24)`` followed by ``cv2.resize(INTER_AREA)`` (7.9 ms with INTER_LINEAR), and
swscale AREA is an anti-aliased downscale like INTER_AREA (mean absolute difference ~1 level).

Rotation: phones store portrait videos as landscape frames plus a display rotation (the MP4
display matrix, read by PyAV >= 14 as ``VideoFrame.rotation``, counter-clockwise degrees; older
files/tools: the stream tag ``rotate``, clockwise degrees). read_video applies it (multiples of
90 degrees), so frames come out upright, as players show them; ``Video.rotation`` says what was
applied and frame_size / short_side refer to the upright frames.

Truncated or damaged files: decoding errors after the first frame, or fewer decoded frames than
the container declares (its frame count, else its duration times the frame rate), keep the
frames decoded so far; ``Video.partial`` then describes the loss ("24 of 30 frames ...") so the
preparation job can report it, besides the logged warning.

Frame folders: a folder of frame images (Jester, Something-Something v1) is a video too:
read_video decodes it like a file (at ``folder_fps`` frames per second, Jester's 12 by default,
as the folder stores no rate) through tfvid.prep.frame_folders.

Related modules: tfvid.prep.frames (the Video record, VideoError, output_size),
tfvid.prep.frame_folders (frame folders), tfvid.prep.jpeg (JPEG coding) and
tfvid.prep.video_writer (write_video). Their public names stay importable from here.
"""
from __future__ import annotations

import logging
import os
from typing import Iterator

import av
import numpy as np

from tfvid.prep.frame_folders import (FRAME_EXTENSIONS, FrameFolderClip, list_frame_files,  # noqa: F401
                                      read_frame_folder, read_frame_folder_jpegs,
                                      resample_indices)
from tfvid.prep.frames import FRAME_FOLDER_FPS, Video, VideoError, output_size  # noqa: F401
from tfvid.prep.jpeg import decode_image, decode_jpeg, encode_jpegs, jpeg_info  # noqa: F401
from tfvid.prep.video_writer import DEFAULT_CODECS, write_video  # noqa: F401

log = logging.getLogger(__name__)

RESIZE_INTERPOLATION = "AREA"  # swscale filter used by read_video (see the module docstring)


def _frame_seconds(frame: av.VideoFrame, index: int, rate: float) -> float:
    t = frame.time
    return float(t) if t is not None else index / rate


def _decoded_frames(container, stream, path, status: dict | None = None
                    ) -> Iterator[av.VideoFrame]:
    """Yields decoded frames; an error after at least one frame ends the video with a warning
    (and status["error"] = its text, when a status dict is given)."""
    count = 0
    try:
        for frame in container.decode(stream):
            count += 1
            yield frame
    except (av.FFmpegError, ValueError, RuntimeError) as e:  # broken packets, truncated file
        if count == 0:
            raise VideoError(path, f"no decodable frame ({type(e).__name__}: {e})") from e
        log.warning("%s: decoding stopped after %d frames (%s: %s); keeping those frames",
                    path, count, type(e).__name__, e)
        if status is not None:
            status["error"] = f"{type(e).__name__}: {e}"


def frame_rotation(frame: av.VideoFrame, stream=None) -> int:
    """Display rotation of a decoded frame, counter-clockwise degrees in {0, 90, 180, 270}.

    PyAV >= 14 reads the display matrix as ``frame.rotation`` (counter-clockwise, e.g. -90 or
    270 for a portrait phone video); otherwise the stream tag ``rotate`` (clockwise degrees) is
    used. Angles that are not multiples of 90 degrees are ignored (0).
    """
    degrees = None
    value = getattr(frame, "rotation", None)
    if value:
        degrees = float(value)
    elif stream is not None:
        tag = (getattr(stream, "metadata", None) or {}).get("rotate")
        try:
            degrees = -float(tag) if tag else None
        except ValueError:
            degrees = None
    if not degrees:
        return 0
    quarter = degrees / 90.0
    if abs(quarter - round(quarter)) > 1e-3:
        log.warning("display rotation %s degrees is not a multiple of 90; ignored", degrees)
        return 0
    return int(round(quarter)) % 4 * 90


def rotate_frame(image: np.ndarray, degrees: int) -> np.ndarray:
    """Rotates an (H, W, ...) image counter-clockwise by 0/90/180/270 degrees (contiguous copy)."""
    if degrees % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {degrees}")
    k = degrees // 90 % 4
    return np.ascontiguousarray(np.rot90(image, k=k, axes=(0, 1))) if k else image


def _expected_frames(container, stream, rate: float) -> int | None:
    """Frames the container declares: its frame count, else duration x frame rate."""
    if stream.frames:
        return int(stream.frames)
    if rate > 0:
        seconds = None
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration:
            seconds = container.duration / 1e6
        if seconds and seconds > 0:
            return int(round(seconds * rate))
    return None


def open_video_stream(path: str):
    """(container, first video stream, its frame rate or 0.0) of a video file, the stream set
    to threaded decoding; VideoError naming the file when it is not a readable container, has
    no video stream or no usable decoder. The caller closes the container."""
    try:
        container = av.open(path, mode="r")
    except av.FFmpegError as e:
        raise VideoError(path, f"not a readable video container ({type(e).__name__}: {e})") from e
    try:
        if not container.streams.video:
            raise VideoError(path, "no video stream in the container")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise VideoError(path, "video stream without a usable decoder (corrupt or unknown codec)")
    except BaseException:
        container.close()
        raise
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return container, stream, float(rate) if rate else 0.0


def read_video(path, *, frame_size: tuple[int, int] | None = (340, 256),
               short_side: int | None = None, fps: float | None = None,
               max_frames: int | None = None, apply_rotation: bool = True,
               folder_fps: float = FRAME_FOLDER_FPS) -> Video:
    """Decodes the first video stream of `path` into RGB frames.

    Args:
      path: a video file (any container and codec FFmpeg reads), or a folder of frame images
        (see read_frame_folder; its frames are at `folder_fps` frames per second).
      frame_size: (width, height) to resize to (TSN stores 340x256); None keeps the source size.
      short_side: if set, resize so the shorter side is this long, keeping the aspect ratio
        (sizes rounded to even numbers); frame_size is then ignored.
      fps: if set, resample in time: for each tick t0 + k/fps (t0 = first frame time, up to the
        last frame time plus half a source frame) keep the decoded frame nearest the tick (frames
        repeat when fps exceeds the source rate). None keeps every frame.
      max_frames: stop after this many returned frames.
      apply_rotation: rotate frames upright by the file's display rotation (see the module
        docstring); sizes then refer to the upright frames.

    Returns:
      Video with frames uint8 (n, H, W, 3).

    Raises:
      VideoError: missing file, not a video or corrupt container, no video stream, or no
        decodable frame. Errors after some frames were decoded keep those frames (warning,
        and Video.partial says how many of the expected frames were decoded).
    """
    path = os.fspath(path)
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not os.path.exists(path):
        raise VideoError(path, "file not found")
    if os.path.isdir(path):
        return read_frame_folder(path, frame_size=frame_size, short_side=short_side, fps=fps,
                                 max_frames=max_frames, frame_rate=folder_fps)
    if os.path.getsize(path) == 0:
        raise VideoError(path, "empty file (0 bytes)")
    container, stream, src_rate = open_video_stream(path)
    try:
        ctx = stream.codec_context
        source_size = (int(ctx.width), int(ctx.height))
        expected = _expected_frames(container, stream, src_rate)
        status: dict = {}

        frames: list[np.ndarray] = []
        times: list[float] = []
        out_size = None
        rotation = 0

        def convert(frame: av.VideoFrame) -> np.ndarray:
            nonlocal out_size
            sideways = rotation in (90, 270)
            if out_size is None:  # the decoded size is authoritative (headers can be 0x0)
                upright = (frame.height, frame.width) if sideways else (frame.width, frame.height)
                out_size = output_size(upright, frame_size, short_side)
            w, h = (out_size[1], out_size[0]) if sideways else out_size  # size before rotating
            if (frame.width, frame.height) == (w, h):
                image = frame.to_ndarray(format="rgb24")
            else:
                image = frame.to_ndarray(width=w, height=h, format="rgb24",
                                         interpolation=RESIZE_INTERPOLATION)
            return rotate_frame(image, rotation) if rotation else image

        def full() -> bool:
            return max_frames is not None and len(frames) >= max_frames

        t0 = None
        decoded = 0
        prev = None  # (seconds, frame) of the previous decoded frame, for fps resampling
        k = 0        # next tick index
        for i, frame in enumerate(_decoded_frames(container, stream, path, status)):
            decoded = i + 1
            if i == 0:
                rotation = frame_rotation(frame, stream) if apply_rotation else 0
                source_size = ((frame.height, frame.width) if rotation in (90, 270)
                               else (frame.width, frame.height))
            t = _frame_seconds(frame, i, src_rate or 25.0)
            if t0 is None:
                t0 = t
            if fps is None:
                frames.append(convert(frame))
                times.append(t - t0)
            else:
                while not full() and t0 + k / fps <= t + 1e-9:
                    tick = t0 + k / fps
                    use_prev = prev is not None and (tick - prev[0]) < (t - tick)
                    chosen_t, chosen = prev if use_prev else (t, frame)
                    frames.append(convert(chosen))
                    times.append(chosen_t - t0)
                    k += 1
                prev = (t, frame)
            if full():
                break
        if fps is not None and prev is not None:  # ticks after the last frame, within half a frame
            half = 0.5 / src_rate if src_rate > 0 else 0.0
            while not full() and t0 + k / fps <= prev[0] + half + 1e-9:
                frames.append(convert(prev[1]))
                times.append(prev[0] - t0)
                k += 1
        partial = None
        if not full():
            short = expected is not None and (
                decoded < expected if stream.frames else
                decoded < expected - max(1.0, 0.05 * expected))  # a duration is approximate
            if short:
                partial = f"{decoded} of {expected} frames decoded (damaged or truncated file)"
                log.warning("%s: the container declares %d frames but only %d decoded "
                            "(damaged or truncated file); keeping those", path, expected, decoded)
            if status.get("error") and not (expected and decoded >= expected):
                of = f" of {expected}" if expected else ""
                partial = (f"{decoded}{of} frames decoded: decoding stopped at a damaged "
                           f"packet ({status['error']})")
    except av.FFmpegError as e:
        raise VideoError(path, f"corrupt video ({type(e).__name__}: {e})") from e
    finally:
        container.close()

    if not frames:
        raise VideoError(path, "zero decodable video frames")
    ts = np.round(np.asarray(times, np.float64) * 1e6).astype(np.int64)
    if fps is not None:
        frame_rate = float(fps)
    elif src_rate > 0:
        frame_rate = src_rate
    elif len(ts) > 1 and ts[-1] > ts[0]:
        frame_rate = (len(ts) - 1) * 1e6 / float(ts[-1] - ts[0])
    else:
        frame_rate = 25.0
    return Video(frames=np.stack(frames), frame_rate=frame_rate, timestamps_us=ts,
                 source_size=(int(source_size[0]), int(source_size[1])), rotation=rotation,
                 expected_frames=expected, partial=partial)
