"""A synthetic action dataset of real video files in UCF101 layout, and long benchmark videos.

Each clip shows one handwritten digit sprite (sklearn's 8x8 digits, upscaled) on a textured
background. The class is the way the sprite changes over time:

    time-reversal pairs   MoveLeft/MoveRight, Grow/Shrink, RotateClockwise/RotateCounterClockwise,
                          FadeIn/FadeOut: a clip played backwards is a clip of the partner class
    order-free classes    Still, Blink (on/off), Bounce (vertical oscillation), Shake (jitter):
                          reversing a clip gives another clip of the same class

Both members of a pair show the same digit (a random instance of it per clip) and their per-frame
state (position, size, angle, opacity) has the same distribution, so a single frame tells the
pair but not the member: an order-blind classifier separates the order-free classes and the
pairs, and is at chance inside a pair. Everything is drawn from numpy generators seeded by
(seed, class, group, clip), so a seed reproduces every frame (and, for mpeg4/libx264, every byte).

Layout written by make_synthetic_dataset (as UCF101):

    root/videos/<Class>/v_<Class>_g<GG>_c<CC>.<ext>
    root/ucfTrainTestlist/classInd.txt        "1 MoveLeft" (1-based)
    root/ucfTrainTestlist/trainlist0<s>.txt   "MoveLeft/v_MoveLeft_g02_c01.avi 1" (1-based label)
    root/ucfTrainTestlist/testlist0<s>.txt    "MoveLeft/v_MoveLeft_g01_c01.avi"

Split s tests the s-th block of groups (UCF101 split 1 tests groups 1-7 of 25: about 28%),
trains on the others; up to three splits are written. As in UCF101, clips of one group share a
background (each clip crops and tints it differently), so test videos show backgrounds never seen
in training. The background of a group is the same for every class: it carries no class
information, and a model cannot reach high training accuracy by memorising backgrounds.
"""
from __future__ import annotations

import functools
import math
import os

import cv2
import numpy as np

from tfvid.atomic import atomic_path
from tfvid.prep.video_writer import write_video

CLASS_NAMES = ("MoveLeft", "MoveRight", "Still", "Grow", "Shrink", "Blink", "RotateClockwise",
               "RotateCounterClockwise", "Bounce", "Shake", "FadeIn", "FadeOut")
TIME_REVERSAL_PAIRS = [("MoveLeft", "MoveRight"), ("Grow", "Shrink"),
                       ("RotateClockwise", "RotateCounterClockwise"), ("FadeIn", "FadeOut")]
ORDER_FREE_CLASSES = ["Still", "Blink", "Bounce", "Shake"]
# Digit shown by each class: shared inside a pair, distinct otherwise.
CLASS_DIGITS = {"MoveLeft": 2, "MoveRight": 2, "Grow": 3, "Shrink": 3, "RotateClockwise": 4,
                "RotateCounterClockwise": 4, "FadeIn": 5, "FadeOut": 5,
                "Still": 0, "Blink": 6, "Bounce": 7, "Shake": 8}

_SPRITE = 48          # sprite canvas side; the digit fills the central 32x32
_DIGIT = 32
_PAD = 16             # background margin used for per-clip crop offsets


def valid_num_classes() -> list[int]:
    """Class counts that take a prefix of CLASS_NAMES without splitting a pair."""
    partner = {a: b for a, b in TIME_REVERSAL_PAIRS} | {b: a for a, b in TIME_REVERSAL_PAIRS}
    out = []
    for k in range(1, len(CLASS_NAMES) + 1):
        chosen = set(CLASS_NAMES[:k])
        if all(partner[c] in chosen for c in chosen if c in partner):
            out.append(k)
    return out


