"""pipelines.predict on folders and globs: batched, JSON + CSV, bad files reported by name."""
import csv
import glob
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

W, H = 64, 48
OPENCV_DATA = "/usr/share/doc/opencv-doc/examples/data"


def _clip(cls, n, seed):
    from tfvid.prep.synthetic import render_clip
    return render_clip(cls, num_frames=n, frame_size=(W, H), seed=seed)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(export dir, folder): a tiny TSN export; a folder tree of synthetic clips (mp4, avi,
    webm), a truncated avi, a text file named .mp4, a 2-frame clip and a notes.txt."""
    from pipelines.bench_long_video import tiny_export
    from tfvid.prep.video import write_video

    tmp = tmp_path_factory.mktemp("predict_folder")
    export = tiny_export(str(tmp_path_factory.getbasetemp() / "tiny_export"), (W, H))  # shared
    root = tmp / "videos"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    write_video(str(root / "a" / "one.mp4"), _clip("MoveRight", 24, 1), fps=12)
    write_video(str(root / "a" / "deep" / "two.avi"), _clip("Bounce", 30, 2), fps=12)
    write_video(str(root / "b" / "three.webm"), _clip("RotateClockwise", 20, 3), fps=12)
    write_video(str(root / "b" / "short.mp4"), _clip("MoveRight", 2, 4), fps=12)
    full = write_video(str(tmp / "long.avi"), _clip("Bounce", 60, 5), fps=12)
    data = open(full, "rb").read()
    (root / "b" / "truncated.avi").write_bytes(data[:len(data) // 2])
    (root / "b" / "text.mp4").write_text("this is a text file, not a video\n" * 20)
    (root / "notes.txt").write_text("not a video")
    return export, str(root)


def test_expand_inputs_folder_glob_and_files(setup, tmp_path):
    from tfvid.eval.predict import expand_inputs

    _, root = setup
    paths, skipped = expand_inputs([root])
    names = [os.path.relpath(p, root) for p in paths]
    assert names == ["a/one.mp4", "a/deep/two.avi", "b/short.mp4", "b/text.mp4", "b/three.webm",
                     "b/truncated.avi"]
    assert [os.path.basename(s["path"]) for s in skipped] == ["notes.txt"]
    paths, _ = expand_inputs([os.path.join(root, "**", "*.avi"), os.path.join(root, "a")])
    assert [os.path.relpath(p, root) for p in paths] == ["a/deep/two.avi", "b/truncated.avi",
                                                         "a/one.mp4"]      # no duplicate
    # an explicit file is tried whatever its name; a missing one and an empty glob are kept
    paths, _ = expand_inputs([os.path.join(root, "notes.txt"), str(tmp_path / "gone.mp4"),
                              str(tmp_path / "none*.mp4")])
    assert len(paths) == 3
    # a folder of frame images is one video (Jester layout)
    frames = tmp_path / "jester" / "00001"
    frames.mkdir(parents=True)
    from tfvid.prep.video import encode_jpegs
    for i, jpg in enumerate(encode_jpegs(_clip("Bounce", 4, 6))):
        (frames / f"{i + 1:05d}.jpg").write_bytes(jpg)
    assert expand_inputs([str(tmp_path / "jester")])[0] == [str(frames)]
    assert expand_inputs([str(frames)])[0] == [str(frames)]


def test_folder_predict_outputs_and_bad_files(setup, tmp_path, capsys):
    from pipelines import predict as job

    export, root = setup
    out = str(tmp_path / "out" / "run1")
    results = job.predict(export, [root], top_k=3, output=out, batch_size=4)
    by_name = {os.path.basename(r["video"]): r for r in results}
    assert [by_name[n]["status"] for n in ("one.mp4", "two.avi", "three.webm", "short.mp4")] == \
        ["ok"] * 4
    assert by_name["one.mp4"]["num_frames"] == 24 and by_name["two.avi"]["num_frames"] == 30
    # a text file named .mp4: an error naming the file, the others still ran
    bad = by_name["text.mp4"]
    assert bad["status"] == "error" and "text.mp4" in bad["error"]
    assert "not a readable video container" in bad["reason"]
    # the truncated avi: the readable part is predicted, the status says what was lost
    cut = by_name["truncated.avi"]
    assert cut["status"] == "partial" and "of 60 frames" in cut["reason"]
    assert 0 < cut["num_frames"] < 60 and len(cut["top_k"]) == 3
    # a 2-frame clip for 3 snippets: TSN's sampling rule repeats positions, and says so
    assert "2 frames for 3 snippets" in by_name["short.mp4"]["note"]
    captured = capsys.readouterr()
    assert "text.mp4" in captured.err and "1. " in captured.out
    with open(out + ".json", encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["export_dir"] == export and len(saved["results"]) == 6
    assert [s["path"] for s in saved["skipped"]] == [os.path.join(root, "notes.txt")]
    with open(out + ".csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["video", "status", "frames", "class_1", "probability_1", "class_2",
                             "probability_2", "class_3", "probability_3", "reason"]
    row = {os.path.basename(r["video"]): r for r in rows}
    assert row["text.mp4"]["status"] == "error" and row["text.mp4"]["class_1"] == ""
    assert "not a readable video container" in row["text.mp4"]["reason"]
    assert row["one.mp4"]["class_1"] == by_name["one.mp4"]["top_k"][0]["label"]
    assert float(row["one.mp4"]["probability_1"]) == pytest.approx(
        by_name["one.mp4"]["top_k"][0]["probability"], abs=1e-6)
    assert row["truncated.avi"]["status"] == "partial" and row["truncated.avi"]["frames"]


def test_batching_does_not_change_scores(setup):
    from tfvid.eval import predict

    export, root = setup
    serving, sidecar = predict.load(export)
    paths, _ = predict.expand_inputs([os.path.join(root, "**", "*.*")])
    one = predict.predict_files(serving, sidecar, paths, batch_size=1, progress=False)
    many = predict.predict_files(serving, sidecar, paths, batch_size=5, workers=1,
                                 progress=False)
    assert [r["status"] for r in one] == [r["status"] for r in many]
    for a, b in zip(one, many):
        if a["status"] != "error":
            np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-5)
            single = predict.predict_video(serving, sidecar, a["video"])
            np.testing.assert_allclose(a["logits"], single["logits"], atol=1e-5)


def test_main_folder_output_dir_and_exit_status(setup, tmp_path, capsys):
    from absl import flags
    from absl.testing import flagsaver
    from pipelines import predict as job

    export, root = setup
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    good = os.path.join(root, "a")
    out_dir = str(tmp_path / "preds") + "/"
    with flagsaver.flagsaver(export_dir=export, video=[good], output=out_dir, json=None,
                             top_k=2, num_crops=1, untrimmed=False, progress=False):
        job.main(["predict"])
    assert sorted(os.listdir(out_dir)) == ["predictions.csv", "predictions.json"]
    with flagsaver.flagsaver(export_dir=export, video=[root], output=None, json=None,
                             top_k=2, num_crops=1, untrimmed=False, progress=False):
        with pytest.raises(SystemExit, match="1 of 6 videos failed: .*text.mp4"):
            job.main(["predict"])


@pytest.mark.skipif(not os.path.isdir(OPENCV_DATA), reason=f"{OPENCV_DATA} is absent")
def test_real_avi_clips(setup, tmp_path):
    """OpenCV's sample videos: real codecs and sizes; tree.avi declares 444 frames but holds
    68 (a truncated file in the wild)."""
    from pipelines import predict as job

    export, _ = setup
    files = sorted(glob.glob(os.path.join(OPENCV_DATA, "*.avi")))
    assert files, f"no .avi in {OPENCV_DATA}"
    results = job.predict(export, [os.path.join(OPENCV_DATA, "*.avi")], top_k=2,
                          output=str(tmp_path / "real"))
    assert [r["video"] for r in results] == files
    by_name = {os.path.basename(r["video"]): r for r in results}
    for name, r in by_name.items():
        assert r["status"] in ("ok", "partial"), (name, r)
        assert len(r["top_k"]) == 2 and np.isfinite(r["logits"]).all()
    if "tree.avi" in by_name:
        assert by_name["tree.avi"]["status"] == "partial"
        assert "of 444 frames" in by_name["tree.avi"]["reason"]
