"""Frame-position rules of the papers: which frames of an n-frame video a model sees, as pure
TensorFlow functions (docs/tsn.md, docs/stnet.md, docs/dynamic_images.md).

    segment_starts / snippet_indices       TSN snippets
    spread_positions                       T positions spread over the whole video (VideoMap)
    mdi_windows                            multiple-dynamic-image windows
    stnet_starts / stnet_test_segments / stnet_indices   StNet segments

They run inside tf.data graphs. `num_frames` may be a Python int or a scalar int tensor;
`num_segments`, `new_length`, `window`, ... are Python ints. Indices are 0-based int32.
Randomness is stateless: a seed is a shape-(2,) int tensor (a Python int `s` means [s, 0]) and
the same seed always gives the same indices. Modes: "train" (random, needs a seed), "val" and
"test" (deterministic). The sampler objects over these rules are in tfvid.data.sampling.
"""
from __future__ import annotations

import tensorflow as tf

MODES = ("train", "val", "test")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def as_seed(seed) -> tf.Tensor:
    """A stateless seed: shape-(2,) int tensor (an int s becomes [s, 0])."""
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int64)
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise ValueError(f"seed must be an int or a shape-(2,) int tensor, got dtype {seed.dtype}")
    return seed


def _train_seed(seed, what: str) -> tf.Tensor:
    if seed is None:
        raise ValueError(f"{what}: mode 'train' needs a stateless seed (shape-(2,) int tensor)")
    return as_seed(seed)


def _randint(seed, shape, maxval) -> tf.Tensor:
    """Uniform int32 in [0, maxval) (maxval is clamped to >= 1 so unused branches stay valid)."""
    return tf.random.stateless_uniform(shape, seed, minval=0, maxval=tf.maximum(maxval, 1),
                                       dtype=tf.int32)


# --------------------------------------------------------------------------------------- TSN
def segment_starts(num_frames, num_segments: int, new_length: int = 1, mode: str = "val",
                   seed=None) -> tf.Tensor:
    """TSN snippet starts, int32 (K,), 0-based (docs/tsn.md).

    train: d = floor((n-L+1)/K); d > 0: k*d + U{0..d-1}; else n > K: K sorted draws from
      {0..n-L}; else zeros.
    val: n > K+L-1: floor(tick/2 + tick*k) with tick = float64(n-L+1)/K; else zeros.
    test: the same tick formula without the length condition (callers pass K=25), clamped >= 0.
    """
    _check_mode(mode)
    k_n, length = int(num_segments), int(new_length)
    if k_n < 1 or length < 1:
        raise ValueError(f"num_segments and new_length must be >= 1, got {k_n}, {length}")
    n = tf.cast(num_frames, tf.int32)
    k = tf.range(k_n, dtype=tf.int32)
    avail = n - length + 1                      # number of valid starts
    if mode == "train":
        seed = _train_seed(seed, "segment_starts")
        d = avail // k_n
        return tf.case([
            (d > 0, lambda: k * d + _randint(seed, [k_n], d)),
            (n > k_n, lambda: tf.sort(_randint(seed, [k_n], avail))),
        ], default=lambda: tf.zeros([k_n], tf.int32))
    # divide_no_nan, not `/`: in graphs (tf.function, tf.data) Grappler's constant folding turns
    # x / const into x * (1 / const), which breaks float64 parity (n=14, K=3 would give 6, not 7).
    tick = tf.math.divide_no_nan(tf.cast(avail, tf.float64), tf.constant(k_n, tf.float64))
    half = tf.math.divide_no_nan(tick, tf.constant(2.0, tf.float64))
    ticks = tf.cast(tf.floor(half + tick * tf.cast(k, tf.float64)), tf.int32)
    if mode == "test":
        return tf.maximum(ticks, 0)
    return tf.where(n > k_n + length - 1, ticks, tf.zeros_like(ticks))


def snippet_indices(starts, new_length: int, num_frames) -> tf.Tensor:
    """(K,) starts -> int32 (K, L): s, s+1, ..., s+L-1, clamped to the last frame."""
    starts = tf.cast(starts, tf.int32)
    last = tf.cast(num_frames, tf.int32) - 1
    idx = starts[:, None] + tf.range(int(new_length), dtype=tf.int32)[None, :]
    return tf.clip_by_value(idx, 0, tf.maximum(last, 0))


