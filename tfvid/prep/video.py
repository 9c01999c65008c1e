"""Video decoding (PyAV), frame JPEG coding and a small video writer.

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

Frame folders: a folder of frame images (Jester, Something-Something v1: ``<id>/00001.jpg``
...; any *.jpg/*.jpeg/*.png names, in natural sort order) is a video too. read_video decodes it
like a file (at ``folder_fps`` frames per second, Jester's 12 by default, as the folder stores
no rate); read_frame_folder_jpegs gives the JPEG bytes to store without re-encoding: the stored
JPEG files themselves when no resize is needed (their headers are parsed for the size, the
pixels are not decoded), else each frame decoded, resized and encoded once; PNG frames are
decoded and encoded to JPEG.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from fractions import Fraction
from typing import Iterator, Sequence

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)

RESIZE_INTERPOLATION = "AREA"  # swscale filter used by read_video (see the module docstring)

# Default encoder per container extension; all present in this PyAV build (av.codecs_available).
DEFAULT_CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264",
                  ".avi": "mpeg4", ".webm": "libvpx-vp9"}


FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")  # frame images of a frame folder
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
    try:
        container = av.open(path, mode="r")
    except av.FFmpegError as e:
        raise VideoError(path, f"not a readable video container ({type(e).__name__}: {e})") from e
    try:
        if not container.streams.video:
            raise VideoError(path, "no video stream in the container")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None:
            raise VideoError(path, "video stream without a usable decoder (corrupt or unknown codec)")
        stream.thread_type = "AUTO"
        source_size = (int(ctx.width), int(ctx.height))
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        src_rate = float(rate) if rate else 0.0
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


# ---------------------------------------------------------------- frame folders

def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)], name


def list_frame_files(folder) -> list[str]:
    """Paths of the frame images (*.jpg, *.jpeg, *.png, any case) of a frame folder, in natural
    sort order (00001.jpg < 00002.jpg, img_2.jpg < img_10.jpg). Hidden files are ignored.
    Raises VideoError when the folder is missing or cannot be listed."""
    folder = os.fspath(folder)
    if not os.path.exists(folder):
        raise VideoError(folder, "frame folder not found")
    if not os.path.isdir(folder):
        raise VideoError(folder, "not a folder of frame images")
    try:
        with os.scandir(folder) as it:
            names = [d.name for d in it if not d.name.startswith(".")
                     and os.path.splitext(d.name)[1].lower() in FRAME_EXTENSIONS
                     and d.is_file()]
    except OSError as e:
        raise VideoError(folder, f"unreadable frame folder ({type(e).__name__}: "
                                 f"{e.strerror or e})") from e
    return [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]


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


def decode_image(data: bytes) -> np.ndarray | None:
    """Decodes JPEG/PNG bytes to uint8 (H, W, 3) RGB (EXIF orientation ignored, as TensorFlow's
    decoders do); None when OpenCV cannot decode them."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8),
                       cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resample_indices(num_frames: int, rate: float, fps: float | None) -> list[int]:
    """Indices of the frames kept when frames at `rate` fps (uniformly spaced) are resampled to
    `fps` as read_video does: for each tick k/fps up to the last frame time plus half a frame,
    the nearest frame (ties go to the later one). fps None keeps every frame."""
    if fps is None:
        return list(range(num_frames))
    if fps <= 0 or rate <= 0:
        raise ValueError(f"frame rates must be positive, got fps={fps}, rate={rate}")
    end = (num_frames - 1) / rate + 0.5 / rate
    out, k = [], 0
    while k / fps <= end + 1e-9:
        out.append(min(num_frames - 1, int(np.floor(k / fps * rate + 0.5 + 1e-9))))
        k += 1
    return out


