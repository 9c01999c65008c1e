"""Training augmentation choice (issue 11): build_dataset(augmentation='random_crop_flip') takes a
plain input_size x input_size window of the stored frames (StNet's reader: no scale jitter, no
resize), the same for every frame, flipped with probability 1/2 (flow x inverted), with the fused
kernels on and off; 'multiscale_crop_flip' (TSN) stays the default."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvid.data import augment, normalization, pipeline, schema  # noqa: E402
from tfvid.data.sampling import DenseSampler  # noqa: E402

N, H, W, S, VIDEOS = 8, 40, 56, 24, 6


def gray_noise(rng, shape):
    """R = G = B noise: constant chroma, so a JPEG decoded through a crop window has exactly
    the pixels of the full decode (no chroma upsampling at the window's edges)."""
    g = rng.integers(0, 256, shape[:-1] + (1,), dtype=np.uint8)
    return np.repeat(g, shape[-1], axis=-1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """6 videos of N noise frames (H x W) with flow: one TFRecord shard and a list file, and
    the decoded frames of every video by id."""
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    decoded, lines = {}, []
    path = str(root / "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for v in range(VIDEOS):
            frames = [tf.io.encode_jpeg(gray_noise(rng, (H, W, 3))).numpy() for _ in range(N)]
            flow = [tf.io.encode_jpeg(rng.integers(0, 256, (H, W, 1), dtype=np.uint8)).numpy()
                    for _ in range(2 * (N - 1))]
            w.write(schema.make_example(f"v{v}", frames, height=H, width=W, frame_rate=25,
                                        label_index=v % 2, flow_x=flow[:N - 1],
                                        flow_y=flow[N - 1:]).SerializeToString())
            folder = root / "frames" / "train" / f"v{v}"
            folder.mkdir(parents=True)
            for t, f in enumerate(frames, 1):
                (folder / f"img_{t:05d}.jpg").write_bytes(f)
            lines.append(f"frames/train/v{v} {N} {v % 2}\n")
            decoded[f"v{v}"] = {
                "rgb": np.stack([tf.io.decode_jpeg(f).numpy() for f in frames]),
                "flow_x": np.stack([tf.io.decode_jpeg(f).numpy()[..., 0] for f in flow[:N - 1]]),
                "flow_y": np.stack([tf.io.decode_jpeg(f).numpy()[..., 0] for f in flow[N - 1:]])}
    (root / "train.list").write_text("".join(lines))
    return {"shards": path, "list": str(root / "train.list"), "decoded": decoded}


def unnormalize(clip, modality):
    """The 8-bit values of a 'tiny'-normalised clip (T, S, S, C), and how far from integers."""
    _, mul, add = normalization.channel_affine("tiny", modality, clip.shape[-1])
    x = (clip - np.asarray(add)) / np.asarray(mul)
    return np.rint(x), float(np.abs(x - np.rint(x)).max())


def find_window(clip, stack):
    """(y, x, flipped) of the S x S window of `stack` (T, H, W, C) that equals `clip` (T, S, S,
    C) in every step (x in the unflipped frame), trying both flips; None when none or several
    match."""
    hits = []
    for flipped in (False, True):
        src = stack[:, :, ::-1] if flipped else stack
        views = np.lib.stride_tricks.sliding_window_view(src, (S, S), axis=(1, 2))
        match = np.all(views == np.moveaxis(clip, -1, 1)[:, None, None], axis=(0, 3, 4, 5))
        for y, x in zip(*np.nonzero(match)):
            hits.append((int(y), int(W - S - x if flipped else x), flipped))
    return hits[0] if len(hits) == 1 else None


def kernel_modes():
    from tfvid.data import kernels
    return [False] + ([True] if kernels.available() else [])


def collect(files, modality="rgb", batches=8, **kw):
    """(values (T, S, S, C), video id) of the training clips, unnormalised to the 8-bit scale
    (checked to be integers: nothing was resized). DenseSampler(N) on N frames samples every
    frame in order, so the clip's source frames are known."""
    ds = pipeline.build_dataset(files, sampler=DenseSampler(N), mode="train",
                                modality=modality, batch_size=VIDEOS, input_size=S,
                                backbone="tiny", seed=4, augmentation="random_crop_flip", **kw)
    out = []
    for batch in ds.take(batches):
        for clip, vid in zip(batch["clip"].numpy(), batch["id"].numpy()):
            values, off = unnormalize(clip, modality)
            assert off < 0.02, off                                  # integers: no resize
            out.append((values, vid.decode()))
    return out


@pytest.mark.parametrize("layout,kernels", [("shards", k) for k in kernel_modes()]
                         + [("list", False)])
def test_random_crop_is_an_exact_window_of_the_frames(data, layout, kernels):
    """Every clip is one S x S window of its frames, pixel for pixel (no resize), the same
    window and flip in every step; the origins spread over the frame; flip rate ~ 1/2."""
    flips, origins = [], set()
    for values, vid in collect(data[layout], kernels=kernels,         # 48 clips (list: 24)
                               batches=8 if layout == "shards" else 4):
        hit = find_window(values, data["decoded"][vid]["rgb"][:N])
        assert hit is not None, vid
        flips.append(hit[2])
        origins.add(hit[:2])
    assert 0.3 <= np.mean(flips) <= 0.7, np.mean(flips)
    assert len(origins) > 12                                         # not a fixed grid


def test_random_crop_flips_flow_x(data):
    """Flow: the same exact windows; a flipped clip has x -> 255 - x, y unchanged."""
    flips = []
    for values, vid in collect(data["shards"], modality="flow", batches=4):
        video = data["decoded"][vid]
        idx = np.minimum(np.arange(N), N - 2)              # n - 1 flow frames: the last repeats
        plain = np.stack([video["flow_x"], video["flow_y"]], -1)[idx]
        inverted = np.stack([255 - video["flow_x"], video["flow_y"]], -1)[idx]
        hit_plain, hit_inv = find_window(values, plain), find_window(values, inverted)
        assert (hit_plain is None) != (hit_inv is None), vid
        if hit_plain is not None:
            assert not hit_plain[2]                                  # unflipped: x as stored
            flips.append(False)
        else:
            assert hit_inv[2]                                        # flipped: x inverted
            flips.append(True)
    assert 0 < np.mean(flips) < 1


def test_default_is_multiscale_and_unknown_is_refused(data):
    """The default (TSN) rescales crops: values are not all integers; a bad name is refused."""
    ds = pipeline.build_dataset(data["shards"], sampler=DenseSampler(N), mode="train",
                                batch_size=VIDEOS, input_size=S, backbone="tiny", seed=4,
                                kernels=False)
    offs = [unnormalize(c, "rgb")[1] for b in ds.take(2) for c in b["clip"].numpy()]
    assert max(offs) > 0.05
    with pytest.raises(ValueError, match="augmentation"):
        pipeline.build_dataset(data["shards"], sampler=DenseSampler(N), mode="train",
                               augmentation="corner_crop")


def test_random_crop_window_geometry():
    """Windows of S x S inside the frame; a side shorter than S is taken whole (then resized);
    preprocess_video applies the same crop to decoded frames."""
    for k in range(50):
        y, x, h, w = augment.random_crop_window(H, W, [k, 1], S).numpy().tolist()
        assert (h, w) == (S, S) and 0 <= y <= H - S and 0 <= x <= W - S
    assert augment.random_crop_window(H, W, [0, 0], 48).numpy().tolist()[2:] == [H, 48]
    clip = augment.random_crop(tf.zeros([2, H, W, 3], tf.uint8), [0, 0], 48)
    assert clip.shape == (2, 48, 48, 3)
    frames = gray_noise(np.random.default_rng(1), (N, H, W, 3))
    out = pipeline.preprocess_video(frames, sampler=DenseSampler(N), mode="train",
                                    input_size=S, backbone="tiny", seed=[3, 4],
                                    augmentation="random_crop_flip").numpy()
    values, off = unnormalize(out, "rgb")
    assert off < 0.02 and find_window(values, frames) is not None
