"""predict --untrimmed (tfvid.eval.untrimmed): streamed decoding with bounded memory, one
snippet per second, M-TWI, the timeline JSON and PNG."""
import itertools
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

W, H, FPS, SECONDS = 64, 48, 5, 90


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(export dir, long video path, tmp): a tiny TSN export and a 90 s clip at 5 fps."""
    from pipelines.bench_long_video import make_video, tiny_export

    tmp = tmp_path_factory.mktemp("untrimmed")
    export = tiny_export(str(tmp_path_factory.getbasetemp() / "tiny_export"), (W, H))  # shared
    video = make_video(str(tmp), SECONDS, (W, H), FPS)
    return export, video, tmp


@pytest.fixture(scope="module")
def loaded(setup):
    from tfvid.eval import predict
    return predict.load(setup[0])


def test_windows_stream_with_bounded_buffer():
    """An endless stream: windows come out one by one, the buffer never holds more than one
    window of frames (+1), each frame lands in the window of its second."""
    from tfvid.eval.untrimmed import snippet_windows

    fps = 25
    stream = ((i / fps, i) for i in itertools.count())
    stats = {}
    windows = snippet_windows(stream, rate=1.0, stats=stats)
    got = list(itertools.islice(windows, 200))
    assert [k for k, _, _ in got] == list(range(200))
    assert all(frames == list(range(k * fps, (k + 1) * fps)) for k, _, frames in got)
    assert stats["max_buffered_frames"] <= fps + 1
    # 2 snippets per second over 1.5 s windows: overlapping, still bounded by the window
    stats = {}
    stream = ((i / fps, i) for i in range(10 * fps))
    got = list(snippet_windows(stream, rate=2.0, window=1.5, stats=stats))
    assert len(got) == 20 and got[3][1] == 1.5
    assert got[3][2] == list(range(38, 75))             # 1.5 <= i / 25 < 3.0
    assert got[-1][2] == list(range(238, 10 * fps))     # from 9.5 s, cut at the end
    assert stats["max_buffered_frames"] <= 1.5 * fps + 1
    with pytest.raises(ValueError, match="positive"):
        next(snippet_windows(iter([]), rate=0))


def test_timeline_one_entry_per_second_and_memory(setup, loaded, tmp_path):
    from tfvid.eval import untrimmed
    from tfvid.eval.protocol import mtwi_scores

    _, video, _ = setup
    serving, sidecar = loaded
    result = untrimmed.predict_untrimmed(serving, sidecar, video, batch_size=7)
    assert result["status"] == "ok" and result["num_frames"] == SECONDS * FPS
    assert result["num_snippets"] == SECONDS
    # decoded frames held at once: one snippet's window (1 s) and the frame that closes it
    assert result["max_buffered_frames"] <= FPS + 1
    np.testing.assert_allclose(result["probabilities"],
                               mtwi_scores(result["snippet_logits"], softmax=True))
    assert result["top_k"][0]["index"] == int(np.argmax(result["probabilities"]))
    files = untrimmed.write_timeline(result, str(tmp_path / "t.json"), str(tmp_path / "t.png"))
    with open(files["timeline_json"], encoding="utf-8") as f:
        saved = json.load(f)
    line = saved["timeline"]
    assert len(line) == SECONDS and [e["t"] for e in line] == list(range(SECONDS))
    for e in line[:5]:
        assert e["top_index"] == int(np.argmax(e["scores"]))
        assert e["top_class"] == sidecar["class_names"][e["top_index"]]
        assert sum(e["scores"]) == pytest.approx(1.0, abs=1e-4)
    assert saved["aggregation"] == "M-TWI" and saved["top_k"] == result["top_k"]
    with open(files["timeline_png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_snippet_scores_match_the_clip_of_each_second(setup, loaded):
    """Snippet k's score is the export's logits for the model's clip of second k's frames
    (decoded whole here with read_video)."""
    from tfvid.eval import predict, untrimmed
    from tfvid.prep.video import read_video

    _, video, tmp = setup
    serving, sidecar = loaded
    short = os.path.join(tmp, "short.mp4")
    frames = read_video(video, frame_size=None, max_frames=8 * FPS).frames
    from tfvid.prep.video import write_video
    write_video(short, frames, fps=FPS)
    result = untrimmed.predict_untrimmed(serving, sidecar, short, batch_size=3)
    decoded = read_video(short, frame_size=(W, H)).frames
    assert result["num_snippets"] == 8
    for k in (0, 3, 7):
        views = predict.make_views(decoded[k * FPS:(k + 1) * FPS], sidecar, 1)
        want = np.asarray(serving(views)["logits"])[0]
        np.testing.assert_allclose(result["snippet_logits"][k], want, atol=1e-4)
    # two snippets per second: twice the entries
    twice = untrimmed.predict_untrimmed(serving, sidecar, short, rate=2.0)
    assert twice["num_snippets"] == 16 and twice["window_s"] == 0.5


def test_untrimmed_job_bad_files_and_outputs(setup, tmp_path, capsys):
    from pipelines import predict as job

    export, video, tmp = setup
    data = open(video, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 3])
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n" * 50)
    out = str(tmp_path / "out") + "/"
    results = job.predict(export, [video, str(text), str(cut)], top_k=2, output=out,
                          untrimmed={"rate": 1.0, "window": None})
    assert [r["status"] for r in results] == ["ok", "error", "error"]
    assert "text.mp4" in results[1]["error"] and "cut.mp4" in results[2]["error"]
    assert "snippet_logits" not in results[0]
    names = sorted(os.listdir(out))
    stem = os.path.splitext(os.path.basename(video))[0]
    assert names == sorted(["predictions.csv", "predictions.json", f"{stem}.timeline.json",
                            f"{stem}.timeline.png"])
    with open(os.path.join(out, "predictions.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["untrimmed"] == {"rate": 1.0, "window": None}
    assert saved["results"][0]["num_snippets"] == SECONDS
    assert saved["results"][0]["timeline_json"] == os.path.join(out, f"{stem}.timeline.json")
    captured = capsys.readouterr()
    assert "cut.mp4" in captured.err and f"{SECONDS} snippets, M-TWI" in captured.out


def test_truncated_stream_keeps_the_readable_part(tmp_path, loaded):
    """An avi cut in the middle decodes up to the cut: status partial, the snippets before."""
    from tfvid.eval import untrimmed
    from tfvid.prep.synthetic import make_long_video

    serving, sidecar = loaded
    full = make_long_video(str(tmp_path / "full.avi"), num_frames=20 * FPS, frame_size=(W, H),
                           fps=FPS)
    data = open(full, "rb").read()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) // 2])
    result = untrimmed.predict_untrimmed(serving, sidecar, str(cut))
    assert result["status"] == "partial" and f"of {20 * FPS} frames" in result["reason"]
    assert 0 < result["num_snippets"] < 20
    assert result["num_snippets"] == int(np.ceil(result["num_frames"] / FPS))
