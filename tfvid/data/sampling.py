"""Frame sampling: which frames of an n-frame video a model sees (docs/tsn.md, docs/stnet.md, docs/dynamic_images.md).

Everything here is pure TensorFlow and runs inside tf.data graphs. `num_frames` may be a Python
int or a scalar int tensor; `num_segments`, `new_length`, `window`, ... are Python ints. Indices
are 0-based int32. Randomness is stateless: a seed is a shape-(2,) int tensor (a Python int `s`
means [s, 0]) and the same seed always gives the same indices.

Modes: "train" (random, needs a seed), "val" and "test" (deterministic).

Samplers are small frozen dataclasses with one method
    sampler(num_frames, mode, seed=None) -> int32 (T, L)
(T time steps, each made of L frames) and `config()` for export sidecars. The tf.data builder
stacks the L frames of a step on channels (see tfvid.data.modality).

StNet's test sampling of short videos: `StNetSampler(min_segments=<training T>)` (what the
evaluate job uses) gives a video of n < test_segments * N frames the largest T that it holds
without wrapping, never below the training T (`stnet_test_segments`); min_segments=0 (the
default) keeps the reference sampling, where such a video wraps around.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

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


# --------------------------------------------------------------------------------- samplers
class _Sampler:
    name: ClassVar[str] = ""
    variable_length: ClassVar[bool] = False      # True when T depends on the video length

    def config(self) -> dict:
        """JSON-able description for export sidecars: {'name': ..., <fields>}."""
        return {"name": self.name, **dataclasses.asdict(self)}

    def num_steps(self, mode: str):
        """T for `mode`, or None when it depends on the video."""
        raise NotImplementedError

    def frames_per_step(self) -> int:
        """L: frames stacked in one time step."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class TSNSampler(_Sampler):
    """TSN: K snippets of L consecutive frames; `test_segments` snippets in test mode. (T, L)."""
    num_segments: int = 3
    new_length: int = 1
    test_segments: int = 25
    name: ClassVar[str] = "tsn"

    def num_steps(self, mode):
        return self.test_segments if mode == "test" else self.num_segments

    def frames_per_step(self):
        return self.new_length

    def __call__(self, num_frames, mode, seed=None):
        starts = segment_starts(num_frames, self.num_steps(mode), self.new_length, mode, seed)
        return snippet_indices(starts, self.new_length, num_frames)


@dataclasses.dataclass(frozen=True)
class DenseSampler(_Sampler):
    """One clip of `num_frames` frames `stride` apart; random start in train, centred otherwise.

    Frames past the end repeat the last one. Returns (T, 1).
    """
    num_frames: int = 16
    stride: int = 1
    name: ClassVar[str] = "dense"

    def num_steps(self, mode):
        return self.num_frames

    def frames_per_step(self):
        return 1

    def __call__(self, num_frames, mode, seed=None):
        _check_mode(mode)
        n = tf.cast(num_frames, tf.int32)
        slack = tf.maximum(n - ((self.num_frames - 1) * self.stride + 1), 0)
        if mode == "train":
            start = _randint(_train_seed(seed, "DenseSampler"), [], slack + 1)
        else:
            start = slack // 2
        idx = start + self.stride * tf.range(self.num_frames, dtype=tf.int32)
        return tf.clip_by_value(idx, 0, tf.maximum(n - 1, 0))[:, None]


@dataclasses.dataclass(frozen=True)
class UniformSampler(_Sampler):
    """T = `num_frames` positions spread uniformly over the whole video in every mode
    (`spread_positions`; VideoMap: T = 25..256). (T, 1).

    The n frames (or feature rows) are cut into T equal bins [k n/T, (k+1) n/T); each step is
    the frame holding one point of its bin: the centre in val/test (TSN's test rule
    floor(tick/2 + tick k), tick = n/T; for n > T also TSN's val rule), a uniform point in
    train (jitter=True; jitter=False: the centre in train too). Positions never decrease, and
    a video of fewer than T frames repeats frames. Unlike TSN's segment rule the training bins
    cover the whole video (TSN: bins of floor(n/T) frames, the rest never sampled) and short
    videos get spread positions, not frame 0. DIN's "TSN segment rule, K = 8" is exactly
    TSNSampler(num_segments=8) (test: its test_segments snippets).
    """
    num_frames: int = 8
    jitter: bool = True
    name: ClassVar[str] = "uniform"

    def num_steps(self, mode):
        return self.num_frames

    def frames_per_step(self):
        return 1

    def __call__(self, num_frames, mode, seed=None):
        return spread_positions(num_frames, self.num_frames, mode, seed,
                                jitter=self.jitter)[:, None]


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