# --------------------------------------------------------------------------- dynamic images
def mdi_windows(num_frames, window: int = 10, stride: int = 6, mode: str = "val", seed=None,
                max_windows: int = 10) -> tf.Tensor:
    """Multiple-dynamic-image windows, int32 (num_windows, window), 0-based (docs/dynamic_images.md).

    1-based first start 1 at val/test, 3 in train (or the last frame for shorter videos); starts
    f, f+stride, ... while f <= n; windows past the end repeat the last frame. n=30 val gives
    1-based starts 1, 7, 13, 19, 25. In train, when there are more than `max_windows` windows a
    random subset of min(max_windows, ceil(nr/2)) is kept, in temporal order (stateless with
    `seed`; with seed=None the draw uses TF's global random state, i.e. is not reproducible).
    """
    _check_mode(mode)
    n = tf.cast(num_frames, tf.int32)
    last = tf.maximum(n - 1, 0)
    first = tf.minimum(2 if mode == "train" else 0, last)
    nr = (last - first) // stride + 1
    starts = first + stride * tf.range(nr, dtype=tf.int32)
    idx = tf.minimum(starts[:, None] + tf.range(window, dtype=tf.int32)[None, :], last)
    if mode != "train":
        return idx

    def subset():
        m = tf.minimum(max_windows, (nr + 1) // 2)
        if seed is None:
            noise = tf.random.uniform([nr])
        else:
            noise = tf.random.stateless_uniform([nr], as_seed(seed))
        keep = tf.sort(tf.argsort(noise)[:m])
        return tf.gather(idx, keep)

    return tf.cond(nr > max_windows, subset, lambda: idx)


# ------------------------------------------------------------------------------------ StNet
def stnet_starts(num_frames, num_segments, frames_per_segment: int = 5, mode: str = "val",
                 seed=None) -> tf.Tensor:
    """StNet segment starts, int32 (T,) (docs/stnet.md; may exceed n: wrap with % n).

    d = n // T. train: U{0..d-N} + i*d when d >= N (one draw per segment), else i*d, or i when
    d = 0. val/test: (d-N)//2 + i*d when d >= N, else the same fallbacks.
    `num_segments` is a Python int, or in val/test also a scalar int tensor (the per-video T
    of `StNetSampler(min_segments=...)`).
    """
    _check_mode(mode)
    big_n = int(frames_per_segment)
    n = tf.cast(num_frames, tf.int32)
    if mode == "train" or not tf.is_tensor(num_segments):
        num_segments = int(num_segments)
    t_n = num_segments if isinstance(num_segments, int) else tf.cast(num_segments, tf.int32)
    i = tf.range(t_n, dtype=tf.int32)
    d = n // t_n
    if mode == "train":
        offset = _randint(_train_seed(seed, "stnet_starts"), [t_n], d - big_n + 1)
    else:
        offset = tf.fill([t_n], (d - big_n) // 2)
    fallback = tf.where(d >= 1, i * d, i)
    return tf.where(d >= big_n, offset + i * d, fallback)


def stnet_test_segments(num_frames, test_segments: int = 25, frames_per_segment: int = 5,
                        min_segments: int = 0):
    """T of StNet's test sampling for an n-frame video: the short-video rule.

    min_segments = 0: always `test_segments` (the reference sampling: a video of fewer than
    test_segments * N frames wraps around, i.e. one super-image may hold frames from the end and
    then from the start of the video). min_segments > 0 (the training T): the largest
    T <= test_segments that the video holds without wrapping (T * N <= n), but never below
    min_segments; a video shorter than min_segments * N frames gets T = min_segments with
    stnet_starts' fallback (starts i * (n // T), wrapping modulo n), the sampling the model was
    trained with on such videos. Works on Python ints (returns an int) and on int tensors.
    """
    test_t, big_n, low = int(test_segments), int(frames_per_segment), int(min_segments)
    if low <= 0 or low >= test_t:
        return test_t if low <= 0 else min(low, test_t)
    if isinstance(num_frames, int):
        return min(test_t, max(low, num_frames // big_n))
    n = tf.cast(num_frames, tf.int32)
    return tf.clip_by_value(n // big_n, low, test_t)


def stnet_indices(starts, frames_per_segment: int, num_frames) -> tf.Tensor:
    """(T,) starts -> int32 (T, N): s, s+1, ..., s+N-1 modulo n (indices wrap around)."""
    starts = tf.cast(starts, tf.int32)
    n = tf.maximum(tf.cast(num_frames, tf.int32), 1)
    return (starts[:, None] + tf.range(int(frames_per_segment), dtype=tf.int32)[None, :]) % n


def spread_positions(num_frames, num_positions: int, mode: str = "val", seed=None, *,
                     jitter: bool = True) -> tf.Tensor:
    """T positions spread uniformly over an n-frame video, int32 (T,), 0-based, sorted.

    Bin k = [k n/T, (k+1) n/T). val/test (and train with jitter=False): the frame holding the
    bin's centre, TSN's test rule floor(tick/2 + tick k) with tick = n/T (float64, as
    segment_starts(n, T, 1, 'test')). train: floor((k + u_k) n / T), u_k ~ U[0, 1) (float64,
    stateless, one draw per bin). Clamped to [0, n-1]; n < T: positions repeat (the frame
    holding each point).
    """
    _check_mode(mode)
    t_n = int(num_positions)
    if t_n < 1:
        raise ValueError(f"num_positions must be >= 1, got {t_n}")
    n = tf.cast(num_frames, tf.int32)
    last = tf.maximum(n - 1, 0)
    if mode != "train" or not jitter:
        return tf.minimum(segment_starts(n, t_n, 1, "test"), last)
    u = tf.random.stateless_uniform([t_n], _train_seed(seed, "spread_positions"),
                                    dtype=tf.float64)
    # divide_no_nan, not `/`: Grappler rewrites x / const as x * (1 / const) in graphs (see
    # segment_starts), which would break float64 parity with Python's floor((k + u) * n / T).
    pos = tf.math.divide_no_nan((tf.range(t_n, dtype=tf.float64) + u) * tf.cast(n, tf.float64),
                                tf.constant(t_n, tf.float64))
    return tf.clip_by_value(tf.cast(tf.floor(pos), tf.int32), 0, last)
