"""Benchmarks of tfvid, one absl job: `--bench=<name>` runs one of BENCHMARKS.

    python -m pipelines.benchmark --bench=input-pipeline --json=bench.json --output_md=bench.md
    tfvid-benchmark --bench=input-pipeline --num_videos=8 --timed_batches=10

input-pipeline: clips per second of tfvid's TSN-RGB training input (K=3, batch 32, 224 crops,
bninception normalisation) on videos of realistic length (150-300 frames at 340x256), for each
storage layout (TFRecord shards; raw-frame folders read by tf.data), measured in one run on the
same cores against
  (a) each layout's bound: the same reading and parsing, decoding only the sampled frames, no
      augmentation (and read / read+parse stages, to split the time),
  (b) a per-sample Python loader over the same frames as JPEG files (PyTorch toolkits' layout:
      cv2.imdecode, numpy multi-scale crop, cv2.resize, flip, normalise, 2 worker processes),
  (c) a per-sample Python loader that decodes the mp4 files with PyAV at the sampled positions.
The videos (tfvid.prep.synthetic.make_long_video) and both layouts (tfvid.prep.prepare) are
written once under --bench_dir and reused; every file is read once before timing, so all
variants read from the OS page cache. Variants run round-robin --repeats times; the best run
of each counts (other programs on the machine only slow runs down).
--json writes pipeline_clips_per_s (tfvid's fastest layout), bound_clips_per_s (its bound),
tfrecord_clips_per_s, python_frames_clips_per_s, python_pyav_clips_per_s and the details.

rank-pooling (pipelines/bench_rank_pooling.py): frames per second of approximate (ARP) and exact
(RP) rank pooling on the same real frames, and the pairwise ranking accuracy of both; --json
writes arp_fps, rp_fps, arp_ranking_accuracy and rp_ranking_accuracy (percent).

train-step (pipelines/bench_train_step.py): clips per second of one full training step (forward,
backward, SGD-momentum update) of tfvid's own loop (tfvid.train.loop.train) for TSN with
BN-Inception and ResNet-50 (K=3, 224) and StNet-ResNet50 (T=7, N=5, 224), against the same
network and step in PyTorch where torchvision has it (TSN ResNet-50); where tfvid's step time
goes (forward, backward, optimizer, loop overhead); --train_* flags. --json writes
{models: {name: {tfvid_clips_per_s, pytorch_clips_per_s, ratio, ...}}, settings}.
"""
from __future__ import annotations

import gc
import json
import os

import numpy as np
from absl import app, flags, logging

from pipelines import bench_rank_pooling, bench_temporal_order, bench_tflite, bench_train_step
from pipelines import bench_long_video
from pipelines.common import check_args, define_flag, run_job

FLAGS = flags.FLAGS
# --help lists the flags of the benchmarks defined in their own modules too
flags.adopt_module_key_flags(bench_rank_pooling)
flags.adopt_module_key_flags(bench_train_step)
flags.adopt_module_key_flags(bench_long_video)


define_flag("enum", "bench", "input-pipeline", "Benchmark to run: input-pipeline (TSN training "
            "input, every storage layout against its bound and two Python loaders) or "
            "rank-pooling (ARP vs exact RP: fps and pairwise ranking accuracy; --rp_* flags) or "
            "train-step (clips/s of a full training step, tfvid vs PyTorch; --train_* flags) or "
            "tflite (TFLite variants: size, latency, agreement) or temporal-order (TSN vs DIN, "
            "VideoMap and StNet on time-reversal pairs) or "
            "long-video (predict --untrimmed: video seconds per second and peak memory, 1 vs "
            "10 minutes; --lv_* flags).",
            enum_values=["input-pipeline", "rank-pooling", "train-step", "tflite",
                         "temporal-order", "long-video"])
