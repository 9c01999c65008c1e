"""Bad data is named, skipped and counted (issue "Trust the default path", items 6-8).

Both storage layouts, a few hundred tiny videos: an incomplete JPEG, a label outside
[0, num_classes) deep in the data, a flow/RGB count mismatch, a truncated shard; video ids
agree between the layouts.
"""
import os

import numpy as np
import pytest
import tensorflow as tf

from tfvid.data import pipeline, schema
from tfvid.data.sampling import TSNSampler
from tfvid.train.loop import train

N_VIDEOS, FRAMES, CLASSES = 120, 4, 6


def _frames(v):
    rng = np.random.default_rng(v)
    return [tf.io.encode_jpeg(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).numpy()
            for _ in range(FRAMES)]


def write_data(root, layout, *, bad_jpeg=(), bad_label=(), shards=2):
    """120 videos 'cls<c>/v<k>' (label k % 6) in prepare_data's layouts: TFRecord shards
    train-0000i-of-0000n.tfrecord or <root>/train.list over frames/train/<id>. Videos in
    `bad_jpeg` have every frame cut short (no EOI); in `bad_label` label 99."""
    os.makedirs(root, exist_ok=True)
    rows = []
    for v in range(N_VIDEOS):
        frames = _frames(v)
        if v in bad_jpeg:
            frames = [f[: len(f) // 2] for f in frames]
        rows.append((f"cls{v % CLASSES}/v{v}", frames, 99 if v in bad_label else v % CLASSES))
    if layout == "tfrecord":
        per = N_VIDEOS // shards
        paths = []
        for s in range(shards):
            path = os.path.join(root, f"train-{s:05d}-of-{shards:05d}.tfrecord")
            with tf.io.TFRecordWriter(path) as w:
                for vid, frames, label in rows[s * per:(s + 1) * per]:
                    w.write(schema.make_example(vid, frames, height=16, width=16, frame_rate=25,
                                                label_index=label).SerializeToString())
            paths.append(path)
        return paths
    lines = []
    for vid, frames, label in rows:
        folder = os.path.join(root, "frames", "train", vid)
        os.makedirs(folder)
        for t, data in enumerate(frames, 1):
            with open(os.path.join(folder, f"img_{t:05d}.jpg"), "wb") as f:
                f.write(data)
        lines.append(f"frames/train/{vid} {FRAMES} {label}\n")
    path = os.path.join(root, "train.list")
    with open(path, "w") as f:
        f.writelines(lines)
    return [path]


def everything(files, mode="val", **kw):
    ds = pipeline.build_dataset(files, sampler=TSNSampler(2, 1), mode=mode, batch_size=8,
                                input_size=16, backbone="tiny", **kw)
    batches = list(ds.take(N_VIDEOS // 8)) if mode == "train" else list(ds)
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}


@pytest.mark.parametrize("layout", ["tfrecord", "list"])
def test_bad_label_and_jpeg_are_marked_with_id_file_and_reason(tmp_path, layout):
    files = write_data(str(tmp_path), layout, bad_jpeg=(17,), bad_label=(80,))
    out = everything(files, num_classes=CLASSES)
    assert out["valid"].dtype == bool and out["problem"].dtype == object
    bad = {i.decode(): p.decode() for i, p, ok in zip(out["id"], out["problem"], out["valid"])
           if not ok}
    assert set(bad) == {"cls5/v17", "cls2/v80"}
    assert all(p == b"" for p, ok in zip(out["problem"], out["valid"]) if ok)
    label = bad["cls2/v80"]
    jpeg = bad["cls5/v17"]
    assert "label 99 is outside [0, 6)" in label and label.startswith("video cls2/v80 (")
    assert "is not a complete JPEG" in jpeg
    if layout == "tfrecord":                          # shard and record within it
        assert "train-00001-of-00002.tfrecord record 20" in label
        assert "train-00000-of-00002.tfrecord record 17): frame " in jpeg
    else:                                             # list line, frame file
        assert "train.list line 81" in label
        assert "frame file " in jpeg and "frames/train/cls5/v17/img_0000" in jpeg
    i17 = list(out["id"]).index(b"cls5/v17")
    clip = out["clip"][i17]                          # not decoded: normalised zeros
    assert all(np.ptp(clip[..., c]) == 0 for c in range(clip.shape[-1]))
    # without num_classes the label is not checked; mode fail raises naming the video
    plain = everything(files)
    assert {i.decode() for i, ok in zip(plain["id"], plain["valid"]) if not ok} == {"cls5/v17"}
    with pytest.raises(tf.errors.InvalidArgumentError, match="video cls5/v17 .*complete JPEG"):
        everything(files, num_classes=CLASSES, bad_data="fail")


def test_flow_count_mismatch_is_marked(tmp_path):
    rng = np.random.default_rng(0)
    gray = [tf.io.encode_jpeg(rng.integers(0, 256, (16, 16, 1), dtype=np.uint8)).numpy()
            for _ in range(FRAMES)]
    path = str(tmp_path / "flow.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for v in range(8):
            n_flow = FRAMES - 1 if v != 3 else FRAMES - 2
            ex = schema.make_example(f"v{v}", _frames(v), height=16, width=16, frame_rate=25,
                                     label_index=0, flow_x=gray[:FRAMES - 1],
                                     flow_y=gray[:FRAMES - 1])
            for key in (schema.FLOW_X, schema.FLOW_Y):       # a writer that lost a flow frame
                del ex.feature_lists.feature_list[key].feature[n_flow:]
            w.write(ex.SerializeToString())
    ds = pipeline.build_dataset(path, sampler=TSNSampler(2, 2), mode="val", modality="flow",
                                batch_size=8, input_size=16, backbone="tiny")
    batch = next(iter(ds))
    assert batch["valid"].numpy().tolist() == [v != 3 for v in range(8)]
    assert "video v3 (" in batch["problem"].numpy()[3].decode()
    assert "flow_x 2" in batch["problem"].numpy()[3].decode()


def test_truncated_shard_is_named_and_skipped(tmp_path, caplog):
    files = write_data(str(tmp_path), "tfrecord")
    raw = open(files[1], "rb").read()
    with open(files[1], "wb") as f:
        f.write(raw[: len(raw) - 300])
    with pytest.raises(tf.errors.DataLossError, match="train-00001-of-00002.tfrecord"):
        pipeline.build_dataset(files, sampler=TSNSampler(2, 1), mode="train", batch_size=8,
                               input_size=16, backbone="tiny")
    with caplog.at_level("WARNING"):
        out = everything(files, bad_data="skip")
    assert "train-00001-of-00002.tfrecord: truncated TFRecord shard" in caplog.text
    assert 60 < len(out["id"]) < N_VIDEOS and out["valid"].all()


def test_list_ids_match_tfrecord_ids(tmp_path):
    rec = everything(write_data(str(tmp_path / "r"), "tfrecord"))["id"]
    lst = everything(write_data(str(tmp_path / "l"), "list"))["id"]
    assert sorted(rec.tolist()) == sorted(lst.tolist())
    assert b"cls0/v0" in rec.tolist()
    dirs, ids, _, _ = pipeline.read_list_file(str(tmp_path / "l" / "train.list"))
    assert ids[0] == "cls0/v0" and dirs[0].endswith("frames/train/cls0/v0")


def _model():
    import keras
    inputs = keras.Input((2, 16, 16, 3))
    x = keras.layers.GlobalAveragePooling3D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(x))


@pytest.mark.parametrize("layout", ["tfrecord", "list"])
def test_training_skips_and_counts_or_fails(tmp_path, layout, caplog):
    files = write_data(str(tmp_path / "d"), layout, bad_jpeg=(17,), bad_label=(80,))

    def data_fn(ctx):
        return pipeline.build_dataset(files, sampler=TSNSampler(2, 1), mode="train",
                                      batch_size=16, input_size=16, backbone="tiny", seed=1,
                                      num_classes=CLASSES, input_context=ctx, kernels=False)
    common = dict(steps=16, global_batch_size=16, learning_rate=0.01, progress=False)
    with caplog.at_level("WARNING", logger="tfvid.train"):
        _, metrics = train(_model, data_fn, model_dir=str(tmp_path / "skip"), **common)
    assert metrics["num_bad_videos"] == 2 and len(metrics["bad_videos"]) == 2
    assert any("cls2/v80" in p and "label 99" in p for p in metrics["bad_videos"])
    assert any("cls5/v17" in p and "complete JPEG" in p for p in metrics["bad_videos"])
    assert caplog.text.count("cls2/v80") == 1                 # logged once per video
    assert np.isfinite(metrics["loss"])
    with pytest.raises(ValueError, match=r"video cls(2/v80|5/v17) \("):
        train(_model, data_fn, model_dir=str(tmp_path / "fail"), bad_data="fail", **common)


def test_invalid_examples_weigh_nothing(tmp_path):
    """The loss of a batch with invalid examples is the mean over its valid ones."""
    import keras
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.array([0, 1, 2, 1, 0, 2, 1, 0], "int32")
    valid = np.array([True, True, False, True, True, True, False, True])

    def data(with_bad):
        def fn(ctx):
            if with_bad:
                d = {"clip": x, "label": np.where(valid, y, 77).astype("int32"),
                     "valid": valid, "problem": np.where(valid, "", "bad").astype(object),
                     "id": np.array([f"v{i}" for i in range(8)], object)}
            else:
                d = {"clip": x[valid], "label": y[valid]}
            return tf.data.Dataset.from_tensor_slices(d).batch(8 if with_bad else 6).repeat()
        return fn

    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(3)(inputs))
    a, _ = train(model, data(True), model_dir=str(tmp_path / "a"), steps=3,
                 global_batch_size=8, learning_rate=0.1, progress=False, weight_decay=0)
    b, _ = train(model, data(False), model_dir=str(tmp_path / "b"), steps=3,
                 global_batch_size=6, learning_rate=0.1, progress=False, weight_decay=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
