"""The `temporal_order` benchmark: TSN vs DIN vs VideoMap vs StNet on the same synthetic data,
accuracy on the order-free classes and inside the time-reversal pairs.

    from pipelines import bench_temporal_order
    result = bench_temporal_order.run({"bench_dir": "benchmark_data/temporal_order"})
    print(bench_temporal_order.format_table(result))

The synthetic dataset (tfvid.prep.synthetic: 10 classes = 4 order-free classes and 3
time-reversal pairs whose classes differ only in the direction of time, 32 videos per class,
96x72 frames, split 1: groups 2-4 train, group 1 test) goes through the jobs as a user would
run them (each job's main() with its command-line flags, in this process):
  1. prepare_data (TFRecords), 2. train a tiny TSN (RGB, K = 3, average consensus, full width,
  input 64) and evaluate it, 3. extract_features of every frame with that TSN's backbone,
  4. two-stage heads on those cached features (--backbone=none --feature=rgb): DIN (T = 8)
  and VideoMap (T = 16, attention), each trained and evaluated,
  5. StNet end to end on frames (tiny backbone, T = 3 super-images of N = 5 frames).
Per model: top-1, mean accuracy on the order-free classes, accuracy on the pair classes, and
within-pair accuracy (of the videos of a pair class, the share whose logit of the true class
beats its partner's: 50% is chance, what an order-blind model gets), plus its training time.

The first stage decides what the heads can do: they only see the TSN's per-frame vectors, so
those must carry the frame's content (where the sprite is, how large, turned, faded), not only
what the TSN's classifier needs (the digit, which tells the pair but not its member). A half-width
TSN at input 48 on 64x48 frames (24 videos per class) gave features that left DIN and VideoMap at
chance within the pairs (50.0%); the full-width TSN at input 64 on 96x72 frames, 32 videos per
class, same steps and schedule (lr / 10 at 75%), gives DIN 70.8% and VideoMap 72.9% within
pairs while the TSN itself stays at 50.0% (2026-11-25, 633 s at load average 10-11 from other
jobs on 2 cores; see the README).
"""
from __future__ import annotations

import json
import os
import time

DEFAULTS = {
    "bench_dir": "benchmark_data/temporal_order",
    "num_classes": 10, "videos_per_class": 32, "frame_size": (96, 72), "num_frames": (24, 40),
    "input_size": 64, "width": 1.0, "batch_size": 16, "seed": 0,
    "tsn_steps": 2000, "tsn_lr": 0.02,
    "din_steps": 1500, "din_lr": 0.003, "din_frames": 8,
    "videomap_steps": 1500, "videomap_lr": 0.01, "videomap_frames": 16,
    "stnet_steps": 2000, "stnet_lr": 0.01, "stnet_segments": 3, "stnet_frames": 5,
    "lr_drop_at": 0.75,      # every run divides its lr by 10 after this share of its steps
    "models": ("tsn", "din", "videomap", "stnet"),
}


def _job(name: str, **values):
    """pipelines.<name>.main with --k=v flags parsed as the command line would give them."""
    import importlib

    from absl import flags
    module = importlib.import_module(f"pipelines.{name}")
    fl = flags.FLAGS
    fl.unparse_flags()
    try:
        fl([name, "--noprogress"] + [f"--{k}={v}" for k, v in values.items()])
        return module.main([name])
    finally:
        fl.unparse_flags()


def order_metrics(scores_path: str) -> dict:
    """tfvid.eval.order.order_metrics for the synthetic dataset's order-free classes and
    time-reversal pairs."""
    from tfvid.prep.synthetic import ORDER_FREE_CLASSES, TIME_REVERSAL_PAIRS
    from tfvid.eval.order import order_metrics as metrics
    return metrics(scores_path, ORDER_FREE_CLASSES, TIME_REVERSAL_PAIRS)


def make_data(cfg: dict) -> dict:
    """The synthetic videos prepared to TFRecords (prepare_data job); reused when there."""
    from tfvid.prep.synthetic import make_synthetic_dataset
    root = os.path.abspath(cfg["bench_dir"])
    summary = make_synthetic_dataset(os.path.join(root, "synthetic"),
                                     num_classes=cfg["num_classes"],
                                     videos_per_class=cfg["videos_per_class"],
                                     frame_size=tuple(cfg["frame_size"]),
                                     num_frames=tuple(cfg["num_frames"]), seed=cfg["seed"])
    records = os.path.join(root, "records")
    w, h = cfg["frame_size"]
    _job("prepare_data", format="ucf101", videos_dir=summary["videos_dir"],
         index=summary["splits_dir"], split="train1,test1", output_dir=records, num_shards=2,
         frame_size=f"{w}x{h}", workers=2)
    return {"records": records, "class_names": summary["class_names"],
            "train": summary["num_train"], "test": summary["num_test"]}


