"""pipelines.predict: video file -> export -> top-k classes, against the Keras model."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from test_export import CLASSES, SIZE, make_run_dir, tiny_tsn

W, H = 64, 48


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(model, export path, video path): a tiny TSN exported by the job, a 30-frame mp4."""
    from pipelines import export as job
    from tfvid.prep.video import write_video

    tmp = tmp_path_factory.mktemp("predict")
    model = tiny_tsn(seed=3)
    run = make_run_dir(tmp, model, frame_size=(W, H))
    path = job.export(run, export_base=str(tmp / "saved_models"), name="tiny")
    rng = np.random.default_rng(0)
    t = np.arange(30)[:, None, None, None]
    frames = (rng.integers(0, 256, (1, H, W, 3)) + 7 * t) % 256   # moving colour pattern
    video = write_video(str(tmp / "clip.mp4"), frames.astype(np.uint8), fps=25)
    return model, path, video, tmp


def keras_reference(model, video, sidecar, num_crops):
    """Logits averaged over views: read_video + preprocess_video + the Keras model."""
    from tfvid.data import sampling
    from tfvid.data.pipeline import preprocess_video
    from tfvid.prep.video import read_video

    frames = read_video(video, frame_size=(W, H)).frames
    views = preprocess_video(frames, sampler=sampling.get_sampler(**sidecar["sampling"]),
                             modality="rgb", mode="test", input_size=SIZE, backbone="tiny",
                             num_crops=num_crops)
    assert tuple(views.shape) == (num_crops, 3, SIZE, SIZE, 3)
    return keras.ops.convert_to_numpy(model(views, training=False)).mean(0)


