"""Clip augmentation: pure functions on tensors (docs/tsn.md, docs/stnet.md).

A clip is (T, H, W, C), channels-last, on the 8-bit scale (uint8 or float). One crop and one flip
apply to every frame of a clip. Flow stacks interleave x and y on channels ([x1, y1, x2, y2, ...])
so a horizontal flip also maps x -> 255 - x on the even channels.

Training: `multiscale_crop` (TSN corner cropping with scale jitter) or `random_crop` (StNet: a plain
S x S crop of the stored frame), then `random_flip` (`AUGMENTATIONS`, `train_crop_window`).
Evaluation: `center_crop`, `three_crop`, `ten_crop` return (V, T, S, S, C). They first apply TSN's
GroupScale: when the short side of the frames differs from scale_size = input_size * 256 // 224
(256 for 224) the frames are resized (bilinear, aspect kept) so the short side equals it; frames
stored at that size (e.g. 340x256 for 224) are cropped as they are.
Normalisation (`normalize`, `normalization_config`, `channel_affine`, `NORMALIZATION`) lives in
tfvid.data.normalization; the names stay importable from here.
"""
from __future__ import annotations

import tensorflow as tf

from tfvid.data.normalization import (NORMALIZATION, channel_affine,  # noqa: F401
                                      normalization_config, normalize)

RGB_SCALES = (1, .875, .75, .66)
FLOW_SCALES = (1, .875, .75)      # flow and RGB difference


def _seed(seed):
    return tf.constant([seed, 0], tf.int64) if isinstance(seed, int) else seed


# ---------------------------------------------------------------------------- crop geometry
def _crop_size_pairs_tf(width, height, scales, input_size, max_distort):
    """int32 (P, 2) candidate (crop_w, crop_h) pairs for dynamic width/height."""
    base = tf.cast(tf.minimum(width, height), tf.float64)
    sizes = tf.cast(tf.floor(base * tf.constant(scales, tf.float64)), tf.int32)
    sizes = tf.where(tf.abs(sizes - input_size) < 3, input_size, sizes)
    pairs = [(j, i) for i in range(len(scales)) for j in range(len(scales))
             if abs(i - j) <= max_distort]                       # (w index, h index)
    return tf.stack([tf.gather(sizes, [p[0] for p in pairs]),
                     tf.gather(sizes, [p[1] for p in pairs])], axis=1)


_ORIGIN_STEPS = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2),              # the order of docs/tsn.md
                 (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3))


