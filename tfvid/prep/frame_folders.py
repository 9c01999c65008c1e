"""Frame folders: a folder of frame images (Jester, Something-Something v1: ``<id>/00001.jpg``
...; any *.jpg/*.jpeg/*.png names, in natural sort order) read as a video.

The folder stores no frame rate: its frames are at `frame_rate` frames per second (Jester's 12 by
default). read_frame_folder_jpegs gives the JPEG bytes to store without re-encoding: the stored
JPEG files themselves when no resize is needed (their headers are parsed for the size, the
pixels are not decoded), else each frame decoded, resized (OpenCV INTER_AREA) and encoded once;
PNG frames are decoded and encoded to JPEG. read_frame_folder decodes the frames into a
tfvid.prep.frames.Video (tfvid.prep.video.read_video calls it for a folder).
"""
from __future__ import annotations

import dataclasses
import os
import re

import cv2
import numpy as np

from tfvid.prep.frames import FRAME_FOLDER_FPS, Video, VideoError, output_size
from tfvid.prep.jpeg import decode_image, encode_jpegs, jpeg_info

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")  # frame images of a frame folder


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