@pytest.mark.parametrize("num_crops", [1, 3])
def test_predict_matches_keras(setup, num_crops):
    from tfvid.eval import predict
    from tfvid.export import load_export

    model, path, video, _ = setup
    serving, sidecar = load_export(path)
    result = predict.predict_video(serving, sidecar, video, num_crops=num_crops, top_k=3)
    expected = keras_reference(model, video, sidecar, num_crops)
    np.testing.assert_allclose(result["logits"], expected, atol=1e-4)
    assert result["top_k"][0]["index"] == int(np.argmax(expected))
    assert result["top_k"][0]["label"] == CLASSES[int(np.argmax(expected))]
    assert result["views"] == num_crops and result["num_frames"] == 30
    probs = [item["probability"] for item in result["top_k"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True)
    np.testing.assert_allclose(probs[0], np.exp(expected).max() / np.exp(expected).sum(),
                               rtol=1e-4)
    np.testing.assert_allclose(sum(result["probabilities"]), 1.0, atol=1e-6)


def test_predict_job_several_videos_json_and_bad_file(setup, capsys):
    from pipelines import predict

    model, path, video, tmp = setup
    bad = tmp / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    out_json = str(tmp / "out" / "pred.json")
    # the model dir (not a version dir) means its newest version
    results = predict.predict(os.path.dirname(path), [video, str(bad), str(tmp / "gone.avi")],
                              top_k=2, json_path=out_json)
    assert [("error" in r) for r in results] == [False, True, True]
    assert "broken.mp4" in results[1]["error"] and "gone.avi" in results[2]["error"]
    captured = capsys.readouterr()
    assert "broken.mp4" in captured.err and "gone.avi" in captured.err
    assert f"1. {results[0]['top_k'][0]['label']}" in captured.out
    with open(out_json, encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["export_dir"] == path and saved["num_crops"] == 1
    assert saved["results"][0]["top_k"] == results[0]["top_k"]


def test_predict_main_exit_status(setup, capsys):
    from absl import flags
    from absl.testing import flagsaver
    from pipelines import predict

    _, path, video, tmp = setup
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(export_dir=path, video=[video], num_crops=1, top_k=1, json=None):
        predict.main(["predict"])
    assert "1. " in capsys.readouterr().out
    with flagsaver.flagsaver(export_dir=path, video=[str(tmp / "missing.webm")], num_crops=1,
                             top_k=1, json=None):
        with pytest.raises(SystemExit, match="missing.webm"):
            predict.main(["predict"])
    with pytest.raises(ValueError, match="num_crops"):
        predict.predict(path, [video], num_crops=4)


# --------------------------------------------------------------- --attention_plot (DIN, VideoMap)
def _attention_run(tmp, name, frames):
    """(model, run dir, sidecar) of a tiny end-to-end DIN / VideoMap run on frames: the sidecar
    an export of it has (clip shape, sampling, decoding, preprocessing, its run dir)."""
    from tfvid import models
    from tfvid.data import augment

    keras.utils.set_random_seed(1)
    model = models.build(name, len(CLASSES), backbone="tiny", width=0.25, input_size=SIZE,
                         num_frames=frames)
    run = make_run_dir(tmp, model, num_segments=frames, frame_size=(W, H),
                       extra={"model": name, "width": 0.25})
    sidecar = {"class_names": CLASSES, "model": {"model_dir": run},
               "signature": {"inputs": {"clip": {"shape": [None, frames, SIZE, SIZE, 3]}}},
               "sampling": {"name": "uniform", "num_frames": frames, "jitter": True},
               "decoding": {"frame_size": [W, H], "short_side": None, "fps": None},
               "preprocessing": {"modality": "rgb", "backbone": "tiny", "input_size": SIZE,
                                 "mode": "test",
                                 "normalization": augment.normalization_config("tiny", "rgb")}}
    return model, run, sidecar


@pytest.mark.parametrize("name,frames", [("videomap", 16), ("din", 8)])
def test_attention_plot_from_the_run(setup, tmp_path, name, frames):
    from tfvid.eval import frame_attention, predict

    _, _, video, _ = setup
    model, run, sidecar = _attention_run(tmp_path, name, frames)
    views = predict.make_views(predict.decode(video, sidecar).frames, sidecar, 1)
    results = [{"video": video, "status": "ok", "top_k": [{"index": 2, "label": CLASSES[2]}]},
               {"video": "broken.mp4", "status": "error"}]
    png = str(tmp_path / "attention.png")
    drawn = frame_attention.plot_attention(sidecar, results, png)
    assert drawn["kind"] == name and drawn["model_dir"] == run and drawn["videos"] == ["clip.mp4"]
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # the model was rebuilt with the run's weights: its logits are the trained model's
    rebuilt, kind, _ = frame_attention.model_from_run(sidecar)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rebuilt(views, training=False)),
                               keras.ops.convert_to_numpy(model(views, training=False)),
                               atol=1e-5)
    if name == "videomap":
        from tfvid.models.videomap import videomap_attention
        np.testing.assert_allclose(drawn["weights"], videomap_attention(model, views),
                                   atol=1e-5)
    else:
        for h, share in drawn["weights"][0].items():
            h = int(h)
            share = np.asarray(share)
            assert share.shape == (frames,) and share.sum() == pytest.approx(1.0)
            # a window of h rows is drawn at its centre: no share before or after those
            lo, hi = round((h - 1) / 2), round(frames - 1 - (h - 1) / 2)
            assert not share[:lo].any() and not share[hi + 1:].any()


def test_attention_plot_errors(setup, tmp_path):
    from tfvid.eval import frame_attention

    _, _, _, tmp = setup
    _, _, sidecar = _attention_run(tmp_path, "din", 8)
    with pytest.raises(ValueError, match="--model_dir"):
        frame_attention.model_from_run({**sidecar, "model": {}})
    with pytest.raises(ValueError, match="no video was predicted"):
        frame_attention.plot_attention(sidecar, [{"video": "x", "status": "error"}],
                                       str(tmp_path / "a.png"))
    tsn_run = os.path.join(tmp, "run_tiny")       # the TSN of the fixture: nothing to draw
    with pytest.raises(ValueError, match="no temporal attention"):
        frame_attention.model_from_run({**sidecar, "signature": {"inputs": {"clip": {
            "shape": [None, 3, SIZE, SIZE, 3]}}}}, tsn_run)
