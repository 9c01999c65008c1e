"""The `long-video` benchmark: throughput and peak memory of predict --untrimmed
(tfvid.eval.untrimmed) on a 1-minute and a 10-minute video.

    python -m pipelines.benchmark --bench=long-video --json=long_video.json
    from pipelines import bench_long_video
    print(bench_long_video.format_table(bench_long_video.run({"durations": (60, 600)})))

The videos are tfvid.prep.synthetic.make_long_video clips (three moving sprites over a panning
texture) at small frames and a low rate (default 96x72 at 10 fps), and the model a tiny TSN
(RGB, K = 3 segments, 32x32 input, random weights) exported with tfvid.export into the
benchmark's own folder; both are written once and reused. Each video is scored in a fresh
child process (1 snippet per second, batch 16): throughput = video seconds per wall second of
predict_untrimmed (the export is loaded and warmed up before the clock starts), peak memory =
the child's RSS high-water (resource.getrusage ru_maxrss), also measured just before the video
so that the growth the video causes shows apart from TensorFlow's own footprint. Streamed
decoding keeps memory flat: target 10-minute peak <= 1.2 x the 1-minute peak.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import flags

from pipelines.common import define_flag

FLAGS = flags.FLAGS
TARGET_RATIO = 1.2
DEFAULTS = {"bench_dir": "benchmark_data/long_video", "durations": (60, 600),
            "frame_size": (96, 72), "fps": 10.0, "batch_size": 16, "rate": 1.0, "seed": 0,
            "repeats": 2}
CLASSES = ("brush_hair", "cartwheel", "catch", "chew", "clap")

define_flag("list", "lv_durations", ["60", "600"], "Video lengths in seconds (long-video).")
define_flag("string", "lv_frame_size", "96x72", "Frame size WIDTHxHEIGHT of the long videos.")
define_flag("float", "lv_fps", 10.0, "Frame rate of the long videos.")
define_flag("integer", "lv_repeats", 2, "Measurements of each video (fresh processes, "
            "round-robin): the least peak RSS and the best throughput count.")
define_flag("string", "lv_bench_dir", DEFAULTS["bench_dir"], "Where the long videos and the "
            "tiny export are kept.")


def tiny_export(folder: str, frame_size=(96, 72), *, num_segments: int = 3,
                input_size: int = 32, seed: int = 0) -> str:
    """A tiny TSN (random weights) exported under folder/saved_models/tiny_tsn_<W>x<H> with
    the sidecar predict needs (sampling, decoding at frame_size, preprocessing); reused when
    there. Returns the export's version dir."""
    base = os.path.join(os.path.abspath(folder), "saved_models")
    name = f"tiny_tsn_{frame_size[0]}x{frame_size[1]}"
    done = os.path.join(base, name, "1")
    if os.path.isdir(done):
        return done
    import keras
    import numpy as np

    from tfvid import models
    from tfvid.data import augment
    from tfvid.export import export_saved_model
    keras.utils.set_random_seed(seed)
    model = models.build("tsn", len(CLASSES), backbone="tiny", input_size=input_size,
                         num_segments=num_segments)
    rng = np.random.default_rng(seed)
    fc = model.get_layer("fc")
    fc.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in fc.get_weights()])
    sidecar = {"class_names": list(CLASSES),
               "sampling": {"name": "tsn", "num_segments": num_segments, "new_length": 1,
                            "test_segments": num_segments},
               "decoding": {"frame_size": list(frame_size), "short_side": None, "fps": None},
               "preprocessing": {"modality": "rgb", "backbone": "tiny", "input_size": input_size,
                                 "mode": "test",
                                 "normalization": augment.normalization_config("tiny", "rgb")}}
    return export_saved_model(model, base, name, version=1, warmup=False,
                              clip_shape=(num_segments, input_size, input_size, 3),
                              sidecar=sidecar)