define_flag("string", "json", None, "Optional path of a JSON file for the results.")
define_flag("string", "output_md", None, "Optional path of a markdown file with the result table.")
define_flag("string", "bench_dir", "benchmark_data", "Where benchmark videos and layouts are kept.")
define_flag("integer", "num_videos", 24, "Benchmark videos.")
define_flag("list", "video_frames", ["150", "300"], "MIN,MAX frames per video (evenly spread).")
define_flag("string", "video_size", "340x256", "Stored frame size WIDTHxHEIGHT.")
define_flag("integer", "record_shards", 8, "TFRecord shards the videos are prepared into.")
define_flag("integer", "bench_batch_size", 32, "Clips per batch.")
define_flag("integer", "bench_segments", 3, "TSN segments K (one RGB frame each).")
define_flag("integer", "bench_input_size", 224, "Crop side S.")
define_flag("string", "bench_backbone", "bninception", "Backbone whose normalisation is applied.")
define_flag("integer", "warmup_batches", 5, "Batches consumed before timing (PyAV loader: 1; "
        "Python loaders round counts up to whole rounds of --loader_workers).")
define_flag("integer", "timed_batches", 30, "Batches timed per run.")
define_flag("integer", "pyav_batches", 4, "Batches timed per run of the PyAV loader (slow).")
define_flag("integer", "repeats", 3, "Round-robin runs of every variant; the best one counts.")
define_flag("integer", "loader_workers", 2, "Worker processes of the Python loaders (and of "
        "data preparation).")
define_flag("integer", "bench_seed", 0, "Seed of the videos and of sampling.")
define_flag("list", "variants", [], "Variants to run (default all): tfrecord, tfrecord.bound, "
        "tfrecord.parse, tfrecord.read, frames, frames.stock, frames.bound, frames.read, "
        "python.frames, python.pyav.")


# ---------------------------------------------------------------------------------- data
def make_bench_data(root: str, *, num_videos: int = 24, frames=(150, 300),
                    frame_size=(340, 256), num_shards: int = 8, workers: int = 2,
                    seed: int = 0) -> dict:
    """Writes (or reuses) num_videos mp4 files of frames[0]..frames[1] frames (evenly spread) at
    frame_size (w, h) and prepares them with tfvid's prepare(layout='both').

    Returns {dir, videos [(mp4 path, num_frames)], shards [paths], list (path), frames (total),
    bytes {mp4, tfrecord, jpeg_files}}. A folder per setting, so settings never mix.
    """
    from tfvid.prep.indexes import VideoEntry
    from tfvid.prep.prepare import prepare
    from tfvid.prep.synthetic import make_long_video
    lo, hi = int(frames[0]), int(frames[1])
    if num_videos < 1 or lo < 1 or hi < lo:
        raise ValueError(f"need num_videos >= 1 and 1 <= min frames <= max frames, got "
                         f"{num_videos}, {frames}")
    w, h = frame_size
    folder = os.path.join(os.path.abspath(root), f"v{num_videos}_f{lo}-{hi}_{w}x{h}_s{seed}")
    os.makedirs(os.path.join(folder, "videos"), exist_ok=True)
    counts = np.linspace(lo, hi, num_videos).round().astype(int)
    entries, videos = [], []
    for i, n in enumerate(counts):
        path = os.path.join(folder, "videos", f"video{i:04d}.mp4")
        if not os.path.isfile(path):
            make_long_video(path, num_frames=int(n), frame_size=(w, h), seed=seed + i)
        entries.append(VideoEntry(f"video{i:04d}", path, 0, "bench", "bench"))
        videos.append((path, int(n)))
    summary = prepare(entries, ["bench"], output_dir=os.path.join(folder, "prepared"),
                      split="bench", num_shards=num_shards, frame_size=(w, h), layout="both",
                      workers=workers, progress=False)
    if summary["rejects"]:
        raise RuntimeError(f"prepare rejected {summary['rejects']} benchmark video(s); see "
                           f"{summary['files']['rejects']}")
    shards, listing = summary["files"]["shards"], summary["files"]["list"]
    frames_dir = os.path.join(folder, "prepared", "frames")
    return {"dir": folder, "videos": videos, "shards": shards, "list": listing,
            "frames": int(summary["frames"]),
            "bytes": {"mp4": sum(os.path.getsize(p) for p, _ in videos),
                      "tfrecord": sum(os.path.getsize(p) for p in shards),
                      "jpeg_files": _tree_bytes(frames_dir)}}


def _tree_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def warm_page_cache(data: dict) -> int:
    """Reads every byte of every benchmark file once, so that all variants read from memory
    (the OS page cache), not from disk. Returns the bytes read."""
    paths = [p for p, _ in data["videos"]] + list(data["shards"])
    frames_dir = os.path.join(data["dir"], "prepared", "frames")
    paths += [os.path.join(d, f) for d, _, fs in os.walk(frames_dir) for f in fs]
    total = 0
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
    return total




