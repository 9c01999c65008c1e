"""The long-video benchmark (pipelines/bench_long_video.py, benchmark --bench=long-video) at
tiny durations: throughput and peak memory of predict --untrimmed."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

W, H, FPS = 64, 48, 5


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from pipelines.bench_long_video import tiny_export
    return tiny_export(str(tmp_path_factory.getbasetemp() / "tiny_export"), (W, H))  # shared


def test_measure_and_table(export, tmp_path):
    from pipelines import bench_long_video as bench

    runs = []
    for seconds in (4, 12):
        video = bench.make_video(str(tmp_path), seconds, (W, H), FPS)
        res = bench.measure(export, video, batch_size=4)
        assert res["snippets"] == seconds and res["frames"] == seconds * FPS
        assert res["video_seconds"] == pytest.approx(seconds)
        assert res["throughput"] > 0 and res["wall_s"] > 0
        assert res["peak_rss_mb"] >= res["rss_before_mb"] > 0
        assert res["max_buffered_frames"] <= FPS + 1
        assert res["video_peak_rss_mb"] >= res["video_rss_start_mb"] > 0
        runs.append([{"duration_s": float(seconds), **res}])
    result = bench.summarize(runs, {**bench.DEFAULTS, "durations": (4, 12), "frame_size": (W, H),
                                    "fps": FPS})
    assert result["ratio"] == pytest.approx(runs[1][0]["peak_rss_mb"] / runs[0][0]["peak_rss_mb"])
    assert result["runs"][1]["throughputs"] == [runs[1][0]["throughput"]]
    table = bench.format_table(result)
    assert "12 s" in table and "peak RSS longest / shortest" in table
    assert bench.format_table(result, markdown=True).startswith("| video |")


def test_registered_in_the_benchmark_job():
    from pipelines import bench_long_video, benchmark

    assert benchmark.BENCHMARKS["long-video"] == (bench_long_video.run_from_flags,
                                                  bench_long_video.format_table)
    assert "long-video" in benchmark.FLAGS["bench"].parser.enum_values


@pytest.mark.slow
def test_benchmark_job_children(tmp_path, capsys):
    """The job end to end: each video in a fresh process; memory stays flat from 5 to 30 s."""
    from absl import flags
    from pipelines import benchmark

    fl = flags.FLAGS
    fl.unparse_flags()
    try:
        fl(["benchmark", "--bench=long-video", "--lv_durations=30,5", f"--lv_fps={FPS}",
            "--lv_repeats=1",
            f"--lv_frame_size={W}x{H}", f"--lv_bench_dir={tmp_path}",
            f"--json={tmp_path / 'lv.json'}"])
        benchmark.main(["benchmark"])
    finally:
        fl.unparse_flags()
    import json
    result = json.loads((tmp_path / "lv.json").read_text())
    assert [r["snippets"] for r in result["runs"]] == [5, 30]
    assert result["ratio"] <= 1.2 and result["met"]
    assert "target <= 1.2: met" in capsys.readouterr().out
