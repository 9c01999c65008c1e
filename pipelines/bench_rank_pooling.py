"""The `rank-pooling` benchmark: approximate (ARP) against exact (RP) rank pooling, paper Table 2.

    python -m pipelines.bench_rank_pooling --rp_videos=3 --rp_frames=150 --json=rp.json

Dynamic Image Networks (the dynamic image networks paper, docs/dynamic_images.md, section 5.4, Table 2): RP 131 fps,
ARP 5920 fps (45x); pairwise ranking accuracy RP 95.5 +- 0.6, ARP 96.5 +- 0.5 (UCF101 split 1).
As in the paper, each method pools whole videos into one dynamic image ("RP takes a second to
learn a dynamic image from a 150 frame-length video"), and fps counts video frames pooled per
second of wall time. Both methods start from the same decoded uint8 frames in memory (decoding
is not timed):
  ARP  tfvid.prep.rank_pooling.approximate_rank_pool (numpy, frame-by-frame accumulation);
       best of `arp_repeats` runs per video.
  RP   tfvid.prep.rank_pooling.exact_rank_pool (time-varying means + sklearn LinearSVR, the
       reference's liblinear -s 11, C=1); one run per video, so it counts once per video.
CPU-time rates (arp_cpu_fps, rp_cpu_fps: frames per second of process CPU time, all threads)
are reported too: on a machine shared with other programs they vary less than wall time.
Ranking accuracy: the percentage of frame pairs i < j with <d, V_t> ordered correctly (V_t the
time-varying means), mean and standard deviation over the videos.
The videos are tfvid.prep.synthetic.make_long_video clips (three moving sprites over a panning
texture) of `num_frames` frames at `frame_size` (default 150 frames at TSN's 340x256), written
once and decoded with PyAV. Targets: ARP >= 100x RP's fps; ARP's accuracy within 2 points of RP's.
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from absl import app, flags

from pipelines.common import define_flag

FLAGS = flags.FLAGS
PAPER = {"arp_fps": 5920.0, "rp_fps": 131.0, "arp_ranking_accuracy": 96.5,
         "rp_ranking_accuracy": 95.5}
TARGETS = {"speedup": 100.0, "accuracy_gap": 2.0}



define_flag("integer", "rp_videos", 3, "Benchmark videos for the rank-pooling benchmark.")
define_flag("integer", "rp_frames", 150, "Frames per video (the paper's average is about 150).")
define_flag("string", "rp_frame_size", "340x256", "Frame size WIDTHxHEIGHT of the videos.")
define_flag("integer", "rp_arp_repeats", 5, "Timed ARP runs per video (the best counts).")
define_flag("string", "rp_bench_dir", None, "Where the videos are kept (default: a temporary dir).")


def make_videos(folder: str, num_videos: int, num_frames: int, frame_size, seed: int = 0):
    """Writes (or reuses) the benchmark videos; returns their paths."""
    from tfvid.prep.synthetic import make_long_video
    os.makedirs(folder, exist_ok=True)
    w, h = frame_size
    paths = []
    for k in range(num_videos):
        path = os.path.join(folder, f"rank_pool_{w}x{h}_{num_frames}f_s{seed + k}.mp4")
        if not os.path.exists(path):
            make_long_video(path, num_frames=num_frames, frame_size=(w, h), seed=seed + k)
        paths.append(path)
    return paths


def run_rank_pooling_benchmark(num_videos: int = 3, num_frames: int = 150,
                               frame_size=(340, 256), arp_repeats: int = 5,
                               bench_dir: str | None = None, seed: int = 0,
                               rp_options: dict | None = None) -> dict:
    """Measures ARP and RP on the same decoded frames (see the module docstring).

    Returns arp_fps, rp_fps (frames per second of wall time over all videos), speedup
    (arp_fps / rp_fps), arp_cpu_fps, rp_cpu_fps (per second of process CPU time),
    arp_ranking_accuracy, rp_ranking_accuracy (percent, mean over videos), their standard
    deviations, per-video details, the paper's numbers, the targets and the settings.
    """
    from tfvid.prep import rank_pooling as rp
    from tfvid.prep.video import read_video

    if num_videos < 1 or num_frames < 2 or arp_repeats < 1:
        raise ValueError("need num_videos >= 1, num_frames >= 2 and arp_repeats >= 1")
    rp_options = dict(rp_options or {})
    with tempfile.TemporaryDirectory(prefix="tfvid_rp_bench_") as tmp:
        folder = os.path.join(bench_dir, "rank_pooling") if bench_dir else tmp
        paths = make_videos(folder, num_videos, num_frames, frame_size, seed)
        per_video = []
        for path in paths:
            frames = read_video(path, frame_size=tuple(frame_size)).frames
            rp.approximate_rank_pool(frames)                       # warm up (allocations)
            arp_times = []
            for _ in range(arp_repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                d_arp = rp.approximate_rank_pool(frames)
                arp_times.append((time.perf_counter() - t0, time.process_time() - c0))
            t0, c0 = time.perf_counter(), time.process_time()
            d_rp = rp.exact_rank_pool(frames, **rp_options)
            rp_time, rp_cpu = time.perf_counter() - t0, time.process_time() - c0
            feat = {k: rp_options[k] for k in ("representation", "nonlinearity", "l2_normalize",
                                               "scale") if k in rp_options}
            per_video.append({
                "video": os.path.basename(path), "frames": int(frames.shape[0]),
                "arp_seconds": min(arp_times)[0], "rp_seconds": rp_time,
                "arp_cpu_seconds": min(arp_times)[1], "rp_cpu_seconds": rp_cpu,
                "arp_ranking_accuracy": rp.pairwise_ranking_accuracy(frames, d_arp),
                "rp_ranking_accuracy": rp.pairwise_ranking_accuracy(frames, d_rp, **feat)})
            del frames
    total = sum(v["frames"] for v in per_video)
    arp_fps = total / sum(v["arp_seconds"] for v in per_video)
    rp_fps = total / sum(v["rp_seconds"] for v in per_video)
    cpu_fps = {m: total / sum(v[f"{m}_cpu_seconds"] for v in per_video) for m in ("arp", "rp")}
    arp_acc = [v["arp_ranking_accuracy"] for v in per_video]
    rp_acc = [v["rp_ranking_accuracy"] for v in per_video]
    speedup = arp_fps / rp_fps
    gap = float(np.mean(rp_acc) - np.mean(arp_acc))
    return {
        "arp_fps": arp_fps, "rp_fps": rp_fps, "speedup": speedup,
        "arp_ranking_accuracy": float(np.mean(arp_acc)),
        "rp_ranking_accuracy": float(np.mean(rp_acc)),
        "arp_cpu_fps": cpu_fps["arp"], "rp_cpu_fps": cpu_fps["rp"],
        "arp_ranking_accuracy_std": float(np.std(arp_acc)),
        "rp_ranking_accuracy_std": float(np.std(rp_acc)),
        "videos": per_video,
        "paper": dict(PAPER, speedup=PAPER["arp_fps"] / PAPER["rp_fps"]),
        "targets": {"speedup": {"value": speedup, "target": TARGETS["speedup"],
                                "met": speedup >= TARGETS["speedup"]},
                    "accuracy_gap": {"value": gap, "target": TARGETS["accuracy_gap"],
                                     "met": gap <= TARGETS["accuracy_gap"]}},
        "settings": {"num_videos": num_videos, "num_frames": num_frames,
                     "frame_size": list(frame_size), "arp_repeats": arp_repeats, "seed": seed,
                     "rp_options": rp_options, "cores": len(os.sched_getaffinity(0))},
    }


def format_table(result: dict, markdown: bool = False) -> str:
    """The result as a small table (plain text or markdown) against the paper, then targets."""
    p = result["paper"]
    rows = [("method", "fps", "ranking acc. (%)", "paper fps", "paper acc. (%)"),
            ("RP", f"{result['rp_fps']:.1f}",
             f"{result['rp_ranking_accuracy']:.1f} +- {result['rp_ranking_accuracy_std']:.1f}",
             f"{p['rp_fps']:.0f}", f"{p['rp_ranking_accuracy']:.1f}"),
            ("ARP", f"{result['arp_fps']:.0f}",
             f"{result['arp_ranking_accuracy']:.1f} +- {result['arp_ranking_accuracy_std']:.1f}",
             f"{p['arp_fps']:.0f}", f"{p['arp_ranking_accuracy']:.1f}")]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|---|" + "---:|" * 4)
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                           for i, (x, w) in enumerate(zip(r, widths))) for r in rows]
    s = result["settings"]
    w, h = s["frame_size"]
    lines += ["", f"{s['num_videos']} videos of {s['num_frames']} frames at {w}x{h}, whole-video "
              f"pooling, {s['cores']} cores. ARP / RP speed: {result['speedup']:.0f}x "
              f"(paper {p['speedup']:.0f}x).",
              f"Per second of CPU time: ARP {result['arp_cpu_fps']:.0f} fps, RP "
              f"{result['rp_cpu_fps']:.1f} fps ({result['arp_cpu_fps'] / result['rp_cpu_fps']:.0f}x)."]
    t = result["targets"]
    lines.append(f"target ARP/RP fps >= {t['speedup']['target']:.0f}x: "
                 f"{t['speedup']['value']:.0f}x ({'met' if t['speedup']['met'] else 'NOT met'})")
    lines.append(f"target RP - ARP accuracy <= {t['accuracy_gap']['target']:.0f} points: "
                 f"{t['accuracy_gap']['value']:+.2f} "
                 f"({'met' if t['accuracy_gap']['met'] else 'NOT met'})")
    return "\n".join(lines) + "\n"


def run_from_flags() -> dict:
    """The benchmark with the --rp_* flags (pipelines/benchmark.py --bench=rank-pooling)."""
    try:
        w, h = (int(v) for v in FLAGS.rp_frame_size.lower().split("x"))
    except ValueError:
        raise app.UsageError(f"--rp_frame_size must be WIDTHxHEIGHT, got "
                             f"{FLAGS.rp_frame_size!r}") from None
    return run_rank_pooling_benchmark(num_videos=FLAGS.rp_videos, num_frames=FLAGS.rp_frames,
                                      frame_size=(w, h), arp_repeats=FLAGS.rp_arp_repeats,
                                      bench_dir=FLAGS.rp_bench_dir)
