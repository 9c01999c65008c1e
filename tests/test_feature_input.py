"""build_dataset on cached per-frame features (issue "DenseImage Network and VideoMap").

Feature shards in extract_features' record form (schema.set_features: FEATURE/rgb/floats,
/dimension, /frame_index, /timestamp, no frames) for 200 class-sorted videos of 10-40 rows,
D = 16. Row r of video v holds 1000 v + r in every column, so a batch shows which rows were
sampled.
"""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvid.data import pipeline, schema  # noqa: E402
from tfvid.data.sampling import (MDISampler, StNetSampler, TSNSampler,  # noqa: E402
                                 UniformSampler)
from tfvid.data.source import video_seed  # noqa: E402

CLASSES, PER_CLASS, SHARDS, D = 20, 10, 4, 16
N_VIDEOS = CLASSES * PER_CLASS


def rows_of(v):
    """Number of feature rows of video v: 10..40."""
    return 10 + (7 * v) % 31


def feature_record(vid, label, m, *, name="rgb", dim=D, base=0.0, short_row=None):
    """A feature record like extract_features writes (context + features, no frames)."""
    ex = tf.train.SequenceExample()
    ex.context.feature[schema.ID].bytes_list.value.append(vid.encode())
    if label is not None:
        ex.context.feature[schema.LABEL_INDEX].int64_list.value.append(label)
    ex.context.feature[schema.FRAME_RATE].float_list.value.append(25.0)
    vectors = base + np.arange(m, dtype=np.float32)[:, None] + np.zeros((1, dim), np.float32)
    schema.set_features(ex, name, vectors, frame_indices=list(range(0, 2 * m, 2)),
                        timestamps_us=[80000 * r for r in range(m)],
                        context={"model": "test", "density": "all", "crops": 1})
    if short_row is not None:      # one row shorter than the context's dimension
        row = ex.feature_lists.feature_list[schema.feature_key(name)].feature[short_row]
        del row.float_list.value[-1]
    return ex.SerializeToString()


def write_shards(root, *, gzip=False, extra=()):
    """200 videos 'c<c>/v<v>' (label c), sorted by class, in 4 shards (5 classes each);
    `extra` serialized records are appended to the last shard. Returns the shard paths."""
    os.makedirs(root, exist_ok=True)
    per = N_VIDEOS // SHARDS
    paths = []
    for s in range(SHARDS):
        path = os.path.join(root, f"train-{s:05d}-of-{SHARDS:05d}.tfrecord"
                            + (".gz" if gzip else ""))
        with tf.io.TFRecordWriter(path, "GZIP" if gzip else "") as w:
            for v in range(s * per, (s + 1) * per):
                c = v // PER_CLASS
                w.write(feature_record(f"c{c}/v{v}", c, rows_of(v), base=1000.0 * v))
            if s == SHARDS - 1:
                for rec in extra:
                    w.write(rec)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(str(tmp_path_factory.mktemp("features")))


def video_of(vid):
    return int(vid.decode().split("/v")[1])


def sampled_rows(clip_bt, vid):
    """(T, D) clip of video `vid` -> the row indices it holds (all columns agree)."""
    v = video_of(vid)
    rows = clip_bt - 1000.0 * v
    assert (rows == rows[:, :1]).all()
    return rows[:, 0].astype(int).tolist()


