"""StNet's test sampling on videos too short for the default 25 segments, as a user meets it.

Before: with T = 25 super-images of N frames, a video of fewer than 25 N frames wrapped around
(one super-image held frames from the end and then the start of the video); a StNet trained at
T = 4 on 24-frame clips fell from 0.49 top-1 at T = 4 to 0.19 (chance 0.17) at the default
T = 25. Now evaluate picks, per video, the largest T <= 25 that the video holds without
wrapping, never below the training T, and says so (metrics.json 'protocol', a warning)."""
import json

import numpy as np
import pytest
import tensorflow as tf
import keras

S, N, TRAIN_T, CLASSES = 32, 2, 3, 2
# video id -> frames; T of the rule: min(25, max(3, n // 2))
LENGTHS = {"n5": 5, "n8": 8, "n13": 13, "n30": 30, "n60": 60}
EXPECTED_T = {"n5": 3, "n8": 4, "n13": 6, "n30": 15, "n60": 25}


def _frame(i, h=36, w=40):
    """A grey frame whose level encodes its index (JPEG keeps flat blocks exact)."""
    return np.full((h, w, 3), 4 * i + 2, np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tfvid import models
    from tfvid.data import schema
    from tfvid.data.sampling import StNetSampler
    root = tmp_path_factory.mktemp("short")
    data = str(root / "test-0-of-1.tfrecord")
    with tf.io.TFRecordWriter(data) as writer:
        for k, (vid, n) in enumerate(LENGTHS.items()):
            enc = [tf.io.encode_jpeg(_frame(i)).numpy() for i in range(n)]
            writer.write(schema.make_example(vid, enc, height=36, width=40, frame_rate=25,
                                             label_index=k % CLASSES).SerializeToString())
    run = root / "run"
    run.mkdir()
    cfg = {"model": "stnet", "num_classes": CLASSES, "backbone": "tiny", "width": 0.25,
           "input_size": S, "modality": "rgb", "num_segments": TRAIN_T,
           "frames_per_segment": N, "temporal_block": "official",
           "sampler": StNetSampler(num_segments=TRAIN_T, frames_per_segment=N).config()}
    (run / "run_config.json").write_text(json.dumps(cfg))
    keras.utils.set_random_seed(1)
    model = models.build("stnet", CLASSES, backbone="tiny", width=0.25, input_size=S,
                         num_segments=None, frames_per_segment=N, temporal_block="official")
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model, step=tf.Variable(1)),
                               str(run), max_to_keep=1).save()
    return {"data": data, "run": str(run), "cfg": cfg, "model": model}


