"""Tests for tfvid.prep.synthetic: UCF101 layout, decodable files, determinism, time reversal."""
import os

import numpy as np
import pytest

from tfvid.prep import synthetic as sy
from tfvid.prep.video import read_video

SIZE = (64, 48)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    summary = sy.make_synthetic_dataset(root, num_classes=3, videos_per_class=4, groups=2,
                                        frame_size=SIZE, num_frames=(10, 14), seed=3, ext=".avi")
    return root, summary


def _centroids(frames):
    """Per-frame (x, y) centroid of the sprite: its pixels are far brighter than the background."""
    out = []
    for f in frames.astype(np.float32):
        mask = f.max(-1) > 200
        ys, xs = np.nonzero(mask)
        out.append((xs.mean(), ys.mean()) if len(xs) else (np.nan, np.nan))
    return np.array(out)


def test_class_lists_are_consistent():
    pair_members = [c for p in sy.TIME_REVERSAL_PAIRS for c in p]
    assert sorted(pair_members + sy.ORDER_FREE_CLASSES) == sorted(sy.CLASS_NAMES)
    for a, b in sy.TIME_REVERSAL_PAIRS:
        assert sy.CLASS_DIGITS[a] == sy.CLASS_DIGITS[b]
    digits = [sy.CLASS_DIGITS[a] for a, _ in sy.TIME_REVERSAL_PAIRS] + \
             [sy.CLASS_DIGITS[c] for c in sy.ORDER_FREE_CLASSES]
    assert len(set(digits)) == len(digits)   # one digit per pair / order-free class
    assert 10 in sy.valid_num_classes() and 12 in sy.valid_num_classes()
    assert 1 not in sy.valid_num_classes() and 4 not in sy.valid_num_classes()


def test_ucf101_layout_and_split_files(dataset):
    root, s = dataset
    names = ["MoveLeft", "MoveRight", "Still"]
    assert s["class_names"] == names and s["num_classes"] == 3
    assert s["num_videos"] == 12 and len(s["videos"]) == 12
    assert (s["num_train"], s["num_test"], s["test_groups"]) == (6, 6, [1])
    lists = os.path.join(root, "ucfTrainTestlist")
    assert open(os.path.join(lists, "classInd.txt")).read().split("\n")[:3] == \
        ["1 MoveLeft", "2 MoveRight", "3 Still"]
    train = open(os.path.join(lists, "trainlist01.txt")).read().split()
    test = open(os.path.join(lists, "testlist01.txt")).read().split()
    assert len(train) == 12 and len(test) == 6
    assert train[:2] == ["MoveLeft/v_MoveLeft_g02_c01.avi", "1"]
    assert "Still/v_Still_g01_c02.avi" in test
    assert all("_g01_" in t for t in test) and all("_g01_" not in t for t in train[::2])
    assert sorted(s["splits"]) == [1, 2] and s["splits"][2]["test_groups"] == [2]
    for name in names:
        files = sorted(os.listdir(os.path.join(root, "videos", name)))
        assert files == [f"v_{name}_g{g:02d}_c{c:02d}.avi" for g in (1, 2) for c in (1, 2)]


def test_files_decode_to_recorded_length_and_size(dataset):
    root, s = dataset
    for v in s["videos"]:
        assert 10 <= v["num_frames"] <= 14
        got = read_video(os.path.join(s["videos_dir"], v["path"]), frame_size=None)
        assert got.frames.shape == (v["num_frames"], SIZE[1], SIZE[0], 3)
        assert got.frame_rate == pytest.approx(25.0)


def test_determinism(tmp_path, dataset):
    _, s = dataset
    again = sy.make_synthetic_dataset(tmp_path, num_classes=3, videos_per_class=4, groups=2,
                                      frame_size=SIZE, num_frames=(10, 14), seed=3, ext=".avi")
    assert again["videos"] == s["videos"]
    for v in s["videos"][:4]:
        a = open(os.path.join(s["videos_dir"], v["path"]), "rb").read()
        b = open(os.path.join(again["videos_dir"], v["path"]), "rb").read()
        assert a == b
    # frames as well, and a different seed gives different frames
    f1 = sy.render_clip("Bounce", num_frames=6, frame_size=SIZE, seed=5)
    np.testing.assert_array_equal(f1, sy.render_clip("Bounce", num_frames=6, frame_size=SIZE, seed=5))
    assert not np.array_equal(f1, sy.render_clip("Bounce", num_frames=6, frame_size=SIZE, seed=6))