def _fixed_crop_origins_tf(width, height, crop_w, crop_h, more_fixed=True):
    """int32 (13 or 5, 2) (x, y) crop origins in the order of docs/tsn.md."""
    steps = tf.constant(_ORIGIN_STEPS[:13 if more_fixed else 5], tf.int32)
    return steps * tf.stack([(width - crop_w) // 4, (height - crop_h) // 4])[None]


def crop_size_pairs(width: int, height: int, scales=RGB_SCALES, input_size: int = 224,
                    max_distort: int = 1) -> list[tuple[int, int]]:
    """TSN multi-scale candidates: list of (crop_w, crop_h).

    Sizes int(short_side * scale), snapped to input_size when within 2 pixels; width and height
    sizes are paired when their scale indices differ by at most max_distort.
    340x256 -> sizes {256, 224, 192, 168}, 10 pairs.
    """
    pairs = _crop_size_pairs_tf(width, height, tuple(scales), input_size, max_distort)
    return [tuple(int(v) for v in p) for p in pairs.numpy()]


def fixed_crop_origins(width: int, height: int, crop_w: int, crop_h: int,
                       more_fixed: bool = True) -> list[tuple[int, int]]:
    """The 13 (or 5) fixed crop origins (x, y), ws = (W-cw)//4, hs = (H-ch)//4, in the order of docs/tsn.md."""
    return [tuple(int(v) for v in p)
            for p in _fixed_crop_origins_tf(width, height, crop_w, crop_h, more_fixed).numpy()]


def sample_crop_window(height, width, seed, input_size: int = 224, scales=RGB_SCALES,
                       max_distort: int = 1, more_fixed: bool = True) -> tf.Tensor:
    """A random multi-scale crop window int32 [y, x, crop_h, crop_w] (stateless `seed`).

    One of the candidate (w, h) pairs, then one of the 13 fixed origins, uniformly.
    """
    seed = _seed(seed)
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    pairs = _crop_size_pairs_tf(width, height, tuple(scales), input_size, max_distort)
    pick = tf.random.stateless_uniform([], s1, 0, tf.shape(pairs)[0], dtype=tf.int32)
    crop_w, crop_h = pairs[pick, 0], pairs[pick, 1]
    origins = _fixed_crop_origins_tf(width, height, crop_w, crop_h, more_fixed)
    o = origins[tf.random.stateless_uniform([], s2, 0, tf.shape(origins)[0], dtype=tf.int32)]
    return tf.stack([o[1], o[0], crop_h, crop_w])


def resize(clip, size) -> tf.Tensor:
    """Bilinear resize (half-pixel centres, no antialiasing) of (..., H, W, C) to `size` =
    (h, w); float32 out (8-bit value scale). Frames already of that size are only cast (what
    the resize would return, without its cost)."""
    x = tf.cast(clip, tf.float32)
    shape = tf.shape(x)
    size = tf.convert_to_tensor(size, tf.int32)
    same = tf.reduce_all(tf.equal(shape[-3:-1], size))

    def resized():
        flat = tf.reshape(x, tf.concat([[-1], shape[-3:]], 0))      # any leading dims
        out = tf.image.resize(flat, size, method="bilinear", antialias=False)
        return tf.reshape(out, tf.concat([shape[:-3], size, shape[-1:]], 0))

    static = tf.TensorShape(tf.get_static_value(size) if tf.get_static_value(size) is not None
                            else [None, None])
    out = tf.cond(same, lambda: x, resized)
    return tf.ensure_shape(out, x.shape[:-3].concatenate(static).concatenate(x.shape[-1:]))


def multiscale_crop(clip, seed, input_size: int = 224, scales=RGB_SCALES, max_distort: int = 1,
                    more_fixed: bool = True) -> tf.Tensor:
    """(T, H, W, C) -> float32 (T, S, S, C): a random TSN multi-scale crop, resized to S."""
    shape = tf.shape(clip)
    y, x, h, w = tf.unstack(sample_crop_window(shape[1], shape[2], seed, input_size, scales,
                                               max_distort, more_fixed))
    return resize(clip[:, y:y + h, x:x + w, :], [input_size, input_size])


def random_crop_window(height, width, seed, input_size: int = 224) -> tf.Tensor:
    """A plain random crop window int32 [y, x, crop_h, crop_w] of input_size x input_size, the
    origin uniform over all positions (stateless `seed`): StNet's training crop (docs/stnet.md),
    no scale jitter. A side shorter than input_size is taken whole (the crop is then resized)."""
    seed = _seed(seed)
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    crop_h, crop_w = tf.minimum(height, input_size), tf.minimum(width, input_size)
    y = tf.random.stateless_uniform([], s1, 0, height - crop_h + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], s2, 0, width - crop_w + 1, dtype=tf.int32)
    return tf.stack([y, x, crop_h, crop_w])


def random_crop(clip, seed, input_size: int = 224) -> tf.Tensor:
    """(T, H, W, C) -> float32 (T, S, S, C): a random S x S crop of the stored frames (no
    resize unless a side is shorter than S), the same for every frame."""
    shape = tf.shape(clip)
    y, x, h, w = tf.unstack(random_crop_window(shape[1], shape[2], seed, input_size))
    return resize(clip[:, y:y + h, x:x + w, :], [input_size, input_size])


#: build_dataset's training augmentations (a crop, then `random_flip`; tfvid.models.spec's
#: `augmentation` names the paper's): TSN's multi-scale corner crops, or a plain random crop.
AUGMENTATIONS = ("multiscale_crop_flip", "random_crop_flip")


def check_augmentation(augmentation: str) -> None:
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augmentation!r}; known: {AUGMENTATIONS}")


def train_crop_window(augmentation: str, height, width, seed, input_size: int = 224,
                      modality: str = "rgb") -> tf.Tensor:
    """The training crop window int32 [y, x, h, w] of `augmentation` (see AUGMENTATIONS):
    'multiscale_crop_flip' -> `sample_crop_window` (RGB_SCALES for rgb, FLOW_SCALES for flow
    and RGB differences), 'random_crop_flip' -> `random_crop_window`."""
    check_augmentation(augmentation)
    if augmentation == "random_crop_flip":
        return random_crop_window(height, width, seed, input_size)
    scales = RGB_SCALES if modality == "rgb" else FLOW_SCALES
    return sample_crop_window(height, width, seed, input_size, scales)


# ------------------------------------------------------------------------------------- flips
def invert_flow_x(clip) -> tf.Tensor:
    """x -> 255 - x on the even (x) channels of an interleaved flow stack (..., 2L): what a
    horizontal flip does to the values of horizontal flow."""
    clip = tf.convert_to_tensor(clip)
    is_x = tf.range(tf.shape(clip)[-1]) % 2 == 0
    return tf.where(is_x, tf.cast(255, clip.dtype) - clip, clip)


def flip(clip, is_flow: bool = False) -> tf.Tensor:
    """Horizontal flip of (..., H, W, C); for flow stacks also x -> 255 - x on even channels."""
    clip = tf.convert_to_tensor(clip)
    shape = tf.shape(clip)            # reversing axis 1 of a 3-D (rows, W, C) view is faster
    rows = tf.reshape(clip, tf.concat([[-1], shape[-2:]], 0))
    out = tf.ensure_shape(tf.reshape(tf.reverse(rows, axis=[1]), shape), clip.shape)
    return invert_flow_x(out) if is_flow else out