def _frame_indices(clip):
    """Normalised (T, S, S, 3N) super-images of grey frames -> int (T, N) frame indices."""
    from tfvid.data.augment import channel_affine
    _, mul, add = channel_affine("tiny", "rgb", 3 * N)
    centre = np.asarray(clip)[:, S // 2, S // 2, :]                  # (T, 3N)
    levels = (centre - np.array(add)) / np.array(mul)
    return np.rint((levels[:, ::3] - 2) / 4).astype(int)


def _wraps(indices):
    return any(any(b < a for a, b in zip(row, row[1:])) for row in indices.tolist())


def _sampled(setup, short_videos):
    """{id: (T, N) frame indices} of the test clips that evaluate builds (default T = 25)."""
    from pipelines import evaluate as job
    from tfvid.data import build_dataset
    from tfvid.train import run_dir
    sampler = job._test_sampler(run_dir.sampler_from_config(setup["cfg"], "test"),
                                setup["cfg"], "test", short_videos)
    ds = build_dataset([setup["data"]], sampler=sampler, mode="test", batch_size=1,
                       input_size=S, backbone="tiny", num_crops=1, repeat=False)
    return {b["id"].numpy()[0].decode(): _frame_indices(b["clip"][0, 0]) for b in ds}


def test_reference_sampling_wraps_short_videos(setup):
    """--short_videos=wrap (the reference): T = 25 everywhere, short videos wrap around."""
    got = _sampled(setup, "wrap")
    assert all(idx.shape == (25, N) for idx in got.values())
    assert all(_wraps(got[v]) for v in ("n5", "n8", "n13"))
    # 30 frames: no wrap, but 25 super-images of 2 frames overlap (starts 0, 1, 2, ...).
    assert not _wraps(got["n30"]) and len(np.unique(got["n30"])) < got["n30"].size


def test_short_videos_no_longer_wrap(setup):
    """Default: T follows the rule, and a video that holds the training T never wraps."""
    got = _sampled(setup, "fit")
    assert {v: idx.shape[0] for v, idx in got.items()} == EXPECTED_T
    for vid, idx in got.items():
        n = LENGTHS[vid]
        assert idx.min() >= 0 and idx.max() < n
        if n >= TRAIN_T * N:                     # no wrap, and T x N distinct frames
            assert not _wraps(idx), (vid, idx.tolist())
            assert len(np.unique(idx)) == idx.size, (vid, idx.tolist())
    # Shorter than the training T x N: the training T with the sampler's fallback (as trained).
    assert got["n5"].tolist() == [[0, 1], [1, 2], [2, 3]]


def test_evaluate_job_applies_and_reports_the_rule(setup, tmp_path, caplog):
    """The evaluate job at its default T (25), videos of mixed T in one batch: each video's
    score is the one it gets alone with its own T; the rule and the short videos are reported."""
    from pipelines.evaluate import evaluate_model_dir
    from tfvid.eval import metrics
    out = tmp_path / "eval"
    with caplog.at_level("WARNING"):
        summary = evaluate_model_dir(setup["run"], setup["data"], num_crops=1, batch_size=2,
                                     output_dir=str(out), progress=False)
    proto = json.loads((out / "metrics.json").read_text())["protocol"]
    assert proto["sampler"]["test_segments"] == 25
    assert proto["sampler"]["min_segments"] == TRAIN_T
    assert "never below the training T=3" in proto["short_video_rule"]
    short = proto["short_videos"]
    assert short["count"] == 4 and short["segments"] == 25
    assert {e["id"]: e["segments"] for e in short["examples"]} == {
        v: t for v, t in EXPECTED_T.items() if t < 25}
    assert "4 videos are too short for 25 segments" in caplog.text and "n5 (T=3)" in caplog.text
    assert summary["num_videos"] == 5
    # Scores: each video alone on its own T (batch 1, its own super-images).
    scores = metrics.load_scores(str(out / "scores.npz"))
    alone = {}
    from pipelines import evaluate as job
    from tfvid.data import build_dataset
    from tfvid.train import run_dir
    sampler = job._test_sampler(run_dir.sampler_from_config(setup["cfg"], "test"),
                                setup["cfg"], "test", "fit")
    # StNet's test view side (the spec's 256, scaled to this run's side): the trained weights
    # in a model rebuilt at that side, as the evaluate job does
    size = proto["test_input_size"]
    from tfvid import models
    model = models.build("stnet", CLASSES, backbone="tiny", width=0.25, input_size=size,
                         num_segments=None, frames_per_segment=N, temporal_block="official")
    model.set_weights(setup["model"].get_weights())
    for b in build_dataset([setup["data"]], sampler=sampler, mode="test", batch_size=1,
                           input_size=size, scale_size=proto["scale_size"], backbone="tiny",
                           num_crops=1, repeat=False):
        alone[b["id"].numpy()[0].decode()] = model(b["clip"][:, 0], training=False)
    manual = np.concatenate([alone[i].numpy() for i in scores.ids.tolist()])
    np.testing.assert_allclose(scores.logits, manual, rtol=1e-4, atol=1e-5)


def test_wrap_flag_keeps_the_reference(setup, tmp_path):
    from pipelines.evaluate import evaluate_model_dir
    out = tmp_path / "eval"
    evaluate_model_dir(setup["run"], setup["data"], num_crops=1, batch_size=2,
                       output_dir=str(out), progress=False, short_videos="wrap")
    proto = json.loads((out / "metrics.json").read_text())["protocol"]
    assert proto["sampler"]["min_segments"] == 0 and "wraps" in proto["short_video_rule"]
    assert proto["short_videos"]["count"] == 0