@dataclasses.dataclass
class FrameFolderClip:
    """Frames of a frame folder ready to store (read_frame_folder_jpegs).

    jpegs:    one JPEG per returned frame (None unless asked for); the stored file's bytes
              unchanged when it is a JPEG and no resize was needed.
    frames:   uint8 (n, H, W, 3) RGB (None unless asked for).
    files:    source image of each returned frame.
    reencoded: returned frames whose JPEG was produced by decoding and encoding (resized, PNG,
              or a JPEG TensorFlow may not read as is, such as CMYK).
    """
    jpegs: list[bytes] | None
    frames: np.ndarray | None
    width: int
    height: int
    frame_rate: float
    timestamps_us: np.ndarray
    source_size: tuple[int, int]
    files: list[str]
    reencoded: int = 0

    @property
    def num_frames(self) -> int:
        return len(self.files)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def read_frame_folder_jpegs(path, *, frame_size: tuple[int, int] | None = (340, 256),
                            short_side: int | None = None, fps: float | None = None,
                            frame_rate: float = FRAME_FOLDER_FPS, max_frames: int | None = None,
                            jpeg_quality: int = 90, want_jpegs: bool = True,
                            want_frames: bool = False) -> FrameFolderClip:
    """Reads a folder of frame images as a video at `frame_rate` fps.

    Sizes follow read_video (frame_size / short_side / None = source size; fps resamples).
    JPEG frames are stored unchanged when the output size equals the source size: only their
    headers are parsed (size, completeness), nothing is decoded unless want_frames. Otherwise a
    frame is decoded, resized (OpenCV INTER_AREA) and JPEG-encoded once at jpeg_quality.

    Raises VideoError naming the folder: missing ("frame folder not found"), unreadable, no
    frame image ("no frame images"), an unreadable, empty, truncated or undecodable frame file,
    or frames of different sizes.
    """
    path = os.fspath(path)
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    files = list_frame_files(path)
    if not files:
        raise VideoError(path, "no frame images (*.jpg, *.jpeg, *.png) in the frame folder")
    picks = resample_indices(len(files), frame_rate, fps)
    if max_frames is not None:
        picks = picks[:max_frames]
    raw: dict[int, bytes] = {}
    info: dict[int, tuple[int, int, int] | None] = {}
    decoded: dict[int, np.ndarray] = {}
    sizes: dict[int, tuple[int, int]] = {}

    def name(i: int) -> str:
        return os.path.basename(files[i])

    def decode(i: int) -> np.ndarray:
        if i not in decoded:
            img = decode_image(raw[i])
            if img is None:
                raise VideoError(path, f"undecodable frame image {name(i)}")
            decoded[i] = img
        return decoded[i]

    for i in sorted(set(picks)):
        try:
            with open(files[i], "rb") as f:
                raw[i] = f.read()
        except OSError as e:
            raise VideoError(path, f"cannot read frame {name(i)} ({type(e).__name__}: "
                                   f"{e.strerror or e})") from e
        if not raw[i]:
            raise VideoError(path, f"empty frame file {name(i)} (0 bytes)")
        is_jpeg = raw[i][:2] == b"\xff\xd8"
        info[i] = jpeg_info(raw[i]) if is_jpeg else None
        if is_jpeg and info[i] is None:
            raise VideoError(path, f"truncated or damaged JPEG frame {name(i)}")
        if info[i] is not None and info[i][2] in (1, 3):
            sizes[i] = info[i][:2]
        else:  # PNG, CMYK JPEG, ...: decoded to learn its size (and re-encoded below)
            info[i] = None
            img = decode(i)
            sizes[i] = (int(img.shape[1]), int(img.shape[0]))
    first = picks[0]
    source_size = sizes[first]
    for i, s in sizes.items():
        if s != source_size:
            raise VideoError(path, f"frame sizes differ: {name(first)} is {source_size[0]}x"
                                   f"{source_size[1]}, {name(i)} is {s[0]}x{s[1]}")
    out_size = output_size(source_size, frame_size, short_side)
    resize = out_size != source_size

    def rgb(i: int) -> np.ndarray:
        img = decode(i)
        if resize:
            return cv2.resize(img, out_size, interpolation=cv2.INTER_AREA)
        return img

    jpegs = frames = None
    reencoded = 0
    if want_jpegs:
        encoded: dict[int, bytes] = {}
        for i in sorted(set(picks)):
            if info[i] is not None and not resize:
                encoded[i] = raw[i]
            else:
                encoded[i] = encode_jpegs([rgb(i)], quality=jpeg_quality)[0]
        jpegs = [encoded[i] for i in picks]
        reencoded = sum(1 for i in picks if info[i] is None or resize)
    if want_frames:
        images = {i: rgb(i) for i in sorted(set(picks))}
        frames = np.stack([images[i] for i in picks])
    times = (np.asarray(picks, np.float64) - picks[0]) / frame_rate  # the chosen frames' times
    ts = np.round(times * 1e6).astype(np.int64)
    return FrameFolderClip(jpegs=jpegs, frames=frames, width=int(out_size[0]),
                           height=int(out_size[1]),
                           frame_rate=float(fps if fps is not None else frame_rate),
                           timestamps_us=ts,
                           source_size=(int(source_size[0]), int(source_size[1])),
                           files=[files[i] for i in picks], reencoded=reencoded)


def read_frame_folder(path, *, frame_size: tuple[int, int] | None = (340, 256),
                      short_side: int | None = None, fps: float | None = None,
                      max_frames: int | None = None,
                      frame_rate: float = FRAME_FOLDER_FPS) -> Video:
    """Decodes a folder of frame images (see read_frame_folder_jpegs) into a Video."""
    clip = read_frame_folder_jpegs(path, frame_size=frame_size, short_side=short_side, fps=fps,
                                   frame_rate=frame_rate, max_frames=max_frames,
                                   want_jpegs=False, want_frames=True)
    return Video(frames=clip.frames, frame_rate=clip.frame_rate,
                 timestamps_us=clip.timestamps_us, source_size=clip.source_size)


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