# ------------------------------------------------------------------------- input-pipeline
INPUT_VARIANTS = ("tfrecord", "tfrecord.bound", "tfrecord.parse", "tfrecord.read", "frames",
                  "frames.stock", "frames.bound", "frames.read", "python.frames", "python.pyav")
LABELS = {
    "tfrecord": "tfvid, TFRecord shards (build_dataset)",
    "tfrecord.bound": "  bound: read + parse + decode sampled",
    "tfrecord.parse": "  read + parse + gather",
    "tfrecord.read": "  read records",
    "frames": "tfvid, raw-frame folders (build_dataset)",
    "frames.stock": "  the same, stock TF ops (kernels=False)",
    "frames.bound": "  bound: read + decode sampled",
    "frames.read": "  read sampled files",
    "python.frames": "(b) Python loader, JPEG files (cv2)",
    "python.pyav": "(c) Python loader, mp4 (PyAV)",
}
# Stages of a tfvid layout: (name, variant reaching the end of that stage), in order.
TF_STAGES = {"tfrecord": (("read", "tfrecord.read"), ("parse", "tfrecord.parse"),
                          ("decode", "tfrecord.bound"), ("augment", "tfrecord")),
             "frames": (("read", "frames.read"), ("decode", "frames.bound"),
                        ("augment", "frames"))}
TARGETS = {"fastest layout / its bound": 0.8, "fastest layout / (b)": 1.5,
           "TFRecord / (c)": 5.0}


def run_input_pipeline(cfg: dict) -> dict:
    """Runs the input-pipeline benchmark with settings `cfg` (see _settings); returns the
    result dict written by --json."""
    from pipelines import bench_input
    variants = cfg["variants"] or list(INPUT_VARIANTS)
    data = make_bench_data(cfg["bench_dir"], num_videos=cfg["num_videos"],
                           frames=cfg["video_frames"], frame_size=cfg["video_size"],
                           num_shards=cfg["record_shards"], workers=cfg["loader_workers"],
                           seed=cfg["seed"])
    warm = warm_page_cache(data)
    logging.info("page cache warmed with %.1f MB", warm / 1e6)
    common = dict(batch_size=cfg["batch_size"], num_segments=cfg["num_segments"],
                  input_size=cfg["input_size"], backbone=cfg["backbone"], seed=cfg["seed"])
    runs: dict[str, list] = {v: [] for v in variants}
    for rep in range(cfg["repeats"]):
        for v in variants:
            pyav = v == "python.pyav"
            steps = dict(warmup=1 if pyav else cfg["warmup"],
                         batches=cfg["pyav_batches"] if pyav else cfg["batches"])
            if v.startswith("python."):
                res = bench_input.run_python_variant(v.split(".")[1], data, **steps, **common,
                                                     workers=cfg["loader_workers"])
            else:
                res = bench_input.run_tf_variant(v, data, **steps, **common)
            gc.collect()
            logging.info("run %d %-15s %8.1f clips/s", rep + 1, v, res["clips_per_s"])
            runs[v].append(res)
    return summarize(runs, data, cfg)