def make_video(folder: str, seconds: float, frame_size=(96, 72), fps: float = 10.0,
               seed: int = 0) -> str:
    """A synthetic video of `seconds` (written once)."""
    from tfvid.prep.synthetic import make_long_video
    w, h = frame_size
    path = os.path.join(os.path.abspath(folder), f"long_{seconds:g}s_{w}x{h}_{fps:g}fps.mp4")
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        make_long_video(path, num_frames=int(round(seconds * fps)), frame_size=(w, h),
                        seed=seed, fps=fps)
    return path


def _rss_mb() -> float:
    """The current resident set size of this process in MB (/proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(export_dir: str, video: str, *, rate: float = 1.0, batch_size: int = 16) -> dict:
    """In this process: load + warm the export, then time predict_untrimmed on `video`.
    {video_seconds, wall_s, throughput, snippets, frames, rss_before_mb and peak_rss_mb (the
    RSS high-water, ru_maxrss, before the video and at the end), video_rss_start_mb and
    video_peak_rss_mb (the current RSS when the video starts and its maximum while it runs,
    sampled every 10 ms), max_buffered_frames}. Run it in a fresh process (measure_in_child)."""
    import resource
    import threading
    import time

    import numpy as np

    from tfvid.eval import predict, untrimmed
    serving, sidecar = predict.load(export_dir)
    shape = [d or 1 for d in sidecar["signature"]["inputs"]["clip"]["shape"]]
    serving(np.zeros([batch_size] + shape[1:], np.float32))          # warm-up, full batch
    serving(np.zeros([1] + shape[1:], np.float32))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    samples = [_rss_mb()]
    done = threading.Event()

    def sample():
        while not done.wait(0.01):
            samples.append(_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = untrimmed.predict_untrimmed(serving, sidecar, video, rate=rate,
                                         batch_size=batch_size)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    samples.append(_rss_mb())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    seconds = result["duration_s"] + 1.0 / _rate_of(video)      # last frame time + 1 frame
    return {"video": video, "video_seconds": seconds, "wall_s": wall,
            "throughput": seconds / wall, "snippets": result["num_snippets"],
            "frames": result["num_frames"], "rss_before_mb": before, "peak_rss_mb": peak,
            "video_rss_start_mb": samples[0], "video_peak_rss_mb": max(samples),
            "max_buffered_frames": result["max_buffered_frames"]}


def _rate_of(video: str) -> float:
    import av
    with av.open(video) as c:
        return float(c.streams.video[0].average_rate or 25)


def measure_in_child(export_dir: str, video: str, **kwargs) -> dict:
    """`measure` in a fresh Python process (its own RSS high-water); its JSON result."""
    code = ("import json, sys; from pipelines.bench_long_video import measure; "
            f"print('RESULT ' + json.dumps(measure({export_dir!r}, {video!r}, **{kwargs!r})))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=root)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"long-video measurement of {video} failed (exit {proc.returncode}):"
                           f"\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run(cfg: dict | None = None) -> dict:
    """The benchmark (DEFAULTS overridden by cfg) -> summarize(): each duration measured
    `repeats` times round-robin in fresh processes."""
    cfg = {**DEFAULTS, **(cfg or {})}
    cfg["durations"] = sorted(float(d) for d in cfg["durations"])
    folder = cfg["bench_dir"]
    export = tiny_export(folder, tuple(cfg["frame_size"]))
    videos = [make_video(folder, seconds, tuple(cfg["frame_size"]), cfg["fps"], cfg["seed"])
              for seconds in cfg["durations"]]
    runs: list[list[dict]] = [[] for _ in videos]
    for _ in range(int(cfg["repeats"])):
        for i, video in enumerate(videos):
            res = measure_in_child(export, video, rate=cfg["rate"], batch_size=cfg["batch_size"])
            runs[i].append({"duration_s": cfg["durations"][i], **res})
    return summarize(runs, {**cfg, "export": export})


def summarize(runs: list[list[dict]], cfg: dict) -> dict:
    """{runs: per duration (shortest first) its run of least peak RSS, with "throughput" the
    best of its repeats and "throughputs" all; ratio: peak RSS (high-water) of the longest /
    of the shortest; video_ratio: the same for the RSS peak while the video runs; growth_mb:
    that peak minus the RSS at the video's start; target, met, settings}."""
    best = []
    for repeats in runs:
        pick = dict(min(repeats, key=lambda r: r["peak_rss_mb"]))
        pick["throughputs"] = [r["throughput"] for r in repeats]
        pick["throughput"] = max(pick["throughputs"])
        best.append(pick)
    short, long = best[0], best[-1]
    ratio = long["peak_rss_mb"] / short["peak_rss_mb"]
    return {"runs": best, "ratio": ratio,
            "video_ratio": long["video_peak_rss_mb"] / short["video_peak_rss_mb"],
            "growth_mb": {"short": short["video_peak_rss_mb"] - short["video_rss_start_mb"],
                          "long": long["video_peak_rss_mb"] - long["video_rss_start_mb"]},
            "target": TARGET_RATIO, "met": ratio <= TARGET_RATIO,
            "settings": {**cfg, "durations": list(cfg["durations"]),
                         "cores": len(os.sched_getaffinity(0))}}


def run_from_flags() -> dict:
    """The benchmark with the --lv_* flags (pipelines/benchmark.py --bench=long-video)."""
    from pipelines.common import UsageError
    try:
        w, h = (int(v) for v in FLAGS.lv_frame_size.lower().split("x"))
        durations = [float(x) for x in FLAGS.lv_durations]
    except ValueError:
        raise UsageError(f"--lv_frame_size must be WIDTHxHEIGHT and --lv_durations seconds, got "
                         f"{FLAGS.lv_frame_size!r}, {FLAGS.lv_durations}") from None
    if not durations or min(durations) <= 0 or FLAGS.lv_fps <= 0 or FLAGS.lv_repeats < 1:
        raise UsageError("--lv_durations, --lv_fps and --lv_repeats must be positive")
    return run({"bench_dir": FLAGS.lv_bench_dir, "durations": durations, "frame_size": (w, h),
                "fps": FLAGS.lv_fps, "repeats": FLAGS.lv_repeats})


def format_table(result: dict, markdown: bool = False) -> str:
    rows = [("video", "frames", "snippets", "wall s", "video s / s", "peak RSS MB",
             "RSS at video start MB", "RSS peak in video MB", "frames held")]
    for r in result["runs"]:
        rows.append((f"{r['duration_s']:g} s", str(r["frames"]), str(r["snippets"]),
                     f"{r['wall_s']:.1f}", f"{r['throughput']:.1f}", f"{r['peak_rss_mb']:.0f}",
                     f"{r['video_rss_start_mb']:.0f}", f"{r['video_peak_rss_mb']:.0f}",
                     str(r["max_buffered_frames"])))
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|---|" + "---:|" * (len(rows[0]) - 1))
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(x.rjust(w) for x, w in zip(r, widths)) for r in rows]
    s = result["settings"]
    g = result["growth_mb"]
    lines += ["", f"{s['frame_size'][0]}x{s['frame_size'][1]} at {s['fps']:g} fps, tiny TSN "
              f"export, {s['rate']:g} snippet/s, batch {s['batch_size']}, {s['cores']} cores, "
              f"best of {s['repeats']} fresh processes.",
              f"peak RSS longest / shortest: {result['ratio']:.3f} (target <= "
              f"{result['target']}: {'met' if result['met'] else 'NOT met'}); RSS peak while "
              f"the video runs: {result['video_ratio']:.3f}; its growth from the video's start: "
              f"{g['short']:.1f} MB vs {g['long']:.1f} MB."]
    return "\n".join(lines) + "\n"
