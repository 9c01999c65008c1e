"""tf.data builder: both storage layouts, modalities, seeds, sharding, errors."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvid.data import pipeline, schema  # noqa: E402
from tfvid.data.sampling import MDISampler, StNetSampler, TSNSampler  # noqa: E402

N, H, W, S = 24, 48, 64, 32


def jpeg(array):
    return tf.io.encode_jpeg(array).numpy()


def video_arrays(v, n=N):
    """Synthetic uint8 frames (n, H, W, 3) and grayscale flow (n-1, H, W, 1) of video v."""
    rng = np.random.default_rng(v)
    base = rng.integers(0, 256, (H // 8, W // 8, 3)).repeat(8, 0).repeat(8, 1)
    frames = np.stack([(base + 5 * t) % 256 for t in range(n)]).astype(np.uint8)
    flow = rng.integers(0, 256, (n - 1, H, W, 1)).astype(np.uint8)
    return frames, flow


def write_records(path, videos, n=N, corrupt=()):
    """Writes SequenceExamples of `videos` (ids 'v<k>', label k); `corrupt` frame indices
    are replaced by invalid JPEG bytes."""
    with tf.io.TFRecordWriter(str(path)) as w:
        for v in videos:
            frames, flow = video_arrays(v, n)
            enc = [jpeg(f) for f in frames]
            for i in corrupt:
                enc[i] = b"not a jpeg"
            fl = [jpeg(f) for f in flow]
            w.write(schema.make_example(f"v{v}", enc, height=H, width=W, frame_rate=25,
                                        label_index=v, flow_x=fl, flow_y=fl[::-1])
                    .SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    shards = [write_records(root / f"train-{i}-of-2.tfrecord", [3 * i, 3 * i + 1, 3 * i + 2])
              for i in range(2)]
    lines = []
    for v in range(6):
        folder = root / "frames" / f"v{v}"
        folder.mkdir(parents=True)
        frames, flow = video_arrays(v)
        for t, f in enumerate(frames, 1):
            (folder / f"img_{t:05d}.jpg").write_bytes(jpeg(f))
        for t, f in enumerate(flow, 1):
            (folder / f"flow_x_{t:05d}.jpg").write_bytes(jpeg(f))
            (folder / f"flow_y_{t:05d}.jpg").write_bytes(jpeg(flow[-t]))
        lines.append(f"frames/v{v} {N} {v}")
    (root / "videos.list").write_text("\n".join(lines) + "\n")
    return {"root": root, "shards": shards, "pattern": str(root / "train-*.tfrecord"),
            "list": str(root / "videos.list")}


CASES = [("rgb", TSNSampler(3, 1), 3), ("flow", TSNSampler(3, 5), 10),
         ("rgbdiff", TSNSampler(3, 6), 15)]


@pytest.mark.parametrize("layout", ["tfrecord", "list"])
@pytest.mark.parametrize("modality,sampler,channels", CASES)
def test_fused_kernels_agree_with_stock_ops(data, layout, modality, sampler, channels):
    """Same seed -> same samples, crops and flips on both training paths; values differ by
    the uint8 rounding of the fused resize only."""
    from tfvid.data import kernels
    if not kernels.available():
        pytest.skip("no C++ compiler here")
    files = data["pattern"] if layout == "tfrecord" else data["list"]
    common = dict(sampler=sampler, mode="train", modality=modality, batch_size=3,
                  input_size=S, backbone="resnext50", seed=3)
    fused = next(iter(pipeline.build_dataset(files, kernels=True, **common)))
    stock = next(iter(pipeline.build_dataset(files, kernels=False, **common)))
    assert fused["clip"].shape == stock["clip"].shape == (3, 3, S, S, channels)
    np.testing.assert_array_equal(fused["id"].numpy(), stock["id"].numpy())
    level = 1.0 / (255 * 0.224) if modality == "rgb" else (1 / 128 if modality == "flow"
                                                          else 1 / 255)
    diff = np.abs(fused["clip"].numpy() - stock["clip"].numpy())
    limit = 2 * level if modality == "rgbdiff" else level   # a difference of 2 rounded frames
    assert diff.max() <= limit * 1.01 and diff.mean() < 0.5 * level


@pytest.mark.parametrize("layout", ["tfrecord", "list"])
@pytest.mark.parametrize("modality,sampler,channels", CASES)
def test_shapes(data, layout, modality, sampler, channels):
    files = data["pattern"] if layout == "tfrecord" else data["list"]
    common = dict(sampler=sampler, modality=modality, batch_size=2, input_size=S)
    train = next(iter(pipeline.build_dataset(files, mode="train", **common)))
    assert train["clip"].shape == (2, 3, S, S, channels) and train["clip"].dtype == tf.float32
    assert train["label"].dtype == tf.int32 and train["id"].dtype == tf.string
    val = pipeline.build_dataset(files, mode="val", num_crops=10, **common)
    batches = list(val)
    assert [b["clip"].shape for b in batches] == [(2, 10, 3, S, S, channels)] * 3
    assert np.concatenate([b["label"] for b in batches]).tolist() == list(range(6))
    ids = [i.decode() for b in batches for i in b["id"].numpy()]
    assert ids == ([f"v{v}" for v in range(6)] if layout == "tfrecord"
                   else [f"frames/v{v}" for v in range(6)])
    for b in batches:                                    # labels travel with their clips
        assert [int(i.decode().rsplit("v", 1)[1]) for i in b["id"].numpy()] == \
            b["label"].numpy().tolist()
    test = next(iter(pipeline.build_dataset(files, mode="test", num_crops=3, **common)))
    assert test["clip"].shape == (2, 3, 25, S, S, channels)


def test_layouts_and_preprocess_video_agree(data):
    """Same pixels in, same clip out: TFRecords, raw frames and preprocess_video share code."""
    sampler = TSNSampler(3, 1)
    common = dict(sampler=sampler, mode="val", batch_size=6, input_size=S, num_crops=10)
    rec = next(iter(pipeline.build_dataset(data["pattern"], **common)))["clip"].numpy()
    raw = next(iter(pipeline.build_dataset(data["list"], **common)))["clip"].numpy()
    np.testing.assert_array_equal(rec, raw)
    frames, _ = video_arrays(4)
    decoded = tf.stack([tf.io.decode_jpeg(jpeg(f)) for f in frames])
    one = pipeline.preprocess_video(decoded, sampler=sampler, mode="val", input_size=S,
                                    num_crops=10).numpy()
    np.testing.assert_allclose(one, rec[4], atol=1e-4)
    train = pipeline.preprocess_video(decoded, sampler=sampler, mode="train", input_size=S,
                                      seed=[1, 2])
    assert train.shape == (3, S, S, 3)
    serve = tf.function(lambda x: pipeline.preprocess_video(x, sampler=sampler, input_size=S),
                        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    assert serve.get_concrete_function().structured_outputs.shape == (1, 25, S, S, 3)
    assert serve(decoded).shape == (1, 25, S, S, 3)
    flow = pipeline.build_dataset(data["pattern"], modality="flow",
                                  **{**common, "sampler": TSNSampler(3, 5)})
    flow = next(iter(flow))["clip"].numpy()
    _, fl = video_arrays(4)
    fx = tf.stack([tf.io.decode_jpeg(jpeg(f))[..., 0] for f in fl])
    fy = tf.stack([tf.io.decode_jpeg(jpeg(f))[..., 0] for f in fl[::-1]])
    one = pipeline.preprocess_video(None, sampler=TSNSampler(3, 5), modality="flow",
                                    mode="val", input_size=S, num_crops=10, flow_x=fx, flow_y=fy)
    np.testing.assert_allclose(one, flow[4], atol=1e-4)


@pytest.mark.parametrize("layout", ["tfrecord", "list"])
def test_seed_reproduces_run(data, layout):
    files = data["shards"] if layout == "tfrecord" else data["list"]

    def run(seed):
        ds = pipeline.build_dataset(files, sampler=TSNSampler(3, 1), mode="train", batch_size=2,
                                    input_size=S, seed=seed, shuffle_buffer=4)
        return [(b["clip"].numpy(), b["id"].numpy()) for b in ds.take(4)]

    a, b, c = run(7), run(7), run(8)
    for (clip_a, id_a), (clip_b, id_b) in zip(a, b):
        np.testing.assert_array_equal(clip_a, clip_b)
        assert (id_a == id_b).all()
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_decodes_only_sampled_frames(tmp_path):
    # val TSN K=3 on 24 frames samples 0-based frames 4, 12, 20 (tick 8)
    sampled = {4, 12, 20}
    good = write_records(tmp_path / "good.tfrecord", [0],
                         corrupt=[i for i in range(N) if i not in sampled])
    ds = pipeline.build_dataset(good, sampler=TSNSampler(3, 1), mode="val", batch_size=1,
                                input_size=S)
    assert next(iter(ds))["clip"].shape == (1, 1, 3, S, S, 3)
    bad = write_records(tmp_path / "bad.tfrecord", [0], corrupt=[12])
    ds = pipeline.build_dataset(bad, sampler=TSNSampler(3, 1), mode="val", batch_size=1,
                                input_size=S, bad_data="fail")
    with pytest.raises(tf.errors.InvalidArgumentError):
        next(iter(ds))


def test_raw_layout_reads_only_sampled_files(data, tmp_path):
    folder = tmp_path / "only"
    folder.mkdir()
    for t in (5, 13, 21):                                # 1-based names of frames 4, 12, 20
        (folder / f"img_{t:05d}.jpg").write_bytes((data["root"] / "frames" / "v0" /
                                                   f"img_{t:05d}.jpg").read_bytes())
    (tmp_path / "only.list").write_text(f"only {N} 0\n")
    ds = pipeline.build_dataset(str(tmp_path / "only.list"), sampler=TSNSampler(3, 1),
                                mode="val", batch_size=1, input_size=S)
    assert next(iter(ds))["id"].numpy().tolist() == [b"only"]
    ds = pipeline.build_dataset(str(tmp_path / "only.list"), sampler=TSNSampler(4, 1),
                                mode="val", batch_size=1, input_size=S)
    with pytest.raises(tf.errors.NotFoundError, match="img_000"):
        next(iter(ds))


@pytest.mark.parametrize("layout", ["shards", "one_file", "list"])
def test_input_context_sharding(data, layout):
    files = {"shards": data["shards"], "one_file": data["shards"][:1],
             "list": data["list"]}[layout]
    seen = []
    for pipe in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipe,
                                         num_replicas_in_sync=2)
        ds = pipeline.build_dataset(files, sampler=TSNSampler(3, 1), mode="val", batch_size=4,
                                    input_size=S, input_context=ctx)
        ids = []
        for b in ds:
            assert b["clip"].shape[0] <= 2                 # per-replica batch size
            ids += b["id"].numpy().tolist()
        seen.append(set(ids))
    assert not seen[0] & seen[1] and seen[0] and seen[1]
    assert len(seen[0] | seen[1]) == (3 if layout == "one_file" else 6)


def test_training_repeats_and_drops_remainder(data):
    ds = pipeline.build_dataset(data["pattern"], sampler=TSNSampler(3, 1), mode="train",
                                batch_size=4, input_size=S, cache=True)
    batches = list(ds.take(4))                            # 16 clips from 6 videos
    assert all(b["clip"].shape[0] == 4 for b in batches)
    assert ds.element_spec["clip"].shape == (4, 3, S, S, 3)


def test_stnet_and_mdi_samplers(tmp_path):
    path = write_records(tmp_path / "mixed.tfrecord", [0, 1])
    write_records(tmp_path / "long.tfrecord", [2], n=40)
    ds = pipeline.build_dataset(path, sampler=StNetSampler(7, 5), mode="train", batch_size=2,
                                input_size=S)
    assert next(iter(ds))["clip"].shape == (2, 7, S, S, 15)
    ds = pipeline.build_dataset([path, str(tmp_path / "long.tfrecord")], sampler=MDISampler(),
                                mode="val", batch_size=3, input_size=S)
    batch = next(iter(ds))
    assert batch["clip"].shape == (3, 1, 7, S, S, 30)     # padded to the longest video
    assert batch["num_steps"].numpy().tolist() == [4, 4, 7]


def test_errors(data, tmp_path):
    common = dict(sampler=TSNSampler(3, 1), mode="val", input_size=S)
    missing = str(tmp_path / "nothing-*.tfrecord")
    with pytest.raises(ValueError, match="nothing-"):
        pipeline.build_dataset(missing, **common)
    empty = tmp_path / "empty.list"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty.list"):
        pipeline.build_dataset(str(empty), **common)
    with pytest.raises(ValueError, match="backbone"):
        pipeline.build_dataset(data["pattern"], backbone="vgg", **common)
    with pytest.raises(ValueError, match="num_crops"):
        pipeline.build_dataset(data["pattern"], num_crops=4, **common)
    # a truncated shard raises DataLossError when iteration reaches it
    truncated = tmp_path / "cut.tfrecord"
    raw = open(data["shards"][0], "rb").read()
    truncated.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(tf.errors.DataLossError):
        list(pipeline.build_dataset(str(truncated), **common))
    assert pipeline.verify_records(data["shards"]) == {p: 3 for p in data["shards"]}
    with pytest.raises(tf.errors.DataLossError, match="cut.tfrecord"):
        pipeline.verify_records([data["shards"][1], str(truncated)])


def test_flow_count_mismatch_names_video(tmp_path):
    frames, flow = video_arrays(0)
    fl = [jpeg(f) for f in flow]
    ex = schema.make_example("broken-video", [jpeg(f) for f in frames], height=H, width=W,
                             frame_rate=25, label_index=0, flow_x=fl, flow_y=fl)
    for key in (schema.FLOW_X, schema.FLOW_Y):
        del ex.feature_lists.feature_list[key].feature[-1]
    path = tmp_path / "broken.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(ex.SerializeToString())
    ds = pipeline.build_dataset(str(path), sampler=TSNSampler(3, 5), mode="val",
                                modality="flow", input_size=S, bad_data="fail")
    with pytest.raises(tf.errors.InvalidArgumentError, match="broken-video"):
        next(iter(ds))


def test_static_decode_matches_map_fn():
    """The unrolled decode (static (T, L)) and the tf.map_fn one (dynamic) agree."""
    frames, _ = video_arrays(0, n=4)
    enc = tf.constant([[jpeg(f)] for f in frames])                     # (4, 1)
    window = tf.constant([2, 8, 24, 40])
    static = pipeline._decode(enc, 3, window)
    dynamic = tf.function(lambda e: pipeline._decode(e, 3, window),
                          input_signature=[tf.TensorSpec([None, 1], tf.string)])(enc)
    assert static.shape == (4, 1, 24, 40, 3)
    np.testing.assert_array_equal(static.numpy(), dynamic.numpy())
    full = tf.stack([tf.io.decode_jpeg(e) for e in enc[:, 0]]).numpy().astype(int)
    diff = np.abs(static.numpy()[:, 0].astype(int) - full[:, 2:26, 8:48])   # chroma edges
    assert diff.mean() < 2 and np.median(diff) == 0
