"""Frame samplers: which frames of an n-frame video a model sees (docs/tsn.md, docs/stnet.md,
docs/dynamic_images.md). The per-paper position rules they apply (segment_starts, mdi_windows,
stnet_starts, spread_positions, ...) are in tfvid.data.positions and importable from here.

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

from tfvid.data.positions import (MODES, _check_mode, _randint, _train_seed,  # noqa: F401
                                  as_seed, mdi_windows, segment_starts, snippet_indices,
                                  spread_positions, stnet_indices, stnet_starts,
                                  stnet_test_segments)


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