@dataclasses.dataclass(frozen=True)
class StNetSampler(_Sampler):
    """StNet: T segments of N consecutive frames (wrapping modulo n); T = test_segments in test.

    Returns (T, N); stacking the N frames gives the 3N-channel super-image.

    min_segments (test mode only; 0 = off, the reference sampling): the short-video rule of
    `stnet_test_segments`. With 0 < min_segments < test_segments (min_segments = the training
    T), a video of n < test_segments * N frames gets T = max(min_segments, n // N) super-images
    instead of wrapping around: T then depends on the video, so the sampler is
    `variable_length` (build_dataset batches such videos with 'num_steps' and cyclic padding;
    tfvid.eval.protocol runs each video on its own T steps, so padding changes no score).
    """
    num_segments: int = 7
    frames_per_segment: int = 5
    test_segments: int = 25
    min_segments: int = 0
    name: ClassVar[str] = "stnet"

    def __post_init__(self):
        if int(self.min_segments) < 0:
            raise ValueError(f"StNetSampler: min_segments must be >= 0 (0 = off), got "
                             f"{self.min_segments}")

    @property
    def variable_length(self) -> bool:
        """True when the test T depends on the video (the short-video rule is on)."""
        return 0 < self.min_segments < self.test_segments

    def num_steps(self, mode):
        if mode == "test":
            return None if self.variable_length else self.test_segments
        return self.num_segments

    def frames_per_step(self):
        return self.frames_per_segment

    def test_steps(self, num_frames):
        """T of the test sampling for an n-frame video (see `stnet_test_segments`)."""
        return stnet_test_segments(num_frames, self.test_segments, self.frames_per_segment,
                                   self.min_segments)

    def short_video_rule(self) -> str:
        """The test-time rule for short videos, in words (for evaluation reports)."""
        t, n, low = self.test_segments, self.frames_per_segment, self.min_segments
        if not self.variable_length:
            if low >= t:
                return f"fixed T={t} (min_segments {low} >= test_segments)"
            return (f"fixed T={t}: a video of fewer than {t * n} frames wraps around (frames "
                    f"from its end, then its start, in one super-image)")
        return (f"T = min({t}, max({low}, n // {n})): the largest T <= {t} with T*{n} <= n "
                f"frames (no wrapping), never below the training T={low}; a video of fewer "
                f"than {low * n} frames gets T={low} with the sampler's fallback (segment starts "
                f"i*(n//{low}), frames wrap modulo n), as in training")

    def __call__(self, num_frames, mode, seed=None):
        steps = self.num_steps(mode)
        if mode == "test" and steps is None:
            steps = self.test_steps(num_frames)
        starts = stnet_starts(num_frames, steps, self.frames_per_segment, mode, seed)
        return stnet_indices(starts, self.frames_per_segment, num_frames)


@dataclasses.dataclass(frozen=True)
class MDISampler(_Sampler):
    """Multiple dynamic images: windows of `window` frames every `stride`. (W, window), W varies."""
    window: int = 10
    stride: int = 6
    max_windows: int = 10
    name: ClassVar[str] = "mdi"
    variable_length: ClassVar[bool] = True

    def num_steps(self, mode):
        return None

    def frames_per_step(self):
        return self.window

    def __call__(self, num_frames, mode, seed=None):
        return mdi_windows(num_frames, self.window, self.stride, mode, seed, self.max_windows)


@dataclasses.dataclass(frozen=True)
class SDISampler(_Sampler):
    """Single dynamic image (Bilen et al., section 4.3): one window of `frames` frames spread
    over the whole video, one per equal segment (TSN rules: random in train, centred
    otherwise). (1, frames): stacked, the window of build_dynamic_image_net(window=frames,
    num_windows=1). Sampling stands in for "every frame of the video" so that the window has a
    fixed length (approximate rank pooling weights frames by their order only)."""
    frames: int = 25
    name: ClassVar[str] = "sdi"

    def num_steps(self, mode):
        return 1

    def frames_per_step(self):
        return self.frames

    def __call__(self, num_frames, mode, seed=None):
        return segment_starts(num_frames, self.frames, 1, mode, seed)[None, :]


SAMPLERS = {cls.name: cls for cls in (TSNSampler, DenseSampler, UniformSampler, StNetSampler,
                                      MDISampler, SDISampler)}


def get_sampler(name: str, **kwargs) -> _Sampler:
    """Sampler by name ('tsn', 'dense', 'uniform', 'stnet', 'mdi', 'sdi') with its keyword
    arguments.

    `get_sampler(**sampler.config())` rebuilds a sampler from its sidecar description.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known: {sorted(SAMPLERS)}")
    return SAMPLERS[name](**kwargs)
