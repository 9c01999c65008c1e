"""Frame sampling: docs/tsn.md, docs/stnet.md, docs/dynamic_images.md, against plain-Python reference rules."""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvid.data import sampling  # noqa: E402
from tfvid.data.sampling import (DenseSampler, MDISampler, SDISampler,  # noqa: E402
                                 StNetSampler, TSNSampler, UniformSampler, get_sampler, mdi_windows, segment_starts,
                                 snippet_indices, stnet_indices, stnet_starts)


def ref_val(n, k, length):
    """TSN authors' _get_val_indices (0-based), Python floats."""
    if n > k + length - 1:
        tick = (n - length + 1) / float(k)
        return [int(tick / 2.0 + tick * x) for x in range(k)]
    return [0] * k


def ref_test(n, k, length):
    tick = (n - length + 1) / float(k)
    return [max(int(tick / 2.0 + tick * x), 0) for x in range(k)]


def ref_stnet(n, t, big_n, mode, draw=None):
    d = n // t
    out = []
    for i in range(t):
        if d >= big_n:
            off = draw(i) if mode == "train" else (d - big_n) // 2
            idx = off + i * d
        elif d >= 1:
            idx = i * d
        else:
            idx = i
        out.append([(j % n) for j in range(idx, idx + big_n)])
    return out


def test_reference_example_val():
    assert segment_starts(30, 3).numpy().tolist() == [5, 15, 25]   # 1-based 6, 16, 26
    assert segment_starts(30, 3).dtype == tf.int32
    # float64 parity eagerly and in a graph (Grappler would rewrite a plain `/ const`)
    assert ref_val(14, 3, 1) == [2, 7, 11]
    assert segment_starts(14, 3).numpy().tolist() == [2, 7, 11]
    assert tf.function(lambda n: segment_starts(n, 3))(tf.constant(14)).numpy().tolist() == \
        [2, 7, 11]


def test_train_draws_one_per_third():
    seen = [set(), set(), set()]
    for s in range(200):
        starts = segment_starts(30, 3, mode="train", seed=[s, 7]).numpy()
        for k, v in enumerate(starts):
            assert 10 * k <= v <= 10 * k + 9
            seen[k].add(int(v))
    assert seen == [set(range(0, 10)), set(range(10, 20)), set(range(20, 30))]


def test_train_needs_seed_and_mode_checked():
    with pytest.raises(ValueError, match="seed"):
        segment_starts(30, 3, mode="train")
    with pytest.raises(ValueError, match="mode"):
        segment_starts(30, 3, mode="eval")


def test_short_videos():
    # n <= K: all zeros in train and val
    assert segment_starts(2, 3, mode="train", seed=[1, 1]).numpy().tolist() == [0, 0, 0]
    assert segment_starts(2, 3).numpy().tolist() == [0, 0, 0]
    # d = 0 but n > K: K sorted draws from {0..n-L}
    for s in range(20):
        v = segment_starts(6, 3, new_length=5, mode="train", seed=[s, 0]).numpy()
        assert list(v) == sorted(v) and v.min() >= 0 and v.max() <= 1
    # n < L: starts 0, the snippet repeats the last frame
    starts = segment_starts(3, 3, new_length=5, mode="train", seed=[0, 0])
    idx = snippet_indices(starts, 5, 3).numpy()
    assert idx.tolist() == [[0, 1, 2, 2, 2]] * 3
    # test mode on a video shorter than 25 frames spreads the repeats
    assert segment_starts(10, 25, mode="test").numpy().tolist() == ref_test(10, 25, 1)


def test_float64_rounding_matches_python():
    f32_differs = 0
    for k in (1, 3, 5, 7, 8, 25):
        for length in (1, 5, 6):
            both = tf.function(lambda ns: [
                tf.map_fn(lambda n: segment_starts(n, k, length, mode), ns)
                for mode in ("val", "test")])
            val, test = (x.numpy() for x in both(tf.range(1, 401)))
            for n in range(1, 401):
                assert val[n - 1].tolist() == ref_val(n, k, length), (n, k, length)
                assert test[n - 1].tolist() == ref_test(n, k, length), (n, k, length)
                f32_differs += _float32_differs(n, k, length)
    assert f32_differs > 0    # the grid contains cases where float32 would be wrong


def _float32_differs(n, k, length):
    if n <= k + length - 1:
        return False
    tick32 = np.float32(n - length + 1) / np.float32(k)
    f32 = [int(tick32 / np.float32(2) + tick32 * np.float32(x)) for x in range(k)]
    return f32 != ref_val(n, k, length)


def test_snippet_indices_clamp():
    idx = snippet_indices(tf.constant([0, 8]), 5, 10).numpy()
    assert idx.tolist() == [[0, 1, 2, 3, 4], [8, 9, 9, 9, 9]]