def run(args: dict | None = None) -> dict:
    """Runs the benchmark; `args` overrides DEFAULTS. Returns {"rows": [{model, stage, top1,
    order_free, pairs, within_pair, train_seconds, ...}], "data": {...}, "settings": {...},
    "load_average": {...}, "seconds": total}."""
    cfg = {**DEFAULTS, **(args or {})}
    t_start = time.time()
    load_before = os.getloadavg()[0]
    root = os.path.abspath(cfg["bench_dir"])
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}"
    runs = os.path.join(root, f"runs_{stamp}")
    data = make_data(cfg)
    rec = data["records"]
    train_rec, test_rec = f"{rec}/train1-*.tfrecord", f"{rec}/test1-*.tfrecord"
    common = dict(batch_size=cfg["batch_size"], seed=cfg["seed"], log_every=50,
                  checkpoint_every=10 ** 6)
    frames = dict(backbone="tiny", width=cfg["width"], input_size=cfg["input_size"],
                  partial_bn=False)
    rows = []

    def train_eval(model, stage, eval_data, eval_flags=None, **train_flags):
        run_dir = os.path.join(runs, model)
        t0 = time.time()
        drop = int(train_flags["steps"] * cfg["lr_drop_at"])    # lr / 10 there
        _job("train", model=model, model_dir=run_dir, **common, **train_flags,
             **({"lr_steps": drop} if 0 < drop < int(train_flags["steps"]) else {}))
        seconds = time.time() - t0
        _job("evaluate", model_dir=run_dir, data=eval_data, batch_size=2,
             **(eval_flags or {}))
        row = {"model": model, "stage": stage, "train_seconds": round(seconds, 1),
               "steps": int(train_flags["steps"]), "run_dir": run_dir,
               **order_metrics(os.path.join(run_dir, "eval", "scores.npz"))}
        rows.append(row)
        return run_dir

    wanted = tuple(cfg["models"])
    tsn = train_eval("tsn", "frames, average consensus", test_rec,
                     {"num_segments": 25, "num_crops": 1}, train_data=train_rec,
                     num_segments=3, steps=cfg["tsn_steps"], lr=cfg["tsn_lr"], dropout=0.5,
                     **frames)
    if "din" in wanted or "videomap" in wanted:
        feats = os.path.join(runs, "features")
        t0 = time.time()
        _job("extract_features", data=rec, output_dir=feats, model_dir=tsn)
        extract_seconds = round(time.time() - t0, 1)
        heads = dict(backbone="none", feature="rgb", train_data=f"{feats}/train1-*.tfrecord")
        for model, t in (("din", cfg["din_frames"]), ("videomap", cfg["videomap_frames"])):
            if model in wanted:
                train_eval(model, "two-stage on TSN features", f"{feats}/test1-*.tfrecord",
                           num_segments=t, steps=cfg[f"{model}_steps"], lr=cfg[f"{model}_lr"],
                           **heads)
                rows[-1]["extract_seconds"] = extract_seconds
    if "stnet" in wanted:
        train_eval("stnet", "frames, temporal conv", test_rec,
                   {"num_segments": cfg["stnet_segments"] + 2}, train_data=train_rec,
                   num_segments=cfg["stnet_segments"],
                   frames_per_segment=cfg["stnet_frames"], steps=cfg["stnet_steps"],
                   lr=cfg["stnet_lr"], dropout=0.5, temporal_block="official",
                   **{k: v for k, v in frames.items() if k != "partial_bn"})
    return {"rows": rows, "data": {k: v for k, v in data.items() if k != "records"},
            "records": rec, "runs": runs,
            "load_average": {"before": load_before, "after": os.getloadavg()[0]},
            "seconds": round(time.time() - t_start, 1),
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def format_table(result: dict, markdown: bool = False) -> str:
    """The rows as a text (or markdown) table, with the data sizes and total time."""
    head = ["model", "input", "top-1", "order-free", "pair classes", "within pair",
            "train s"]
    body = [[r["model"], r["stage"], _pct(r["top1"]), _pct(r["order_free"]), _pct(r["pairs"]),
             _pct(r["within_pair"]), f"{r['train_seconds']:.0f}"] for r in result["rows"]]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
    else:
        widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths))
                 for row in [head] + body]
    d = result["data"]
    lines += ["", f"{len(d['class_names'])} classes, {d['train']} training / {d['test']} test "
              "videos; within pair: true class vs its time-reversed partner (chance 50%)",
              f"load average (1 min): {result['load_average']['before']:.2f} before, "
              f"{result['load_average']['after']:.2f} after; total {result['seconds']:.0f} s"]
    return "\n".join(lines) + "\n"


def run_from_flags() -> dict:
    """The benchmark with its defaults under --bench_dir/temporal_order (pipelines/benchmark.py)."""
    from pipelines.common import bench_subdir
    return run({"bench_dir": bench_subdir("temporal_order")})


if __name__ == "__main__":
    import sys

    res = run(json.loads(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(format_table(res))
    print(json.dumps(res, indent=1, default=str))