def test_decoded_move_left_moves_left(dataset):
    _, s = dataset
    for v in s["videos"]:
        if v["class_name"] in ("MoveLeft", "MoveRight"):
            frames = read_video(os.path.join(s["videos_dir"], v["path"]), frame_size=None).frames
            dx = np.diff(_centroids(frames)[:, 0])
            assert np.all(dx < 0) if v["class_name"] == "MoveLeft" else np.all(dx > 0)


def test_reversed_pairs_match_partner_statistics():
    n, size = 30, (96, 72)
    left = [_centroids(sy.render_clip("MoveLeft", num_frames=n, frame_size=size, seed=i))
            for i in range(12)]
    right = [_centroids(sy.render_clip("MoveRight", num_frames=n, frame_size=size, seed=100 + i))
             for i in range(12)]
    rev_vel = np.array([np.polyfit(np.arange(n), c[::-1, 0], 1)[0] for c in left])
    right_vel = np.array([np.polyfit(np.arange(n), c[:, 0], 1)[0] for c in right])
    assert np.all(rev_vel > 0) and np.all(right_vel > 0)       # reversed MoveLeft moves right
    assert abs(rev_vel.mean() - right_vel.mean()) < 0.25 * right_vel.mean()
    # single frames: same position distribution in both classes (order-blind features agree)
    xl = np.concatenate([c[:, 0] for c in left]) / size[0]
    xr = np.concatenate([c[:, 0] for c in right]) / size[0]
    assert abs(xl.mean() - xr.mean()) < 0.05 and abs(xl.std() - xr.std()) < 0.05
    # Grow reversed shrinks: sprite area decreases
    area = lambda f: (f.max(-1) > 200).sum(axis=(1, 2))  # noqa: E731
    g = area(sy.render_clip("Grow", num_frames=n, frame_size=size, seed=1))
    sh = area(sy.render_clip("Shrink", num_frames=n, frame_size=size, seed=1))
    assert g[-1] > 2 * g[0] and sh[0] > 2 * sh[-1]


def test_order_free_classes_behave():
    size = (96, 72)
    still = sy.render_clip("Still", num_frames=8, frame_size=size, seed=2)
    assert np.all(still == still[:1])
    blink = _centroids(sy.render_clip("Blink", num_frames=30, frame_size=size, seed=2))
    visible = ~np.isnan(blink[:, 0])
    assert 0 < visible.sum() < 30                        # on and off frames
    bounce = _centroids(sy.render_clip("Bounce", num_frames=40, frame_size=size, seed=2))
    dy = np.sign(np.diff(bounce[:, 1]))
    assert (dy > 0).any() and (dy < 0).any()             # goes up and down


def test_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="pair"):
        sy.make_synthetic_dataset(tmp_path, num_classes=4)
    with pytest.raises(ValueError, match="groups"):
        sy.make_synthetic_dataset(tmp_path, num_classes=2, videos_per_class=2, groups=3)
    with pytest.raises(ValueError, match="unknown synthetic class"):
        sy.render_clip("Jump")


@pytest.mark.parametrize("k,words", [
    (4, "num_classes=4 would split the time-reversal pair Grow/Shrink"),
    (1, "pair MoveLeft/MoveRight"), (11, "pair FadeIn/FadeOut"),
    (13, "the synthetic set has 12 classes"), (0, "the synthetic set has 12 classes")])
def test_bad_class_counts_are_explained(k, words):
    with pytest.raises(ValueError, match=words) as e:
        sy.check_num_classes(k)
    assert str(e.value).endswith("choose one of 2, 3, 5, 6, 8, 9, 10, 12")
    with pytest.raises(ValueError, match=f"^--synthetic_classes={k}[: ]"):
        sy.check_num_classes(k, name="--synthetic_classes")
    for ok in sy.valid_num_classes():
        sy.check_num_classes(ok)


def test_long_video(tmp_path):
    path = sy.make_long_video(tmp_path / "long.mp4", num_frames=30, frame_size=(128, 96), seed=1)
    v = read_video(path, frame_size=None)
    assert v.frames.shape == (30, 96, 128, 3)
    assert np.abs(np.diff(v.frames.astype(np.float32), axis=0)).mean() > 1   # things move
