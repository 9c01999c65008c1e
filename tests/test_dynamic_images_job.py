"""pipelines.dynamic_images (PNGs of whole-video and MDI dynamic images, contact sheet) and the
rank-pooling benchmark on tiny videos."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pytest

W, H, N = 64, 48, 22


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from tfvid.prep.synthetic import render_clip
    from tfvid.prep.video_writer import write_video
    frames = render_clip("MoveRight", num_frames=N, frame_size=(W, H), seed=2)
    return write_video(str(tmp_path_factory.mktemp("di") / "move.mp4"), frames, fps=25)


def read_png(path):
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def test_job_writes_pngs(video, tmp_path, capsys):
    from absl import flags

    from pipelines import dynamic_images as job
    from pipelines import predict  # noqa: F401  (defines --video too: the flags must coexist)
    out = str(tmp_path / "out")
    flags.FLAGS([
        "dynamic_images", f"--video={video}", f"--output_dir={out}", "--methods=arp,rp",
        "--window=10", "--stride=6", f"--frame_size={W}x{H}"])
    try:
        job.main(["dynamic_images"])
    finally:
        flags.FLAGS.unparse_flags()
    printed = capsys.readouterr().out
    # n = 22, stride 6: 0-based starts 0, 6, 12, 18 -> 4 windows
    for m in ("arp", "rp"):
        img = read_png(os.path.join(out, f"move_{m}.png"))
        assert img.shape == (H, W, 3) and img.dtype == np.uint8
        assert img.min() == 0 and img.max() == 255           # global min-max display
        for k in range(4):
            assert read_png(os.path.join(out, "windows", f"move_{m}_w{k:03d}.png")).shape == \
                (H, W, 3)
        assert not os.path.exists(os.path.join(out, "windows", f"move_{m}_w004.png"))
        assert f"{m.upper()}: pairwise ranking accuracy" in printed
    sheet = read_png(os.path.join(out, "move_contact.png"))
    assert sheet.shape[0] > 2 * H and sheet.shape[1] > 4 * W
    summary = json.load(open(os.path.join(out, "move_dynamic_images.json")))
    assert summary["num_frames"] == N and len(summary["windows"]) == 4
    assert summary["windows"][-1] == [18, 19, 20, 21] + [21] * 6     # last frame repeats
    assert summary["accuracy"]["video"]["arp"] > 90.0
    assert summary["accuracy"]["video"]["rp"] > 90.0
    assert os.path.join(out, "move_contact.png") in printed
    # a summary, not one line per PNG (the JSON lists every file)
    assert "move_arp_w000.png" not in printed and len(printed.strip().splitlines()) <= 8
    assert "8 window PNG(s)" in printed and summary["contact_sheet"].endswith("move_contact.png")
    assert all(os.path.exists(f) for f in summary["files"])


def test_job_requires_flags(video):
    from absl import app, flags

    from pipelines import dynamic_images as job
    for argv, match in [(["--video=x.mp4"], "--output_dir is required"),
                        (["--video=x.mp4", "--output_dir=o"], "--video: no such file: x.mp4"),
                        ([f"--video={video}", "--output_dir=o", "--methods=arp,mean"],
                         "--methods=arp,mean: choose from arp, rp"),
                        ([f"--video={video}", "--output_dir=o", "--stride=0"], "--stride")]:
        flags.FLAGS(["dynamic_images", *argv])
        try:
            with pytest.raises(app.UsageError, match=match):
                job.main(["dynamic_images"])
        finally:
            flags.FLAGS.unparse_flags()


def test_dynamic_images_function_arp_only(video, tmp_path):
    from pipelines.dynamic_images import dynamic_images
    res = dynamic_images(video, str(tmp_path), window=8, stride=8, methods=["arp"],
                         frame_size=(W, H))
    assert res["methods"] == ["arp"] and len(res["windows"]) == 3       # starts 0, 8, 16
    assert not any("_rp" in os.path.basename(f) for f in res["files"])
    assert all(os.path.exists(f) for f in res["files"])
    with pytest.raises(ValueError, match="methods"):
        dynamic_images(video, str(tmp_path), methods=["mean"], frame_size=(W, H))


def test_rank_pooling_benchmark_small(tmp_path):
    from pipelines.bench_rank_pooling import format_table, run_rank_pooling_benchmark
    res = run_rank_pooling_benchmark(num_videos=1, num_frames=24, frame_size=(64, 48),
                                     arp_repeats=2, bench_dir=str(tmp_path))
    for key in ("arp_fps", "rp_fps", "arp_ranking_accuracy", "rp_ranking_accuracy"):
        assert np.isfinite(res[key]) and res[key] > 0, key
    assert 0 <= res["arp_ranking_accuracy"] <= 100 and 0 <= res["rp_ranking_accuracy"] <= 100
    assert res["arp_fps"] > res["rp_fps"]
    assert res["videos"][0]["frames"] == 24
    assert "ARP" in format_table(res) and "|---|" in format_table(res, markdown=True)