def flip_coin(seed) -> tf.Tensor:
    """The bool scalar of `random_flip`: True with probability 1/2 (stateless `seed`)."""
    return tf.random.stateless_uniform([], _seed(seed)) < 0.5


def random_flip(clip, seed, is_flow: bool = False) -> tf.Tensor:
    """Flips the whole clip with probability 1/2 (stateless `seed`, see `flip_coin`)."""
    return tf.cond(flip_coin(seed), lambda: flip(clip, is_flow), lambda: clip)


# ---------------------------------------------------------------------------- evaluation views
def scale_short_side(clip, input_size: int = 224, scale_size: int | None = None) -> tf.Tensor:
    """TSN GroupScale: short side -> scale_size (default input_size*256//224) unless already
    that size. float32. StNet's 256 test view of weights trained at 224 passes scale_size=256
    (the stored 340 x 256 frame as it is, docs/stnet.md)."""
    target = _scale_target(input_size, scale_size)
    shape = tf.shape(clip)
    h, w = shape[-3], shape[-2]

    def scaled():
        short = tf.minimum(h, w)
        # PIL-style sizes: the long side is int(target * long / short)
        nh = tf.where(h == short, target, (target * h) // short)
        nw = tf.where(w == short, target, (target * w) // short)
        return resize(clip, tf.stack([nh, nw]))

    return tf.cond(tf.minimum(h, w) == target, lambda: tf.cast(clip, tf.float32), scaled)


def _crops(clip, origins, size):
    """(T, H, W, C), (V, 2) (x, y) -> (V, T, size, size, C)."""
    return tf.map_fn(lambda o: clip[:, o[1]:o[1] + size, o[0]:o[0] + size, :], origins,
                     fn_output_signature=tf.TensorSpec([None, size, size, None], clip.dtype))


def _scale_target(input_size: int, scale_size: int | None) -> int:
    if scale_size is None:
        return input_size * 256 // 224
    if int(scale_size) < input_size:
        raise ValueError(f"scale_size {scale_size} is smaller than the crop {input_size}")
    return int(scale_size)


def center_crop(clip, input_size: int = 224, scale_size: int | None = None) -> tf.Tensor:
    """(T, H, W, C) -> float32 (1, T, S, S, C): GroupScale then the centre S x S crop."""
    clip = scale_short_side(clip, input_size, scale_size)
    shape = tf.shape(clip)
    origin = tf.stack([(shape[2] - input_size) // 2, (shape[1] - input_size) // 2])
    return _crops(clip, origin[None], input_size)


def three_crop(clip, input_size: int = 224, scale_size: int | None = None) -> tf.Tensor:
    """(T, H, W, C) -> float32 (3, T, S, S, C): GroupScale then three S x S crops along the
    longer side (start, centre, end), centred on the shorter side."""
    clip = scale_short_side(clip, input_size, scale_size)
    shape = tf.shape(clip)
    h, w = shape[1], shape[2]
    along = tf.maximum(h, w) - input_size
    across = (tf.minimum(h, w) - input_size) // 2
    offsets = tf.stack([0, along // 2, along])
    cross = tf.fill([3], across)
    origins = tf.cond(w >= h, lambda: tf.stack([offsets, cross], 1),
                      lambda: tf.stack([cross, offsets], 1))
    return _crops(clip, origins, input_size)


def ten_crop(clip, input_size: int = 224, is_flow: bool = False,
             scale_size: int | None = None) -> tf.Tensor:
    """(T, H, W, C) -> float32 (10, T, S, S, C): GroupScale, then 4 corners + centre (the first
    five fixed origins, e.g. (0,0), (116,0), (0,32), (116,32), (58,16) for 224 of 340x256),
    then the flips of those five (flow-aware). View order: 5 crops, then their 5 flips."""
    clip = scale_short_side(clip, input_size, scale_size)
    shape = tf.shape(clip)
    origins = _fixed_crop_origins_tf(shape[2], shape[1], input_size, input_size, False)
    views = _crops(clip, origins, input_size)
    return tf.concat([views, flip(views, is_flow)], axis=0)


def eval_views(clip, num_crops: int = 1, input_size: int = 224, is_flow: bool = False,
               scale_size: int | None = None):
    """Evaluation views by count: 1 (centre), 3 (three_crop) or 10 (ten_crop). (V, T, S, S, C).
    scale_size: the short side the frames are scaled to first (default input_size*256//224)."""
    if num_crops == 1:
        return center_crop(clip, input_size, scale_size)
    if num_crops == 3:
        return three_crop(clip, input_size, scale_size)
    if num_crops == 10:
        return ten_crop(clip, input_size, is_flow, scale_size)
    raise ValueError(f"num_crops must be 1, 3 or 10, got {num_crops}")