def summarize(runs: dict, data: dict, cfg: dict) -> dict:
    """Best run per variant -> rates, ratios, time shares, targets (the --json content)."""
    best = {v: max(r, key=lambda x: x["clips_per_s"]) for v, r in runs.items()}
    rate = {v: b["clips_per_s"] for v, b in best.items()}
    layouts = [lay for lay in TF_STAGES if lay in rate]
    fastest = max(layouts, key=rate.get) if layouts else None
    shares = {}
    for lay in layouts:        # wall seconds per clip on all cores, stage by stage
        if all(v in rate for _, v in TF_STAGES[lay]):
            cum = [1.0 / rate[v] for _, v in TF_STAGES[lay]]
            parts = [max(c - p, 0.0) for c, p in zip(cum, [0.0] + cum[:-1])]
            shares[lay] = {n: p / sum(parts) for (n, _), p in zip(TF_STAGES[lay], parts)}
    for v in ("python.frames", "python.pyav"):
        if v in best:
            total = sum(best[v]["stages"].values())
            shares[v] = {k: s / total for k, s in best[v]["stages"].items()}
    ratios = {"fastest layout / its bound": _ratio(rate, fastest, f"{fastest}.bound"),
              "fastest layout / (b)": _ratio(rate, fastest, "python.frames"),
              "TFRecord / (c)": _ratio(rate, "tfrecord", "python.pyav")}
    cpu = {v: min(1e3 * x["cpu_s"] / x["clips"] for x in r) for v, r in runs.items()}
    per_cpu = {v: 1e3 / ms for v, ms in cpu.items() if ms > 0}     # clips per CPU second
    cpu_ratios = {"fastest layout / its bound": _ratio(per_cpu, fastest, f"{fastest}.bound"),
                  "fastest layout / (b)": _ratio(per_cpu, fastest, "python.frames"),
                  "TFRecord / (c)": _ratio(per_cpu, "tfrecord", "python.pyav")}
    n_frames = [n for _, n in data["videos"]]
    return {
        "pipeline_clips_per_s": rate.get(fastest),
        "bound_clips_per_s": rate.get(f"{fastest}.bound"),
        "tfrecord_clips_per_s": rate.get("tfrecord"),
        "python_frames_clips_per_s": rate.get("python.frames"),
        "python_pyav_clips_per_s": rate.get("python.pyav"),
        "fastest_layout": fastest,
        "clips_per_s": rate,
        "shares": shares,
        "cpu_ms_per_clip": cpu,
        "python_stage_ms_per_clip": {v: {k: 1e3 * s for k, s in best[v]["stages"].items()}
                                     for v in best if "stages" in best[v]},
        "targets": {k: {"ratio": r, "target": TARGETS[k], "met": None if r is None else
                        r >= TARGETS[k]} for k, r in ratios.items()},
        # the same ratios from CPU cost per clip (least CPU of any run; loaders: main + workers),
        # which other programs sharing the cores disturb far less than wall-clock rates
        "cpu_targets": {k: {"ratio": r, "target": TARGETS[k], "met": None if r is None else
                            r >= TARGETS[k]} for k, r in cpu_ratios.items()},
        "runs": {v: [round(x["clips_per_s"], 2) for x in r] for v, r in runs.items()},
        "settings": {**cfg, "cores": len(os.sched_getaffinity(0)),
                     "fused_kernels": _kernels_report()["on"],
                     "kernels": _kernels_report()},
        "data": {"videos": len(n_frames), "frames": data["frames"],
                 "frames_per_video": [min(n_frames), max(n_frames)],
                 "mean_record_mb": data["bytes"]["tfrecord"] / len(n_frames) / 1e6,
                 "bytes": data["bytes"], "dir": data["dir"]},
    }


def _kernels_report() -> dict:
    """{on, path, status} of the fused input kernels in this process (bench_input)."""
    from pipelines.bench_input import kernels_report
    return kernels_report()


def _ratio(rate, a, b):
    return rate[a] / rate[b] if a in rate and b in rate else None