def test_seeds_reproduce_and_work_in_graphs():
    a = segment_starts(300, 7, mode="train", seed=[3, 4]).numpy()
    b = segment_starts(300, 7, mode="train", seed=tf.constant([3, 4])).numpy()
    c = segment_starts(300, 7, mode="train", seed=[3, 5]).numpy()
    assert (a == b).all() and (a != c).any()
    f = tf.function(lambda n, s: TSNSampler(7, 1)(n, "train", s))
    assert (f(tf.constant(300), tf.constant([3, 4]))[:, 0].numpy() == a).all()
    ds = tf.data.Dataset.from_tensor_slices([30, 300]).map(
        lambda n: TSNSampler(3, 1)(n, "val"))
    assert [x[:, 0].tolist() for x in ds.as_numpy_iterator()] == [ref_val(30, 3, 1),
                                                                ref_val(300, 3, 1)]


def test_mdi_windows_val_example():
    w = mdi_windows(30).numpy()
    assert w.shape == (5, 10)
    assert (w[:, 0] + 1).tolist() == [1, 7, 13, 19, 25]
    assert (w[-1] + 1).tolist() == [25, 26, 27, 28, 29, 30, 30, 30, 30, 30]
    assert (w[1] + 1).tolist() == list(range(7, 17))


def test_mdi_windows_train():
    w = mdi_windows(30, mode="train", seed=[1, 2]).numpy()
    assert (w[:, 0] + 1).tolist() == [3, 9, 15, 21, 27]
    assert (w[-1] + 1).tolist() == [27, 28, 29, 30, 30, 30, 30, 30, 30, 30]
    full = mdi_windows(70, mode="test").numpy()                  # for shape bookkeeping
    assert full.shape[0] == 12
    # n=70 train: 12 windows from frame 3 -> keep min(10, ceil(12/2)) = 6, in temporal order
    sub = mdi_windows(70, mode="train", seed=[5, 5]).numpy()
    all_train = {tuple(r) for r in 2 + 6 * np.arange(12)[:, None] + np.arange(10)}
    assert sub.shape == (6, 10) and sub.max() <= 69
    assert all(tuple(np.minimum(r, 69)) in {tuple(np.minimum(a, 69)) for a in all_train}
               for r in sub)
    assert (np.diff(sub[:, 0]) > 0).all()
    assert (mdi_windows(200, mode="train", seed=[5, 5]).numpy().shape == (10, 10))
    again = mdi_windows(70, mode="train", seed=[5, 5]).numpy()
    assert (again == sub).all()
    assert mdi_windows(4).numpy().tolist() == [[0, 1, 2, 3, 3, 3, 3, 3, 3, 3]]
    assert mdi_windows(2, mode="train", seed=[0, 0]).numpy().shape == (1, 10)


def test_stnet_matches_reference_and_wraps():
    for n in (3, 10, 20, 35, 36, 100, 301):
        for t in (7, 25):
            got = stnet_indices(stnet_starts(n, t, 5, "val"), 5, n).numpy().tolist()
            assert got == ref_stnet(n, t, 5, "val"), (n, t)
    assert stnet_starts(100, 7).numpy().tolist() == [4 + 14 * i for i in range(7)]
    assert StNetSampler()(3, "val").numpy()[6].tolist() == [0, 1, 2, 0, 1]
    seed = [9, 9]
    starts = stnet_starts(100, 7, 5, "train", seed).numpy()
    assert all(14 * i <= s <= 14 * i + 9 for i, s in enumerate(starts))
    assert (starts == stnet_starts(100, 7, 5, "train", seed).numpy()).all()
    got = stnet_indices(starts, 5, 100).numpy().tolist()
    assert got == ref_stnet(100, 7, 5, "train", draw=lambda i: starts[i] - 14 * i)


def test_samplers_shapes_and_configs():
    assert TSNSampler(3, 5)(100, "train", [0, 0]).shape == (3, 5)
    assert TSNSampler(3, 5)(100, "test").shape == (25, 5)
    assert StNetSampler()(100, "train", [0, 0]).shape == (7, 5)
    assert StNetSampler()(100, "test").shape == (25, 5)
    assert UniformSampler(8)(100, "val").numpy()[:, 0].tolist() == ref_val(100, 8, 1)
    assert MDISampler()(30, "val").shape == (5, 10)
    dense = DenseSampler(16, 1)
    assert dense(100, "val").numpy()[:, 0].tolist() == list(range(42, 58))
    assert dense(10, "val").numpy()[:, 0].tolist() == list(range(10)) + [9] * 6
    assert DenseSampler(4, 2)(9, "test").numpy()[:, 0].tolist() == [1, 3, 5, 7]
    for _ in range(5):
        v = dense(40, "train", [_, 1]).numpy()[:, 0]
        assert 0 <= v[0] <= 24 and (np.diff(v) == 1).all()
    for s in (TSNSampler(3, 5), DenseSampler(), UniformSampler(25), StNetSampler(), MDISampler(),
              SDISampler(8)):
        cfg = s.config()
        assert get_sampler(**cfg) == s
        assert all(isinstance(v, (int, str)) for v in cfg.values())
    with pytest.raises(ValueError, match="known"):
        get_sampler("i3d")
    assert sampling.as_seed(3).numpy().tolist() == [3, 0]