def collect(ds):
    out = {"clip": [], "label": [], "id": [], "valid": [], "problem": []}
    for b in ds:
        for k in out:
            out[k].append(b[k].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


@pytest.mark.parametrize("mode", ["val", "test"])
@pytest.mark.parametrize("sampler", [UniformSampler(25), UniformSampler(64), TSNSampler(8)])
def test_eval_shapes_and_rows(shards, mode, sampler):
    ds = pipeline.build_dataset(shards, sampler=sampler, mode=mode, batch_size=16,
                                feature="rgb", backbone="ignored", num_crops=3)
    t = sampler.num_steps(mode)
    assert ds.element_spec["clip"].shape.as_list() == [None, 1, t, D]
    assert ds.element_spec["clip"].dtype == tf.float32
    got = collect(ds)
    assert got["clip"].shape == (N_VIDEOS, 1, t, D)
    assert got["valid"].all() and not any(got["problem"])
    assert [video_of(v) for v in got["id"]] == list(range(N_VIDEOS))      # in order
    assert got["label"].tolist() == [v // PER_CLASS for v in range(N_VIDEOS)]
    for clip, vid in zip(got["clip"], got["id"]):
        m = rows_of(video_of(vid))
        assert sampled_rows(clip[0], vid) == sampler(m, mode).numpy()[:, 0].tolist()


def test_din_sampler_on_features_is_tsn_segment_rule(shards):
    """DIN: TSNSampler(8) over the m rows: val = TSN's val rule on m, train one row per
    segment of floor(m/8) rows."""
    ds = pipeline.build_dataset(shards, sampler=TSNSampler(8), mode="val", batch_size=50,
                                feature="rgb")
    got = collect(ds)
    for clip, vid in zip(got["clip"], got["id"]):
        m = rows_of(video_of(vid))
        tick = m / 8.0
        assert sampled_rows(clip[0], vid) == [int(tick / 2.0 + tick * k) for k in range(8)]
    ds = pipeline.build_dataset(shards, sampler=TSNSampler(8), mode="train", batch_size=50,
                                feature="rgb", seed=3)
    assert ds.element_spec["clip"].shape.as_list() == [50, 8, D]     # drop_remainder
    for b in ds.take(4):
        for clip, vid in zip(b["clip"].numpy(), b["id"].numpy()):
            m = rows_of(video_of(vid))
            d = m // 8
            rows = sampled_rows(clip, vid)
            assert all(k * d <= r < (k + 1) * d for k, r in enumerate(rows)), (m, rows)


def test_train_rows_follow_the_element_seed(shards):
    """UniformSampler(32) in train: static (B, 32, D); each video's rows are the sampler's for
    the seed of the video in its epoch (video_seed(seed, id, epoch), the frame path's sampling
    seed), sorted, one per bin, repeating rows when m < 32; the seed reproduces the stream."""
    sampler, seed, batch = UniformSampler(32), 7, 25
    ds = pipeline.build_dataset(shards, sampler=sampler, mode="train", batch_size=batch,
                                feature="rgb", seed=seed)
    assert ds.element_spec["clip"].shape.as_list() == [batch, 32, D]
    batches = list(ds.take(3))
    short = 0
    for b_i, b in enumerate(batches):
        assert b["valid"].numpy().all()
        for j, (clip, vid) in enumerate(zip(b["clip"].numpy(), b["id"].numpy())):
            m = rows_of(video_of(vid))
            rows = sampled_rows(clip, vid)
            epoch = (b_i * batch + j) // N_VIDEOS                     # the video's seed:
            elem = video_seed(seed, vid, epoch)                        # (seed, id, epoch)
            s_sample = tf.random.experimental.stateless_split(elem, 3)[0]
            assert rows == sampler(m, "train", s_sample).numpy()[:, 0].tolist()
            assert rows == sorted(rows) and 0 <= rows[0] and rows[-1] < m
            assert all(math.floor(k * m / 32) <= r <= math.ceil((k + 1) * m / 32) - 1
                       for k, r in enumerate(rows))
            short += m < 32 and len(set(rows)) < 32
    assert short > 0                         # some videos had fewer rows than T: repeats
    again = list(pipeline.build_dataset(shards, sampler=sampler, mode="train",
                                        batch_size=batch, feature="rgb", seed=seed).take(3))
    other = list(pipeline.build_dataset(shards, sampler=sampler, mode="train",
                                        batch_size=batch, feature="rgb", seed=seed + 1).take(3))
    for x, y, z in zip(batches, again, other):
        np.testing.assert_array_equal(x["clip"].numpy(), y["clip"].numpy())
        np.testing.assert_array_equal(x["id"].numpy(), y["id"].numpy())
    assert not all(np.array_equal(x["id"].numpy(), z["id"].numpy())
                   for x, z in zip(batches, other))


def expected_distinct(b, n=N_VIDEOS, per_class=PER_CLASS, classes=CLASSES):
    """E[distinct classes] of b videos drawn uniformly without replacement."""
    return classes * (1 - math.comb(n - per_class, b) / math.comb(n, b))


@pytest.mark.parametrize("gzip", [False, True])
def test_training_shuffles_class_sorted_shards(tmp_path, gzip):
    """Class-sorted feature shards still give batches with about as many classes as a random
    draw; every video once per epoch (uncompressed shards), a new order each epoch."""
    paths = write_shards(str(tmp_path), gzip=gzip)
    batch = 20
    ds = pipeline.build_dataset(paths, sampler=UniformSampler(25), mode="train",
                                batch_size=batch, feature="rgb", seed=5, shuffle_buffer=200)
    epoch = N_VIDEOS // batch
    batches = [(b["label"].numpy(), b["id"].numpy()) for b in ds.take(2 * epoch)]
    distinct = np.mean([len(set(labels)) for labels, _ in batches])
    assert distinct >= 0.85 * expected_distinct(batch), (distinct, expected_distinct(batch))
    if gzip:
        return                      # GZIP: interleave + shuffle buffer, not a permutation
    first = np.concatenate([ids for _, ids in batches[:epoch]])
    second = np.concatenate([ids for _, ids in batches[epoch:]])
    assert len(set(first)) == len(first) == N_VIDEOS
    assert set(first) == set(second) and not np.array_equal(first, second)


def test_exact_resume_from_iterator_checkpoint_and_skip(shards, tmp_path):
    def make():
        ds = pipeline.build_dataset(shards, sampler=UniformSampler(25), mode="train",
                                    batch_size=16, feature="rgb", seed=11)
        options = tf.data.Options()
        options.experimental_symbolic_checkpoint = True
        return ds.with_options(options)

    reference = [b["clip"].numpy() for b in make().take(20)]     # crosses an epoch (12.5)
    it = iter(make())
    for _ in range(9):
        next(it)
    path = tf.train.Checkpoint(iterator=it).write(str(tmp_path / "ckpt"))
    it2 = iter(make())
    tf.train.Checkpoint(iterator=it2).read(path).assert_consumed()
    resumed = [next(it2)["clip"].numpy() for _ in range(11)]
    skipped = [b["clip"].numpy() for b in make().skip(9).take(11)]
    for want, got, got2 in zip(reference[9:], resumed, skipped):
        np.testing.assert_array_equal(want, got)
        np.testing.assert_array_equal(want, got2)


def test_bad_records_are_marked_with_video_shard_and_record(tmp_path):
    extra = [feature_record("bad/flow_only", 1, 12, name="flow"),        # lacks 'rgb'
             feature_record("bad/dim20", 2, 15, dim=20),                 # other dimension
             feature_record("bad/short_row", 3, 14, short_row=5),        # row 5 has 15 values
             feature_record("bad/label", 99, 20)]                        # label out of range
    paths = write_shards(str(tmp_path), extra=extra)
    last, first_extra = paths[-1], N_VIDEOS // SHARDS
    ds = pipeline.build_dataset(paths, sampler=UniformSampler(25), mode="val", batch_size=32,
                                feature="rgb", num_classes=CLASSES)
    got = collect(ds)
    assert got["clip"].shape == (N_VIDEOS + 4, 1, 25, D)
    problems = {i.decode(): p.decode() for i, p, ok in
                zip(got["id"], got["problem"], got["valid"]) if not ok}
    assert sorted(problems) == ["bad/dim20", "bad/flow_only", "bad/label", "bad/short_row"]
    for k, (vid, reason) in enumerate([
            ("bad/flow_only", "no features 'rgb' (FEATURE/rgb/floats is missing or empty)"),
            ("bad/dim20", "features 'rgb' have dimension 20 (FEATURE/rgb/dimension), "
                          "expected 16"),
            ("bad/short_row", "features 'rgb': row 5 has 15 values, expected dimension 16"),
            ("bad/label", "label 99 is outside [0, 20)")]):
        assert problems[vid].startswith(f"video {vid} ({last} record {first_extra + k}): "
                                        f"{reason}"), problems[vid]
    bad = ~got["valid"]
    assert (got["clip"][bad] == 0).all()
    assert got["valid"].sum() == N_VIDEOS
    with pytest.raises(tf.errors.InvalidArgumentError, match="video bad/flow_only"):
        collect(pipeline.build_dataset(paths, sampler=UniformSampler(25), mode="val",
                                       batch_size=32, feature="rgb", bad_data="fail"))
    train = pipeline.build_dataset(paths, sampler=UniformSampler(25), mode="train",
                                   batch_size=34, feature="rgb", bad_data="skip", seed=1)
    got = collect(train.take(6))                                  # one epoch: 204 videos
    assert (~got["valid"]).sum() == 3 and (got["clip"][~got["valid"]] == 0).all()


def test_first_record_sets_dimension_and_errors(shards, tmp_path):
    assert pipeline.feature_dimension(shards, "rgb") == D
    with pytest.raises(ValueError, match=r"no features 'flow'.*holds features \['rgb'\]"):
        pipeline.build_dataset(shards, sampler=UniformSampler(25), mode="val", feature="flow")
    with pytest.raises(ValueError, match="one feature row per time step"):
        pipeline.build_dataset(shards, sampler=TSNSampler(3, 5), mode="train", feature="rgb")
    with pytest.raises(ValueError, match="one feature row per time step"):
        pipeline.build_dataset(shards, sampler=MDISampler(), mode="val", feature="rgb")
    with pytest.raises(ValueError, match="fixed T"):
        pipeline.build_dataset(shards, sampler=StNetSampler(7, 1, 25, 5), mode="test",
                               feature="rgb")
    (tmp_path / "a.list").write_text("frames/v0 10 0\n")
    with pytest.raises(ValueError, match="TFRecord shards"):
        pipeline.build_dataset(str(tmp_path / "a.list"), sampler=UniformSampler(25),
                               mode="val", feature="rgb")
    # a first record of another dimension sets D; the others are then invalid
    other = str(tmp_path / "d8.tfrecord")
    with tf.io.TFRecordWriter(other) as w:
        w.write(feature_record("x/v0", 0, 12, dim=8))
        w.write(feature_record("x/v1", 1, 12))
    got = collect(pipeline.build_dataset(other, sampler=UniformSampler(4), mode="test",
                                         feature="rgb"))
    assert got["clip"].shape == (2, 1, 4, 8) and got["valid"].tolist() == [True, False]
    assert "dimension 16 (FEATURE/rgb/dimension), expected 8" in got["problem"][1].decode()


def test_input_context_shards_feature_records(shards):
    ids = []
    for pipe in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipe,
                                         num_replicas_in_sync=2)
        ds = pipeline.build_dataset(shards, sampler=UniformSampler(25), mode="val",
                                    batch_size=16, feature="rgb", input_context=ctx)
        ids.append(set(collect(ds)["id"].tolist()))
    assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == N_VIDEOS
