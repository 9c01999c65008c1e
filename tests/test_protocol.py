"""Multi-view averaging on a tiny Keras model, the evaluate loop, M-TWI, and evaluate-job errors."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import keras

from tfvid.eval import protocol

B, V, T, S, C, CLASSES = 2, 3, 4, 5, 3, 6


def tiny_model(seed=0):
    """(n, T?, S, S, C) -> (n, CLASSES): a non-linear per-frame net + average over time, like a
    TSN with 'avg' consensus (so averaging logits differs from averaging inputs)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, S, S, C))
    x = keras.layers.Dense(8, activation="relu")(inputs)
    x = keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=(2, 3)))(x)
    x = keras.layers.Dense(CLASSES)(x)
    outputs = keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=1))(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def clips():
    return np.random.default_rng(1).normal(size=(B, V, T, S, S, C)).astype(np.float32)


def test_mean_over_views_equals_manual_average(model, clips):
    out = protocol.predict_views(model, clips, view_batch=B * V).numpy()
    assert out.shape == (B, CLASSES)
    manual = np.mean([model(clips[:, v], training=False).numpy() for v in range(V)], axis=0)
    np.testing.assert_allclose(out, manual, rtol=1e-5, atol=1e-6)
    # Scores are averaged, not inputs: the model is non-linear, so these differ.
    of_mean = model(clips.mean(axis=1), training=False).numpy()
    assert not np.allclose(out, of_mean, atol=1e-4)


@pytest.mark.parametrize("view_batch", [1, 4, 100])
def test_chunking_does_not_change_the_result(model, clips, view_batch):
    ref = protocol.predict_views(model, clips, view_batch=B * V).numpy()
    out = protocol.predict_views(model, clips, view_batch=view_batch).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_chunks_are_bounded(model, clips):
    sizes = []

    def spy(x):
        sizes.append(int(x.shape[0]))
        return model(x, training=False)

    protocol.predict_views(spy, clips, view_batch=4)
    assert sizes == [4, 2]


def test_five_d_batch_is_one_view(model, clips):
    out = protocol.predict_views(model, clips[:, 0], view_batch=1).numpy()
    np.testing.assert_allclose(out, model(clips[:, 0], training=False).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_predict_views_errors(model, clips):
    with pytest.raises(ValueError, match="view_batch"):
        protocol.predict_views(model, clips, view_batch=0)
    with pytest.raises(ValueError, match=r"\(B, V, T, S, S, C\)"):
        protocol.predict_views(model, clips[0, 0, 0], view_batch=1)


def _dataset(clips_all, labels, ids, batch):
    return tf.data.Dataset.from_tensor_slices(
        {"clip": clips_all, "label": labels, "id": ids}).batch(batch)


def test_evaluate_collects_scores_in_order(model):
    rng = np.random.default_rng(2)
    n = 5
    clips_all = rng.normal(size=(n, V, T, S, S, C)).astype(np.float32)
    labels = np.array([0, 3, -1, 5, 1], dtype=np.int32)
    ids = np.array([f"video_{i}" for i in range(n)])
    scores = protocol.evaluate(model, _dataset(clips_all, labels, ids, 2), view_batch=4,
                               progress=False, class_names=[f"c{i}" for i in range(CLASSES)])
    assert scores.ids.tolist() == ids.tolist()
    np.testing.assert_array_equal(scores.labels, labels)
    expected = protocol.predict_views(model, clips_all, view_batch=n * V).numpy()
    np.testing.assert_allclose(scores.logits, expected, rtol=1e-5, atol=1e-6)
    assert scores.class_names[-1] == "c5"


def test_evaluate_rejects_infinite_and_empty_datasets(model):
    clips_all = np.zeros((1, 1, T, S, S, C), np.float32)
    ds = _dataset(clips_all, np.zeros(1, np.int32), np.array(["a"]), 1)
    with pytest.raises(ValueError, match="finite"):
        protocol.evaluate(model, ds.repeat(), progress=False)
    with pytest.raises(ValueError, match="no batches"):
        protocol.evaluate(model, ds.take(0), progress=False)


# -------------------------------------------------------------- bad videos, variable T
def _ds(**columns):
    return tf.data.Dataset.from_tensor_slices(columns).batch(2)


def test_bad_labels_are_listed_and_the_rest_scored(model):
    """One bad label no longer discards the evaluation: the other videos are scored."""
    rng = np.random.default_rng(3)
    clips_all = rng.normal(size=(5, 1, T, S, S, C)).astype(np.float32)
    labels = np.array([0, 7, -1, -5, 2], np.int32)           # 7 and -5 are out of [0, 6)
    ids = np.array(["a", "b", "c", "d", "e"])
    for num_classes in (None, CLASSES):                        # the logit width or given
        result = protocol.evaluate_videos(model, _ds(clip=clips_all, label=labels, id=ids),
                                          progress=False, num_classes=num_classes)
        assert result.scores.ids.tolist() == ["a", "c", "e"]  # -1 = unlabeled is scored
        assert result.scores.labels.tolist() == [0, -1, 2]
        assert [b["id"] for b in result.bad_videos] == ["b", "d"]
        assert "label 7 outside [0, 6)" in result.bad_videos[0]["problem"]
        expected = protocol.predict_views(model, clips_all[[0, 2, 4]]).numpy()
        np.testing.assert_allclose(result.scores.logits, expected, rtol=1e-5, atol=1e-6)
        assert result.num_steps.tolist() == [T, T, T]
    with pytest.raises(protocol.BadVideoError, match="'b'.*label 7"):
        protocol.evaluate_videos(model, _ds(clip=clips_all, label=labels, id=ids),
                                 progress=False, num_classes=CLASSES, bad_data="fail")
    with pytest.raises(ValueError, match="'b'"):              # the same without num_classes
        protocol.evaluate(model, _ds(clip=clips_all, label=labels, id=ids), progress=False,
                          bad_data="fail")
    scores = protocol.evaluate(model, _ds(clip=clips_all, label=labels, id=ids), progress=False)
    assert scores.ids.tolist() == ["a", "c", "e"]
    with pytest.raises(ValueError, match="bad_data"):
        protocol.evaluate(model, _ds(clip=clips_all, label=labels, id=ids), bad_data="keep")


def test_pipeline_marks_of_invalid_videos_are_used(model):
    """'valid' / 'problem' from build_dataset (corrupt JPEG, flow mismatch...): left out, listed."""
    rng = np.random.default_rng(4)
    clips_all = rng.normal(size=(4, 1, T, S, S, C)).astype(np.float32)
    clips_all[1] = 0.0                                         # the pipeline zeroes bad clips
    ds = _ds(clip=clips_all, label=np.array([0, 1, 2, 3], np.int32),
             id=np.array(["a", "b", "c", "d"]), valid=np.array([True, False, True, False]),
             problem=np.array(["", "corrupt JPEG frame 3", "", ""]))
    result = protocol.evaluate_videos(model, ds, progress=False)
    assert result.scores.ids.tolist() == ["a", "c"]
    assert result.bad_videos == [{"id": "b", "problem": "corrupt JPEG frame 3"},
                                 {"id": "d", "problem": "marked invalid by the input pipeline"}]
    with pytest.raises(protocol.BadVideoError, match="corrupt JPEG frame 3"):
        protocol.evaluate_videos(model, ds, progress=False, bad_data="fail")
    all_bad = _ds(clip=clips_all[:2], label=np.array([0, 1], np.int32), id=np.array(["a", "b"]),
                  valid=np.array([False, False]), problem=np.array(["x", "y"]))
    result = protocol.evaluate_videos(model, all_bad, progress=False, num_classes=CLASSES)
    assert len(result.scores) == 0 and result.scores.num_classes == CLASSES
    assert len(result.bad_videos) == 2


def temporal_model(seed=0):
    """(n, T?, S, S, C) -> (n, CLASSES) with a temporal convolution (neighbouring steps mix,
    zero padding at the ends) before a max over time, like StNet: repeating steps changes it."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, S, S, C))
    x = keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=(2, 3)))(inputs)
    x = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(x))


def test_variable_length_batches_score_each_video_on_its_own_steps():
    """build_dataset pads variable-length batches by repeating each video's steps ('num_steps'
    = true T); evaluate runs every video on its own steps: the score it gets alone."""
    from tfvid.data.pipeline import cyclic_pad
    model = temporal_model()
    rng = np.random.default_rng(5)
    lengths = [2, 5, 3, 5]
    videos = [rng.normal(size=(1, t, S, S, C)).astype(np.float32) for t in lengths]
    alone = np.concatenate([model(v, training=False).numpy() for v in videos])
    padded = np.stack([cyclic_pad(v, 5).numpy() for v in videos])        # (4, 1, 5, S, S, C)
    ds = _ds(clip=padded, label=np.zeros(4, np.int32), id=np.array(list("abcd")),
             num_steps=np.array(lengths, np.int32))
    result = protocol.evaluate_videos(model, ds, progress=False)
    np.testing.assert_allclose(result.scores.logits, alone, rtol=1e-5, atol=1e-5)
    assert result.num_steps.tolist() == lengths
    # Padding is not neutral for this model: the padded clips give other scores.
    assert not np.allclose(protocol.predict_views(model, padded).numpy(), alone, atol=1e-4)


# ------------------------------------------------------------------------------------- M-TWI
SNIPPETS = np.array([[1, 0], [3, 1], [0, 5], [2, 2], [4, 0]], dtype=np.float64)


def test_mtwi_hand_computed_example():
    # 5 snippets, so every span has fewer windows than k = 15: all windows are averaged.
    # span 1 (stride 1): rows                       -> mean [2.0, 1.6]
    # span 2 (stride 2): [0:2] [2:4] [4:5] maxima [3,1] [2,5] [4,0] -> [3.0, 2.0]
    # span 4 (stride 4): [0:4] [4:5] maxima [3,5] [4,0]             -> [3.5, 2.5]
    # span 8 (stride 7) and 16 (stride 13): one window [0:5]        -> [4, 5] each
    # mean over spans: [(2+3+3.5+4+4)/5, (1.6+2+2.5+5+5)/5] = [3.3, 3.22]
    np.testing.assert_allclose(protocol.mtwi_scores(SNIPPETS), [3.3, 3.22])


def test_mtwi_takes_the_max_over_crops():
    crops = np.stack([SNIPPETS, SNIPPETS - 1.0, np.minimum(SNIPPETS, 0.5)], axis=1)  # (S, 3, C)
    np.testing.assert_allclose(protocol.mtwi_scores(crops), [3.3, 3.22])


def test_mtwi_top_k():
    ramp = np.arange(8, dtype=np.float64)[:, None]
    # 8 windows of span 1: k = max(1, floor(8/4)) = 2 -> mean(7, 6)
    assert protocol.mtwi_scores(ramp, spans=(1,), min_k=1)[0] == pytest.approx(6.5)
    # k = max(15, 2) = 15 > 8 windows: all of them
    assert protocol.mtwi_scores(ramp, spans=(1,))[0] == pytest.approx(3.5)
    # 80 windows: k = max(15, 20) = 20 -> mean(60..79)
    long = np.arange(80, dtype=np.float64)[:, None]
    assert protocol.mtwi_scores(long, spans=(1,))[0] == pytest.approx(69.5)


def test_mtwi_softmax_and_errors():
    p = protocol.mtwi_scores(SNIPPETS, softmax=True)
    assert p.sum() == pytest.approx(1.0) and p[0] > p[1]
    with pytest.raises(ValueError, match="snippet_scores"):
        protocol.mtwi_scores(np.zeros((0, 3)))


# ------------------------------------------------------------------------- evaluate job errors
def test_evaluate_job_names_missing_run_config(tmp_path):
    from pipelines import evaluate as job
    with pytest.raises(FileNotFoundError, match="run_config.json"):
        job.evaluate_model_dir(str(tmp_path), "x.tfrecord")


def test_evaluate_job_names_missing_checkpoint(tmp_path):
    from tfvid.train import run_dir as job
    with pytest.raises(FileNotFoundError, match=f"no checkpoint in {tmp_path}"):
        job.restore(tiny_model(), str(tmp_path))


def test_restore_from_checkpoint_manager(tmp_path):
    from tfvid.train import run_dir as job
    trained = tiny_model(seed=3)
    ckpt = tf.train.Checkpoint(model=trained, step=tf.Variable(7))
    tf.train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=2).save()
    fresh = tiny_model(seed=4)
    loaded = job.restore(fresh, str(tmp_path))
    assert os.path.basename(loaded).startswith("ckpt-")
    x = np.ones((1, T, S, S, C), np.float32)
    np.testing.assert_allclose(fresh(x).numpy(), trained(x).numpy(), rtol=1e-6)


def test_resolve_files(tmp_path):
    from pipelines import common as job
    for name in ("a.tfrecord", "b.tfrecord"):
        (tmp_path / name).write_bytes(b"")
    lst = tmp_path / "test.list"      # raw-frame list files are passed on as they are
    lst.write_text("video_dir 10 0\n")
    assert job.resolve_files(str(lst)) == [str(lst)]
    assert job.resolve_files(str(tmp_path / "*.tfrecord")) == sorted(
        [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")])
    assert len(job.resolve_files(f"{tmp_path},{tmp_path / 'a.tfrecord'}")) == 2
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        job.resolve_files(str(tmp_path / "nothing-here*"))


def test_read_run_config_requires_model_and_classes(tmp_path):
    from tfvid.train import run_dir as job
    (tmp_path / "run_config.json").write_text(json.dumps({"model": "tsn"}))
    with pytest.raises(ValueError, match="num_classes"):
        job.read_run_config(str(tmp_path))


# ------------------------------------------------------------------------- end to end (tiny TSN)
def _write_records(path, num_videos, classes, n=12, h=40, w=48):
    """Labeled videos v0.. (label = index % classes) and one unlabeled video 'unlabeled'."""
    from tfvid.data import schema
    rng = np.random.default_rng(5)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for v in range(num_videos + 1):
            frames = rng.integers(0, 256, (n, h, w, 3)).astype(np.uint8)
            enc = [tf.io.encode_jpeg(f).numpy() for f in frames]
            labeled = v < num_videos
            ex = schema.make_example(f"v{v}" if labeled else "unlabeled", enc, height=h,
                                     width=w, frame_rate=25,
                                     label_index=v % classes if labeled else None)
            writer.write(ex.SerializeToString())
    return str(path)


def test_evaluate_job_end_to_end(tmp_path):
    from absl import flags
    from tfvid import models
    from tfvid.data import build_dataset
    from tfvid.data.sampling import TSNSampler
    from tfvid.eval import metrics
    from pipelines import evaluate as job

    classes = 3
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    records = _write_records(data_dir / "test-0-of-1.tfrecord", 4, classes)
    (data_dir / "classes.txt").write_text("walk\nrun\njump\n")
    model_dir = tmp_path / "run"
    cfg = {"model": "tsn", "num_classes": classes, "backbone": "tiny", "width": 0.25,
           "input_size": 32, "modality": "rgb", "num_segments": 3, "consensus": "avg",
           "sampler": TSNSampler(num_segments=3).config()}
    model_dir.mkdir()
    (model_dir / "run_config.json").write_text(json.dumps(cfg))
    keras.utils.set_random_seed(0)
    trained = models.build("tsn", classes, backbone="tiny", width=0.25, input_size=32,
                           num_segments=None)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=trained, step=tf.Variable(1)),
                               str(model_dir), max_to_keep=1).save()

    out = tmp_path / "eval"
    flags.FLAGS(["evaluate", f"--model_dir={model_dir}", f"--data={data_dir}",
                 "--num_segments=4", "--num_crops=10", "--batch_size=2", "--view_batch=7",
                 f"--output_dir={out}"])
    try:
        job.main(["evaluate"])
    finally:
        flags.FLAGS.unparse_flags()
    for name in ("metrics.json", "scores.npz", "confusion.png", "confusion.csv",
                 "per_class.csv"):
        assert os.path.getsize(out / name) > 0, name
    with open(out / "metrics.json") as f:
        summary = json.load(f)
    assert summary["num_videos"] == 5 and summary["num_unlabeled"] == 1
    assert summary["protocol"]["sampler"]["test_segments"] == 4
    scores = metrics.load_scores(str(out / "scores.npz"))
    assert scores.class_names == ["walk", "run", "jump"]
    assert sorted(scores.ids.tolist()) == ["unlabeled", "v0", "v1", "v2", "v3"]
    # Same numbers as running the trained model by hand on the 4-snippet, 10-crop batches.
    ds = build_dataset([records], sampler=TSNSampler(num_segments=3, test_segments=4),
                       mode="test", batch_size=5, input_size=32, backbone="tiny", num_crops=10,
                       repeat=False)
    batch = next(iter(ds))
    assert batch["clip"].shape == (5, 10, 4, 32, 32, 3)
    manual = protocol.predict_views(trained, batch["clip"], view_batch=50).numpy()
    order = [protocol._as_str(batch["id"]).index(i) for i in scores.ids.tolist()]
    np.testing.assert_allclose(scores.logits, manual[order], rtol=1e-4, atol=1e-5)
    assert summary["top1"] == pytest.approx(
        metrics.topk_accuracy(scores.labels, scores.logits, 1))