def test_sdi_one_window_spanning_the_video():
    """SDI: one step holding T frames, one per equal segment of the whole video (TSN rules)."""
    sdi = SDISampler(8)
    assert (sdi.num_steps("train"), sdi.frames_per_step()) == (1, 8)
    val = sdi(100, "val").numpy()
    assert val.shape == (1, 8) and val[0].tolist() == ref_val(100, 8, 1)
    assert sdi(100, "test").numpy()[0].tolist() == segment_starts(100, 8, 1, "test").numpy().tolist()
    for seed in range(5):
        train = sdi(100, "train", [seed, 0]).numpy()[0]
        assert (train // 12 == np.arange(8)).all()     # k * (100 // 8) + U{0..11}
    np.testing.assert_array_equal(sdi(100, "train", [1, 2]), sdi(100, "train", [1, 2]))
    assert sdi(5, "val").numpy().shape == (1, 8)               # shorter than T: frames repeat


# ------------------------------------------------------------- StNet short-video rule (test)
def wraps(indices) -> bool:
    """True when a super-image holds frames from the end and then the start of the video."""
    return any(any(b < a for a, b in zip(row, row[1:])) for row in np.asarray(indices).tolist())


def test_stnet_short_videos_wrap_with_the_reference_sampling():
    """The bug as met: T=25, N=5 on a 24-frame video (T=4 training clips) wraps around."""
    assert wraps(StNetSampler(4, 5)(24, "test").numpy())
    assert StNetSampler(4, 5).variable_length is False           # default: the reference


@pytest.mark.parametrize("n", [20, 24, 30, 49, 50, 99, 124, 125, 126, 300])
def test_stnet_short_video_rule_no_wrap(n):
    """min_segments = the training T: the largest T <= 25 with T*N <= n, never below 4."""
    sampler = StNetSampler(num_segments=4, frames_per_segment=5, test_segments=25,
                           min_segments=4)
    expected_t = min(25, max(4, n // 5))
    assert sampler.test_steps(n) == expected_t
    for frames in (n, tf.constant(n)):                            # int and tensor lengths
        idx = sampler(frames, "test").numpy()
        assert idx.shape == (expected_t, 5)
        assert not wraps(idx), (n, idx.tolist())
        assert idx.tolist() == ref_stnet(n, expected_t, 5, "test")   # the sampling of T segments
    graph = tf.function(lambda x: sampler(x, "test"))(tf.constant(n, tf.int32)).numpy()
    assert graph.tolist() == idx.tolist()


def test_stnet_short_video_rule_below_the_training_t():
    """A video shorter than training T x N keeps the training T and the existing fallback
    (segment starts i * (n // T), wrapping modulo n), as in training."""
    sampler = StNetSampler(4, 5, 25, min_segments=4)
    assert sampler.test_steps(12) == 4
    assert sampler(12, "test").numpy().tolist() == ref_stnet(12, 4, 5, "test")
    assert sampler(12, "val").numpy().tolist() == ref_stnet(12, 4, 5, "val")   # val: unchanged


def test_stnet_short_video_rule_sampler_properties():
    sampler = StNetSampler(4, 5, 25, min_segments=4)
    assert sampler.variable_length and sampler.num_steps("test") is None
    assert sampler.num_steps("train") == sampler.num_steps("val") == 4
    assert sampler(100, "train", [0, 0]).shape == (4, 5)
    assert get_sampler(**sampler.config()) == sampler
    assert "never below the training T=4" in sampler.short_video_rule()
    assert "wraps" in StNetSampler(4, 5).short_video_rule()
    # min_segments >= test_segments: a fixed T (no rule needed)
    fixed = StNetSampler(7, 5, 7, min_segments=7)
    assert not fixed.variable_length and fixed(10, "test").shape == (7, 5)
    assert sampling.stnet_test_segments(24, 25, 5, 0) == 25
    with pytest.raises(ValueError, match="min_segments"):
        StNetSampler(min_segments=-1)


# ------------------------------------------- feature samplers: DIN (TSN K=8) and VideoMap
def ref_spread_train(n, t, u):
    """VideoMap training positions: the frame holding point k + u_k of bin k (Python floats)."""
    return [min(max(math.floor((k + u[k]) * n / t), 0), max(n - 1, 0)) for k in range(t)]


def test_din_is_tsn_segment_rule_with_8_segments():
    """DIN samples with TSN's segment rule, K = 8: TSNSampler(num_segments=8) as it is."""
    din = TSNSampler(num_segments=8)
    assert (din.num_steps("train"), din.num_steps("val"), din.frames_per_step()) == (8, 8, 1)
    for n in (3, 8, 9, 30, 101, 400):
        assert din(n, "val").numpy()[:, 0].tolist() == ref_val(n, 8, 1)
        assert din(n, "test").numpy()[:, 0].tolist() == ref_test(n, 25, 1)
        d = n // 8
        for s in range(5):
            got = din(n, "train", [s, 8]).numpy()[:, 0]
            if d > 0:
                assert all(k * d <= v < (k + 1) * d for k, v in enumerate(got)), (n, got)
            else:
                assert list(got) == sorted(got) and got.max() < max(n, 1)


@pytest.mark.parametrize("t", [25, 64, 100, 256])
def test_videomap_uniform_val_test_are_bin_centres(t):
    """UniformSampler(T), T = 25..256: the frame holding each bin's centre in val and test
    (TSN's test formula; for n > T TSN's val rule too), repeated frames when n < T."""
    sampler = UniformSampler(t)
    ns = tf.range(1, 601)
    both = tf.function(lambda ns: [tf.map_fn(lambda n: sampler(n, mode)[:, 0], ns)
                                   for mode in ("val", "test")])
    val, test = (x.numpy() for x in both(ns))
    for n in range(1, 601):
        want = [min(v, n - 1) for v in ref_test(n, t, 1)]
        assert val[n - 1].tolist() == want == test[n - 1].tolist(), (n, t)
        if n > t:
            assert want == ref_val(n, t, 1)
            assert len(set(want)) == t                      # distinct frames
        else:                                               # repeats: every frame is used
            assert sorted(set(want)) == list(range(n))
    assert sampler(0, "test").numpy()[:, 0].tolist() == [0] * t


@pytest.mark.parametrize("t", [25, 256])
def test_videomap_uniform_train_jitters_within_bins(t):
    sampler = UniformSampler(t)
    seen = {n: set() for n in (10, 300, 1000)}
    for s in range(30):
        seed = tf.constant([s, 4], tf.int64)
        u = tf.random.stateless_uniform([t], seed, dtype=tf.float64).numpy()
        for n in seen:
            got = sampler(n, "train", seed).numpy()[:, 0].tolist()
            assert got == ref_spread_train(n, t, u), (n, s)
            assert got == sorted(got)
            assert all(math.floor(k * n / t) <= v <= math.ceil((k + 1) * n / t) - 1
                       for k, v in enumerate(got))
            seen[n].update(got)
    assert seen[10] == set(range(10))                     # n < T: repeats of every frame
    if t == 256:   # the bins cover the whole video; TSN's (d = 1) never reach frame 256
        assert seen[300] == set(range(300))
        assert max(segment_starts(300, t, mode="train", seed=[s, 0]).numpy().max()
                   for s in range(5)) == 255
    else:
        assert min(seen[1000]) < 40 and max(seen[1000]) >= 960 and len(seen[1000]) > 400
    # reproducible, in graphs too; jitter=False: the centres in train
    f = tf.function(lambda n, s: sampler(n, "train", s))
    np.testing.assert_array_equal(f(tf.constant(300), tf.constant([1, 2], tf.int64)),
                                  sampler(300, "train", [1, 2]))
    assert (UniformSampler(t, jitter=False)(300, "train", [1, 2]).numpy()
            == sampler(300, "test").numpy()).all()
    with pytest.raises(ValueError, match="seed"):
        sampler(300, "train")


def test_videomap_uniform_config_and_spread_positions():
    s = UniformSampler(64, jitter=False)
    assert s.config() == {"name": "uniform", "num_frames": 64, "jitter": False}
    assert get_sampler(**s.config()) == s
    assert get_sampler("uniform", num_frames=8) == UniformSampler(8)        # old sidecars
    assert (s.num_steps("train"), s.num_steps("test"), s.frames_per_step()) == (64, 64, 1)
    assert sampling.spread_positions(5, 8, "val").numpy().tolist() == [0, 0, 1, 2, 2, 3, 4, 4]
    assert sampling.spread_positions(30, 3).numpy().tolist() == [5, 15, 25]
    with pytest.raises(ValueError, match="num_positions"):
        sampling.spread_positions(30, 0)