def check_num_classes(num_classes: int, name: str = "num_classes") -> None:
    """ValueError, in words a user can act on, unless `num_classes` is in valid_num_classes().
    name: how the message calls the value (e.g. a flag: '--synthetic_classes')."""
    valid = valid_num_classes()
    if num_classes in valid:
        return
    choices = ", ".join(str(k) for k in valid)
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"{name}={num_classes}: the synthetic set has {len(CLASS_NAMES)} "
                         f"classes; choose one of {choices}")
    partner = {a: b for a, b in TIME_REVERSAL_PAIRS} | {b: a for a, b in TIME_REVERSAL_PAIRS}
    chosen = CLASS_NAMES[:num_classes]
    split = next(c for c in chosen if c in partner and partner[c] not in chosen)
    pair = "/".join(sorted((split, partner[split]), key=CLASS_NAMES.index))
    raise ValueError(f"{name}={num_classes} would split the time-reversal pair {pair} "
                     f"(classes are taken in a fixed order, pairs side by side); choose one "
                     f"of {choices}")


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download
    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target


def _sprite(rng: np.random.Generator, digit: int) -> np.ndarray:
    """Alpha mask float32 (_SPRITE, _SPRITE) of a random instance of `digit`."""
    images, target = _digits()
    idx = np.flatnonzero(target == digit)
    img = images[idx[rng.integers(len(idx))]]
    big = np.clip(cv2.resize(img, (_DIGIT, _DIGIT), interpolation=cv2.INTER_CUBIC), 0, 1)
    out = np.zeros((_SPRITE, _SPRITE), np.float32)
    o = (_SPRITE - _DIGIT) // 2
    out[o:o + _DIGIT, o:o + _DIGIT] = big
    return out


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Float32 (height, width, 3) background in about [25, 150]: blobs plus fine grain."""
    low = rng.random((height // 12 + 2, width // 12 + 2, 3)).astype(np.float32)
    low = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 0.8)
    tint = rng.uniform(0.6, 1.0, 3).astype(np.float32)
    return 25 + tint * (85 * np.clip(low, 0, 1) + 45 * grain[..., None])


def _colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(150, 256), 255]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _motion(name: str, rng: np.random.Generator, n: int, width: int, height: int) -> dict:
    """Per-frame sprite state (n,) arrays cx, cy (pixels), scale (x base size), angle (degrees,
    counter-clockwise), opacity in [0, 1]."""
    u = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    span = rng.uniform(0.6, 0.9)                  # fraction of the path covered (speed variation)
    p = rng.uniform(0.0, 1.0 - span) + span * u   # start phase symmetric under reversal
    ones = np.ones(n)
    cx = ones * width * (0.5 + rng.uniform(-0.12, 0.12))
    cy = ones * height * (0.5 + rng.uniform(-0.12, 0.12))
    scale, angle, opacity = ones * rng.uniform(0.8, 1.1), ones * rng.uniform(-10, 10), ones * 1.0
    lerp = lambda a, b: a + (b - a) * p  # noqa: E731
    if name in ("MoveLeft", "MoveRight"):
        lo, hi = width * 0.2, width * 0.8
        cx = lerp(hi, lo) if name == "MoveLeft" else lerp(lo, hi)
    elif name in ("Grow", "Shrink"):
        scale = lerp(0.45, 1.35) if name == "Grow" else lerp(1.35, 0.45)
    elif name in ("FadeIn", "FadeOut"):
        opacity = lerp(0.05, 1.0) if name == "FadeIn" else lerp(1.0, 0.05)
    elif name in ("RotateClockwise", "RotateCounterClockwise"):
        sign = -1.0 if name == "RotateClockwise" else 1.0   # positive angle = counter-clockwise
        angle = rng.uniform(0, 360) + sign * rng.uniform(180, 300) * u
    elif name == "Still":
        pass
    elif name == "Blink":
        period = rng.uniform(8, 14)
        phase = rng.uniform(0, period)
        opacity = np.where(((np.arange(n) + phase) % period) < period / 2, 1.0, 0.0)
    elif name == "Bounce":
        cycles = rng.uniform(1.5, 3.0)
        cy = height * (0.5 + 0.2 * np.sin(2 * np.pi * cycles * u + rng.uniform(0, 2 * np.pi)))
    elif name == "Shake":
        cx = cx + np.clip(rng.normal(0, 0.035 * width, n), -0.08 * width, 0.08 * width)
        cy = cy + np.clip(rng.normal(0, 0.02 * height, n), -0.05 * height, 0.05 * height)
    else:
        raise ValueError(f"unknown synthetic class {name!r}; classes: {', '.join(CLASS_NAMES)}")
    return dict(cx=cx, cy=cy, scale=scale, angle=angle, opacity=opacity)


def _compose(backgrounds, tracks, n: int, width: int, height: int) -> np.ndarray:
    """Draws sprite tracks over backgrounds (callable k -> float32 (H, W, 3)) -> uint8 (n, H, W, 3)."""
    out = np.empty((n, height, width, 3), np.uint8)
    c = _SPRITE / 2.0
    for k in range(n):
        img = backgrounds(k).copy()
        for sprite, colour, base, st in tracks:
            m = cv2.getRotationMatrix2D((c, c), float(st["angle"][k]), float(base * st["scale"][k]))
            m[:, 2] += (st["cx"][k] - c, st["cy"][k] - c)
            alpha = cv2.warpAffine(sprite, m, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            alpha = (alpha * float(st["opacity"][k]))[..., None]
            img = img * (1.0 - alpha) + colour * alpha
        out[k] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out


def _base_scale(height: int) -> float:
    return 0.4 * height / _DIGIT   # digit height about 40% of the frame at scale 1


def render_clip(class_name: str, *, num_frames: int = 48, frame_size: tuple[int, int] = (160, 120),
                seed=0, group_seed=None) -> np.ndarray:
    """Frames uint8 (num_frames, H, W, 3) of one clip of `class_name`.

    seed: int or sequence of ints for the clip's generator; group_seed (default: seed) seeds the
    background texture, which clips of one group share (each clip crops and tints it differently).
    """
    width, height = frame_size
    rng = np.random.default_rng(seed)
    grng = np.random.default_rng(seed if group_seed is None else group_seed)
    texture = _texture(grng, width + 2 * _PAD, height + 2 * _PAD)
    ox, oy = rng.integers(0, 2 * _PAD + 1, 2)
    bg = texture[oy:oy + height, ox:ox + width] * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    digit = CLASS_DIGITS.get(class_name)
    if digit is None:
        raise ValueError(f"unknown synthetic class {class_name!r}; classes: {', '.join(CLASS_NAMES)}")
    track = (_sprite(rng, digit), _colour(rng), _base_scale(height),
             _motion(class_name, rng, num_frames, width, height))
    return _compose(lambda k: bg, [track], num_frames, width, height)


def _test_group_blocks(groups: int) -> list[list[int]]:
    block = max(1, round(groups * 7 / 25))
    if block >= groups:
        block = groups - 1
    return [list(range(s * block + 1, (s + 1) * block + 1))
            for s in range(3) if (s + 1) * block <= groups]


def _write_atomic(path: str, frames: np.ndarray, fps: float) -> None:
    with atomic_path(path) as tmp:
        write_video(tmp, frames, fps=fps)


def make_synthetic_dataset(root, *, num_classes: int = 10, videos_per_class: int = 12,
                           groups: int = 4, frame_size: tuple[int, int] = (160, 120),
                           num_frames: tuple[int, int] = (40, 60), fps: float = 25, seed: int = 0,
                           ext: str = ".avi") -> dict:
    """Writes the synthetic dataset under `root` in UCF101 layout (see the module docstring).

    Clip i of a class belongs to group i % groups + 1 (clip number i // groups + 1); each clip has
    a random length in [num_frames[0], num_frames[1]]. frame_size is (width, height), even.

    Returns a summary dict: root, videos_dir, splits_dir, class_names, num_classes, num_videos,
    num_train / num_test / test_groups (split 1), splits {s: {train, test, test_groups}},
    videos (list of {path relative to videos_dir, label (0-based), class_name, group, clip,
    num_frames}), frame_size, fps, ext.
    """
    check_num_classes(num_classes)
    if groups < 2 or videos_per_class < groups:
        raise ValueError(f"need groups >= 2 and videos_per_class >= groups (one clip per group at "
                         f"least), got groups={groups}, videos_per_class={videos_per_class}")
    lo, hi = num_frames
    if not 1 <= lo <= hi:
        raise ValueError(f"num_frames must be (min, max) with 1 <= min <= max, got {num_frames}")
    if not ext.startswith("."):
        ext = "." + ext
    root = os.fspath(root)
    videos_dir = os.path.join(root, "videos")
    splits_dir = os.path.join(root, "ucfTrainTestlist")
    os.makedirs(splits_dir, exist_ok=True)
    names = list(CLASS_NAMES[:num_classes])

    videos = []
    for label, name in enumerate(names):
        cid = CLASS_NAMES.index(name)
        os.makedirs(os.path.join(videos_dir, name), exist_ok=True)
        for i in range(videos_per_class):
            g, c = i % groups + 1, i // groups + 1
            rng = np.random.default_rng([seed, cid, g, c])
            n = int(rng.integers(lo, hi + 1))
            frames = render_clip(name, num_frames=n, frame_size=frame_size,
                                 seed=[seed, cid, g, c, 1], group_seed=[seed, g])
            rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}{ext}"
            _write_atomic(os.path.join(videos_dir, rel), frames, fps)
            videos.append(dict(path=rel, label=label, class_name=name, group=g, clip=c,
                               num_frames=n))

    with open(os.path.join(splits_dir, "classInd.txt"), "w") as f:
        f.writelines(f"{i + 1} {name}\n" for i, name in enumerate(names))
    splits = {}
    for s, test_groups in enumerate(_test_group_blocks(groups), start=1):
        train = [v for v in videos if v["group"] not in test_groups]
        test = [v for v in videos if v["group"] in test_groups]
        with open(os.path.join(splits_dir, f"trainlist{s:02d}.txt"), "w") as f:
            f.writelines(f"{v['path']} {v['label'] + 1}\n" for v in train)
        with open(os.path.join(splits_dir, f"testlist{s:02d}.txt"), "w") as f:
            f.writelines(f"{v['path']}\n" for v in test)
        splits[s] = dict(train=len(train), test=len(test), test_groups=test_groups)

    return dict(root=root, videos_dir=videos_dir, splits_dir=splits_dir, class_names=names,
                num_classes=num_classes, num_videos=len(videos), num_train=splits[1]["train"],
                num_test=splits[1]["test"], test_groups=splits[1]["test_groups"], splits=splits,
                videos=videos, frame_size=tuple(frame_size), fps=fps, ext=ext)


def make_long_video(path, num_frames: int = 250, frame_size: tuple[int, int] = (340, 256),
                    seed: int = 0, fps: float = 25) -> str:
    """Writes a benchmark video of realistic length and size (10 s at 25 fps, TSN's 340x256):
    three sprites (moving, bouncing, rotating) over a slowly panning textured background, so
    flow and decoding costs resemble real footage. Returns the path."""
    width, height = frame_size
    rng = np.random.default_rng([seed, 1000])
    pan = 2 * _PAD + int(math.ceil(0.1 * width))
    texture = _texture(rng, width + pan, height + 2 * _PAD)
    offsets = np.linspace(0, pan - 1, num_frames).round().astype(int)
    tracks = []
    for name, digit, x in (("MoveRight", 2, None), ("Bounce", 7, 0.2), ("RotateClockwise", 4, 0.8)):
        state = _motion(name, rng, num_frames, width, height)
        if x is not None:   # keep the three sprites apart
            state["cx"] = state["cx"] - width / 2 + x * width
        tracks.append((_sprite(rng, digit), _colour(rng), 0.8 * _base_scale(height), state))
    frames = _compose(lambda k: texture[_PAD:_PAD + height, offsets[k]:offsets[k] + width],
                      tracks, num_frames, width, height)
    path = os.fspath(path)
    _write_atomic(path, frames, fps)
    return path
