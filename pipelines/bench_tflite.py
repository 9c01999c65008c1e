"""The `tflite` benchmark (pipelines/benchmark.py --bench=tflite): TFLite variants of a small
trained TSN against its SavedModel on this CPU.

    from pipelines import bench_tflite
    result = bench_tflite.run({"bench_dir": "benchmark_data/tflite"})
    print(bench_tflite.format_table(result))

Steps: the synthetic dataset (tfvid.prep.synthetic, 6 classes x 8 videos, 64x48 frames) is
prepared to TFRecords (split 1: train / test), a tiny TSN (backbone "tiny", input 32, 3
segments) is trained by tfvid.train.loop.train for a few hundred steps, exported with
tfvid.export.export_saved_model (float32 clip signature, sidecar with the TSN sampler at T = 3
and the backbone's normalisation) and converted by tfvid.export.tflite_report.convert (the
convert_tflite job's work) for
--quantize none / dynamic / float16 / int8 (int8 calibrated on training clips), each also with
a uint8 input. Per variant: file size, LiteRT latency per clip with 1 and 2 threads, the
SavedModel's latency per clip on the same CPU, the largest logit difference and top-1
agreement against the SavedModel, and top-1 accuracy on the test split vs the SavedModel's.

Targets: float32 and float16 give the SavedModel's top-1 on every test clip; dynamic and int8
within 1 point of the SavedModel's top-1 accuracy; LiteRT float32 (1 thread) no slower than
the SavedModel. The 1-minute load average is recorded (other processes share the cores).
"""
from __future__ import annotations

import os
import time

DEFAULTS = {
    "bench_dir": "benchmark_data/tflite",
    "num_classes": 6, "videos_per_class": 8, "frame_size": (64, 48), "num_frames": (24, 40),
    "input_size": 32, "num_segments": 3, "width": 0.5, "steps": 800, "batch_size": 8,
    "learning_rate": 0.01, "dropout": 0.5, "seed": 0,
    "quantize": ("none", "dynamic", "float16", "int8"), "uint8_input": (False, True),
    "representative_samples": 48, "latency_runs": 30, "threads": (1, 2),
}


def _entries(summary: dict, split: str):
    from tfvid.prep.indexes import VideoEntry

    test_groups = set(summary["test_groups"])
    out = []
    for v in summary["videos"]:
        if (v["group"] in test_groups) == (split == "test"):
            out.append(VideoEntry(os.path.splitext(os.path.basename(v["path"]))[0],
                                  os.path.join(summary["videos_dir"], v["path"]), v["label"],
                                  v["class_name"], split))
    return out


def make_data(cfg: dict) -> dict:
    """Synthetic videos prepared to TFRecords: {"train": [shards], "test": [shards],
    "class_names": [...]} (reused when already there)."""
    from tfvid.prep.prepare import prepare
    from tfvid.prep.synthetic import make_synthetic_dataset

    root = os.path.abspath(cfg["bench_dir"])
    summary = make_synthetic_dataset(os.path.join(root, "synthetic"),
                                     num_classes=cfg["num_classes"],
                                     videos_per_class=cfg["videos_per_class"],
                                     frame_size=tuple(cfg["frame_size"]),
                                     num_frames=tuple(cfg["num_frames"]), seed=cfg["seed"])
    out = {"class_names": summary["class_names"]}
    for split in ("train", "test"):
        done = prepare(_entries(summary, split), summary["class_names"],
                       output_dir=os.path.join(root, "records"), split=split, num_shards=2,
                       frame_size=tuple(cfg["frame_size"]), workers=2, progress=False)
        out[split] = list(done["files"]["shards"])
    return out


def train_and_export(cfg: dict, data: dict) -> tuple[str, float]:
    """Trains the tiny TSN and exports it; returns (export version dir, train seconds)."""
    import keras

    from tfvid import models
    from tfvid.data import augment, build_dataset
    from tfvid.data.sampling import TSNSampler
    from tfvid.export import export_saved_model
    from tfvid.train.loop import train

    k, size = int(cfg["num_segments"]), int(cfg["input_size"])
    root = os.path.abspath(cfg["bench_dir"])
    sampler = TSNSampler(num_segments=k, new_length=1, test_segments=k)

    def model_fn():
        keras.utils.set_random_seed(cfg["seed"])
        return models.build("tsn", cfg["num_classes"], backbone="tiny", width=cfg["width"],
                            input_size=size, num_segments=k, dropout=cfg["dropout"])

    def dataset_fn(ctx):
        return build_dataset(data["train"], sampler=sampler, mode="train",
                             batch_size=cfg["batch_size"], input_size=size, backbone="tiny",
                             seed=cfg["seed"], input_context=ctx)

    model_dir = os.path.join(root, f"run_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}")
    start = time.time()
    result = train(model_fn, dataset_fn, model_dir=model_dir, steps=int(cfg["steps"]),
                   global_batch_size=int(cfg["batch_size"]),
                   learning_rate=float(cfg["learning_rate"]), progress=False,
                   checkpoint_every=10 ** 9, log_every=100)
    seconds = time.time() - start
    model = result[0] if isinstance(result, tuple) else result.model
    sidecar = {"class_names": data["class_names"], "sampling": sampler.config(),
               "preprocessing": {"modality": "rgb", "backbone": "tiny", "input_size": size,
                                 "normalization": augment.normalization_config("tiny", "rgb"),
                                 "mode": "test"}}
    path = export_saved_model(model, os.path.join(root, "saved_models"), "tsn_tiny",
                              clip_shape=(k, size, size, 3), sidecar=sidecar, warmup=False)
    return path, seconds