def format_table(result: dict, markdown: bool = False) -> str:
    """The result as a table (plain text or markdown) followed by the targets."""
    rate, shares = result["clips_per_s"], result["shares"]
    fast = result["fastest_layout"]
    b, c = rate.get("python.frames"), rate.get("python.pyav")
    cpu = result["cpu_ms_per_clip"]
    rows = [("variant", "clips/s", "/ bound", "/ (b)", "/ (c)", "CPU ms/clip", "time shares")]
    for v in INPUT_VARIANTS:
        if v not in rate:
            continue
        lay = v.split(".")[0]
        whole = "." not in v or v.endswith(".stock")          # a whole pipeline, not a stage
        bound = rate.get(f"{lay}.bound") if lay in TF_STAGES and whole else None
        share = shares.get(v, {})
        rows.append((LABELS[v] + (" *" if v == fast else ""), f"{rate[v]:.1f}",
                     f"{rate[v] / bound:.2f}" if bound else "",
                     f"{rate[v] / b:.2f}" if b and v != "python.frames" else "",
                     f"{rate[v] / c:.1f}" if c and v != "python.pyav" else "",
                     f"{cpu[v]:.2f}",
                     " ".join(f"{k} {100 * s:.0f}%" for k, s in share.items())))
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|---|" + "---:|" * 5 + "---|")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(x.ljust(w) if i in (0, 6) else x.rjust(w)
                           for i, (x, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    s = result["settings"]
    lines += ["", f"* fastest tfvid layout. K={s['num_segments']}, batch {s['batch_size']}, "
              f"{s['input_size']} crops, {result['data']['videos']} videos of "
              "{}-{} frames, {} cores; best of {} runs; {}.".format(
                  *result["data"]["frames_per_video"], s["cores"], s["repeats"],
                  s.get("kernels", {}).get("status") or "fused input kernels "
                  + ("on" if s.get("fused_kernels") else "off"))]
    for name, t in result["targets"].items():
        if t["ratio"] is not None:
            c = result["cpu_targets"][name]["ratio"]
            lines.append(f"target {name} >= {t['target']}: {t['ratio']:.2f} "
                         f"({'met' if t['met'] else 'NOT met'}); by CPU cost per clip: "
                         f"{c:.2f} ({'met' if c >= t['target'] else 'NOT met'})")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ job
# name -> (run: () -> result dict, table: (result, markdown) -> str)
BENCHMARKS = {
    "input-pipeline": (lambda: run_input_pipeline(_settings()), format_table),
    "rank-pooling": (bench_rank_pooling.run_from_flags, bench_rank_pooling.format_table),
    "train-step": (bench_train_step.run_from_flags, bench_train_step.format_table),
    "tflite": (bench_tflite.run_from_flags, bench_tflite.format_table),
    "temporal-order": (bench_temporal_order.run_from_flags, bench_temporal_order.format_table),
    "long-video": (bench_long_video.run_from_flags, bench_long_video.format_table),
}


def _settings() -> dict:
    try:
        lo, hi = (int(x) for x in FLAGS.video_frames)
        w, h = (int(x) for x in FLAGS.video_size.lower().split("x"))
    except ValueError:
        raise app.UsageError("--video_frames must be MIN,MAX and --video_size WIDTHxHEIGHT, got "
                             f"{FLAGS.video_frames} and {FLAGS.video_size!r}") from None
    cfg = {"bench_dir": FLAGS.bench_dir, "num_videos": FLAGS.num_videos,
           "video_frames": (lo, hi), "video_size": (w, h), "record_shards": FLAGS.record_shards,
           "batch_size": FLAGS.bench_batch_size, "num_segments": FLAGS.bench_segments,
           "input_size": FLAGS.bench_input_size, "backbone": FLAGS.bench_backbone,
           "warmup": FLAGS.warmup_batches, "batches": FLAGS.timed_batches,
           "pyav_batches": FLAGS.pyav_batches, "repeats": FLAGS.repeats,
           "loader_workers": FLAGS.loader_workers, "seed": FLAGS.bench_seed,
           "variants": list(FLAGS.variants)}
    for name in ("num_videos", "bench_batch_size", "bench_segments", "bench_input_size",
                 "timed_batches", "pyav_batches", "repeats", "loader_workers", "record_shards"):
        if FLAGS[name].value < 1:
            raise app.UsageError(f"--{name} must be >= 1, got {FLAGS[name].value}")
    if cfg["warmup"] < 0:
        raise app.UsageError(f"--warmup_batches must be >= 0, got {cfg['warmup']}")
    if not 1 <= lo <= hi:
        raise app.UsageError(f"--video_frames needs 1 <= MIN <= MAX, got {lo},{hi}")
    unknown = sorted(set(cfg["variants"]) - set(INPUT_VARIANTS))
    if unknown:
        raise app.UsageError(f"--variants: unknown {unknown}; known: {list(INPUT_VARIANTS)}")
    return cfg


def main(argv):
    check_args(argv)
    run_bench, table = BENCHMARKS[FLAGS.bench]
    result = {"bench": FLAGS.bench, **run_bench()}
    print(table(result), flush=True)
    if FLAGS.json:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json)), exist_ok=True)
        with open(FLAGS.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, default=_jsonable)
    if FLAGS.output_md:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_md)), exist_ok=True)
        with open(FLAGS.output_md, "w", encoding="utf-8") as f:
            f.write(table(result, markdown=True))


def _jsonable(x):
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def run():
    run_job(main)


if __name__ == "__main__":
    run()