def _variant_name(quantize: str, uint8: bool) -> str:
    return ("float32" if quantize == "none" else quantize) + ("-uint8" if uint8 else "")


def run(args: dict | None = None) -> dict:
    """Runs the benchmark; `args` overrides DEFAULTS. Returns {"rows": [...], "savedmodel":
    {...}, "targets": {...}, "load_average": ..., "settings": {...}}."""
    from tfvid.export import tflite, tflite_report

    cfg = {**DEFAULTS, **(args or {})}
    load_before = os.getloadavg()[0]
    data = make_data(cfg)
    export_dir, train_seconds = train_and_export(cfg, data)
    saved_ms = tflite.savedmodel_latency(export_dir, runs=cfg["latency_runs"])
    out_dir = os.path.join(os.path.dirname(export_dir), "tflite")
    os.makedirs(out_dir, exist_ok=True)
    rows, saved_acc = [], None
    for quantize in cfg["quantize"]:
        for uint8 in cfg["uint8_input"]:
            name = _variant_name(quantize, uint8)
            row = {"variant": name, "quantize": quantize, "uint8_input": uint8}
            try:
                report = tflite_report.convert(
                    export_dir, output=os.path.join(out_dir, name + ".tflite"),
                    quantize=quantize, uint8_input=uint8, parity_samples=2,
                    atol=1e-3,
                    representative_data=data["train"] if quantize == "int8" else None,
                    representative_samples=cfg["representative_samples"],
                    eval_data=data["test"], max_top1_drop=100.0,
                    latency_threads=cfg["threads"], latency_runs=cfg["latency_runs"])
            except Exception as e:   # a failed check is a result of the benchmark
                row["error"] = " ".join(str(e).split())[:300]
                rows.append(row)
                continue
            p = report["parity"]
            saved_acc = p.get("accuracy_savedmodel", saved_acc)
            row.update(size_bytes=report["size_bytes"], latency_ms=report["latency_ms"],
                       max_logit_diff=p["max_abs_diff"], top1_agreement=p["top1_agreement"],
                       clips=p["clips"], accuracy=p.get("accuracy_tflite"),
                       accuracy_savedmodel=p.get("accuracy_savedmodel"),
                       int8_ops=report.get("int8_ops"))
            rows.append(row)
    ok = [r for r in rows if "error" not in r]
    exact = [r for r in ok if r["quantize"] in tflite.EXACT_QUANTIZATIONS]
    approx = [r for r in ok if r["quantize"] not in tflite.EXACT_QUANTIZATIONS]
    f32 = [r for r in ok if r["variant"] == "float32"]
    targets = {
        "float32/float16 top-1 equal on every clip": bool(exact) and all(
            r["top1_agreement"] == 1.0 for r in exact) and not any(
            "error" in r and r["quantize"] in tflite.EXACT_QUANTIZATIONS for r in rows),
        "dynamic/int8 within 1 point of SavedModel accuracy": bool(approx) and all(
            100 * (r["accuracy_savedmodel"] - r["accuracy"]) <= 1.0 for r in approx),
        "LiteRT float32 (1 thread) no slower than SavedModel": bool(f32) and
            f32[0]["latency_ms"].get("1_threads_ms", float("inf")) <= saved_ms,
    }
    return {"rows": rows, "export_dir": export_dir, "train_seconds": train_seconds,
            "savedmodel": {"latency_ms": saved_ms, "accuracy": saved_acc},
            "targets": targets, "load_average": {"before": load_before,
                                                 "after": os.getloadavg()[0]},
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}}


def format_table(result: dict, markdown: bool = False) -> str:
    """The rows as a text (or markdown) table, the targets and the load average."""
    head = ["variant", "size KiB", "1 thr ms", "2 thr ms", "max |dlogit|", "top-1 agree",
            "accuracy"]
    lines = []
    saved = result["savedmodel"]
    body = []
    for r in result["rows"]:
        if "error" in r:
            body.append([r["variant"], "FAILED: " + r["error"][:80], "", "", "", "", ""])
            continue
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%"
        body.append([r["variant"], f"{r['size_bytes'] / 1024:.1f}",
                     f"{r['latency_ms'].get('1_threads_ms', float('nan')):.2f}",
                     f"{r['latency_ms'].get('2_threads_ms', float('nan')):.2f}",
                     f"{r['max_logit_diff']:.2e}",
                     f"{100 * r['top1_agreement']:.1f}% of {r['clips']}", acc])
    sacc = "-" if saved["accuracy"] is None else f"{100 * saved['accuracy']:.1f}%"
    body.append(["SavedModel (TF)", "", f"{saved['latency_ms']:.2f} (all cores)", "", "", "",
                 sacc])
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(row) + " |" for row in body]
    else:
        widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
        for row in [head] + body:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    lines.append("")
    for name, met in result["targets"].items():
        lines.append(f"target {name}: {'met' if met else 'NOT met'}")
    load = result["load_average"]
    lines.append(f"load average (1 min): {load['before']:.2f} before, {load['after']:.2f} after; "
                 f"training {result['train_seconds']:.0f} s")
    return "\n".join(lines) + "\n"


def run_from_flags() -> dict:
    """The benchmark with its defaults under --bench_dir/tflite (pipelines/benchmark.py)."""
    from pipelines.common import bench_subdir
    return run({"bench_dir": bench_subdir("tflite")})


if __name__ == "__main__":
    import json
    import sys

    res = run(json.loads(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(format_table(res))
    print(json.dumps(res, indent=1, default=str))
