"""Quickstart: the whole tfvid recipe on the built-in synthetic dataset, on a CPU, in minutes.

    python -m pipelines.quickstart                 # everything under ./quickstart_out
    tfvid-quickstart --workdir=/tmp/qs --train_steps=300

Steps (each printed as the command a user would run, then run as that command):
  1. write the synthetic UCF101-layout dataset (real mp4 files: digit sprites that move, grow,
     rotate or fade; four class pairs differ only in the direction of time),
  2. prepare_data: decode with PyAV, resize, JPEG-encode, write sharded TFRecords,
  3. preview a training batch and an evaluation batch (shapes, value ranges, preview.png),
  4. train a small TSN (RGB, tiny backbone) with the custom training loop,
  5. evaluate with the multi-view test protocol (25 snippets x --num_crops crops),
  6. export a SavedModel (TF Serving layout) under saved_models/,
  7. predict the class of one test mp4 through the export,
  8. second stage (--din_steps > 0): extract_features caches the trained TSN's per-frame
     features, a DenseImage network head (DIN, docs/din.md) trains on them
     (--backbone=none --feature=rgb) and is evaluated.
It ends with a report: accuracy per class, order-free classes vs time-reversal pairs (TSN's
average consensus is blind to the order of its snippets, so it can only guess inside a pair;
DIN's temporal convolutions over the ordered frame features can tell a pair apart), and where
every file went.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

from absl import flags

from pipelines.common import UsageError, check_args, define_flag, run_job, usage_errors

FLAGS = flags.FLAGS
define_flag("string", "workdir", "quickstart_out", "Where the videos, records and runs go.")
define_flag("string", "export_base", "saved_models", "Root of the exported SavedModels.")
define_flag("integer", "num_classes", 10, "Synthetic classes (pairs stay together: 2,3,5,6,8,9,10,12).")
define_flag("integer", "videos_per_class", 32, "Synthetic videos per class (4 groups; group 1 is test).")
define_flag("integer", "input_size", 112, "Network input side (frames are stored at 8/7 of it).")
define_flag("integer", "train_steps", 2000, "Training iterations.")
define_flag("integer", "batch_size", 16, "Training batch size (videos).")
define_flag("float", "lr", 0.02, "Learning rate (SGD momentum 0.9; divided by 10 at 75% of the steps).")
define_flag("integer", "num_crops", 3, "Evaluation crops per snippet (1, 3 or 10).")
define_flag("integer", "workers", 2, "Processes for data preparation.")
define_flag("integer", "seed", 0, "Seed of the synthetic data and of training.")
define_flag("integer", "din_steps", 800, "Training iterations of the second-stage DIN head on "
            "the TSN's cached features; 0 skips the second stage.")
define_flag("float", "din_lr", 0.003, "Learning rate of the DIN head.")


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def _python_name() -> str:
    """The interpreter as a user would type it: sys.executable's name (python, python3.11...)
    when it is a plain word, else 'python'."""
    name = os.path.basename(sys.executable or "")
    return name if re.fullmatch(r"python[\w.]*", name) else "python"


def job_command(job: str, **flag_values) -> str:
    """The shell command of a job, ready to paste: `python -m pipelines.<job> --k=v ...`."""
    args = ["-m", f"pipelines.{job}"] + [f"--{k}={v}" for k, v in flag_values.items()]
    return " ".join([_python_name()] + [shlex.quote(a) for a in args])


def _job(job: str, **flag_values) -> None:
    """Runs `python -m pipelines.<job> --k=v ...` in a subprocess, printing the command first."""
    print("$ " + job_command(job, **flag_values), flush=True)
    cmd = [sys.executable, "-m", f"pipelines.{job}"]
    cmd += [f"--{k}={v}" for k, v in flag_values.items()]
    r = subprocess.run(cmd)
    if r.returncode:
        raise SystemExit(f"quickstart: step {job} failed (exit status {r.returncode}); its "
                         f"output is above")


def preview_batches(records: str, out_png: str, input_size: int,
                    class_names: list[str] | None = None) -> None:
    """Prints the shapes and ranges of one training and one evaluation batch; saves a PNG grid
    whose snippets are titled with their class names (class_names[label])."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tfvid.data import build_dataset
    from tfvid.data.sampling import TSNSampler

    sampler = TSNSampler(num_segments=3)
    common = dict(sampler=sampler, modality="rgb", input_size=input_size, backbone="tiny")
    train = next(iter(build_dataset(f"{records}/train1-*.tfrecord", mode="train", batch_size=4,
                                    **common)))
    val = next(iter(build_dataset(f"{records}/test1-*.tfrecord", mode="val", batch_size=4,
                                  num_crops=3, **common)))

    def name_of(label: int) -> str:
        if class_names and 0 <= label < len(class_names):
            return class_names[label]
        return f"class {label}"

    for name, batch in (("training", train), ("evaluation", val)):
        clip = batch["clip"].numpy()
        labels = [int(v) for v in batch["label"].numpy()]
        print(f"{name} batch: clip {clip.shape} float32 in [{clip.min():.2f}, {clip.max():.2f}], "
              f"labels {labels} ({', '.join(name_of(v) for v in labels)}), ids "
              f"{[i.decode() for i in batch['id'].numpy()[:2]]}...")
    # Undo the 'tiny' (torch-style) normalisation for display.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    clips = train["clip"].numpy()
    fig, axes = plt.subplots(clips.shape[0], clips.shape[1], figsize=(2 * clips.shape[1],
                                                                      2 * clips.shape[0]))
    for b in range(clips.shape[0]):
        for k in range(clips.shape[1]):
            axes[b, k].imshow(np.clip(clips[b, k] * std + mean, 0, 1))
            axes[b, k].set_axis_off()
            axes[b, k].set_title(f"{name_of(int(train['label'][b]))}, snippet {k + 1}",
                                 fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    print(f"preview of the training batch (3 snippets per video, augmented): {out_png}")


def report(metrics_path: str, class_names: list[str], prediction: dict | None) -> str:
    """Per-class accuracy, order-free classes vs time-reversal pairs."""
    from tfvid.prep.synthetic import ORDER_FREE_CLASSES, TIME_REVERSAL_PAIRS

    with open(metrics_path, encoding="utf-8") as f:
        metrics = json.load(f)
    per_class = metrics["per_class_accuracy"]
    lines = [f"top-1 {metrics['top1']:.3f}  top-5 {metrics['top5']:.3f}  "
             f"mean class accuracy {metrics['mean_class_accuracy']:.3f}  "
             f"(chance {1 / len(class_names):.3f})", ""]
    free = [c for c in class_names if c in ORDER_FREE_CLASSES]
    paired = [c for p in TIME_REVERSAL_PAIRS for c in p if c in class_names]
    for title, names in (("order-free classes", free), ("time-reversal pairs", paired)):
        accs = [per_class[c] for c in names if per_class.get(c) is not None]
        lines.append(f"{title}: mean accuracy {sum(accs) / max(len(accs), 1):.3f}")
        lines += [f"  {c:<24s} {per_class[c]:.3f}" for c in names if per_class.get(c) is not None]
    lines += ["", "TSN averages its snippet scores, so it cannot see the order of time: expect the "
              "order-free classes far above chance and about 50% inside each time-reversal pair "
              "(order-sensitive models such as StNet or dynamic images can separate those)."]
    if prediction:
        lines += ["", f"prediction through the export for {prediction['video']}: "
                  f"{prediction['top_k'][0]['label']} (p={prediction['top_k'][0]['probability']:.3f})"]
    return "\n".join(lines)


def order_comparison(eval_dirs: dict) -> str:
    """Order-free vs time-reversal-pair accuracy of evaluated runs side by side: {title:
    evaluate output_dir (scores.npz)}; within pair = true class beats its time-reversed
    partner (chance 50%)."""
    from tfvid.prep.synthetic import ORDER_FREE_CLASSES, TIME_REVERSAL_PAIRS
    from tfvid.eval.order import order_metrics

    def pct(v):
        return "   -  " if v is None else f"{100 * v:5.1f}%"

    width = max(len(t) for t in eval_dirs)
    lines = [f"{'':<{width}}  top-1   order-free  pair classes  within pair"]
    for title, folder in eval_dirs.items():
        m = order_metrics(os.path.join(folder, "scores.npz"), ORDER_FREE_CLASSES,
                          TIME_REVERSAL_PAIRS)
        lines.append(f"{title:<{width}}  {pct(m['top1'])}  {pct(m['order_free'])}      "
                     f"{pct(m['pairs'])}        {pct(m['within_pair'])}")
    lines.append("within pair: of the videos of a time-reversal pair, the share whose own class "
                 "beats its time-reversed partner (50% = blind to the order of time)")
    return "\n".join(lines)


def main(argv):
    check_args(argv)
    from tfvid.prep.synthetic import check_num_classes
    with usage_errors():
        check_num_classes(FLAGS.num_classes, name="--num_classes")
    if FLAGS.videos_per_class < 4:
        raise UsageError(f"--videos_per_class={FLAGS.videos_per_class}: at least 4 (one clip per "
                         f"group; group 1 is the test set)")
    t0 = time.time()
    work = os.path.abspath(FLAGS.workdir)
    videos, records = os.path.join(work, "synthetic"), os.path.join(work, "records")
    run_dir = os.path.join(work, "runs", "tsn_rgb")
    os.makedirs(work, exist_ok=True)

    _step("1. synthetic dataset (real mp4 files, UCF101 layout)")
    from tfvid.prep.synthetic import make_synthetic_dataset
    summary = make_synthetic_dataset(videos, num_classes=FLAGS.num_classes,
                                     videos_per_class=FLAGS.videos_per_class, seed=FLAGS.seed,
                                     ext=".mp4")
    class_names = list(summary["class_names"])
    print(f"{summary['num_videos']} videos ({summary['num_train']} train, {summary['num_test']} "
          f"test) of {len(class_names)} classes in {summary['videos_dir']}")

    _step("2. prepare_data: videos -> sharded TFRecords")
    side = round(FLAGS.input_size * 256 / 224)
    width = 2 * round(side * 340 / 256 / 2)
    _job("prepare_data", format="ucf101", videos_dir=summary["videos_dir"],
         index=summary["splits_dir"], split="train1,test1", output_dir=records, num_shards=4,
         frame_size=f"{width}x{side}", workers=FLAGS.workers)

    _step("3. preview of a training batch and an evaluation batch")
    preview_batches(records, os.path.join(work, "preview.png"), FLAGS.input_size, class_names)

    _step("4. train TSN (RGB, tiny backbone, K=3) with the custom training loop")
    _job("train", model="tsn", modality="rgb", backbone="tiny", input_size=FLAGS.input_size,
         num_segments=3, train_data=f"{records}/train1-*.tfrecord", batch_size=FLAGS.batch_size,
         lr=FLAGS.lr, lr_schedule="step", lr_steps=int(FLAGS.train_steps * 0.75),
         steps=FLAGS.train_steps, dropout=0.5, partial_bn=False, model_dir=run_dir,
         seed=FLAGS.seed, log_every=50, checkpoint_every=200)

    _step(f"5. evaluate: 25 snippets x {FLAGS.num_crops} crops per test video")
    eval_dir = os.path.join(run_dir, "eval")
    _job("evaluate", model_dir=run_dir, data=f"{records}/test1-*.tfrecord", mode="test",
         num_segments=25, num_crops=FLAGS.num_crops, batch_size=2, view_batch=30,
         output_dir=eval_dir)

    _step("6. export a SavedModel (TF Serving layout)")
    name = "quickstart_tsn_rgb"
    _job("export", model_dir=run_dir, name=name, export_base=FLAGS.export_base, num_segments=25)

    _step("7. predict one test mp4 through the export")
    test_video = next(os.path.join(summary["videos_dir"], v["path"]) for v in summary["videos"]
                      if v["group"] in summary["test_groups"])
    pred_json = os.path.join(work, "prediction.json")
    _job("predict", export_dir=os.path.join(FLAGS.export_base, name), video=test_video,
         num_crops=1, top_k=3, json=pred_json)
    with open(pred_json, encoding="utf-8") as f:
        predictions = json.load(f)
    prediction = predictions["results"][0]

    din_eval = None
    if FLAGS.din_steps > 0:
        _step("8. second stage: TSN features -> DenseImage network (DIN) head")
        features = os.path.join(work, "features_rgb")
        _job("extract_features", data=records, output_dir=features, model_dir=run_dir)
        din_dir = os.path.join(work, "runs", "din_rgb")
        _job("train", model="din", backbone="none", feature="rgb", num_segments=8,
             train_data=f"{features}/train1-*.tfrecord", batch_size=FLAGS.batch_size,
             lr=FLAGS.din_lr, steps=FLAGS.din_steps, model_dir=din_dir, seed=FLAGS.seed,
             log_every=100, checkpoint_every=500)
        din_eval = os.path.join(din_dir, "eval")
        _job("evaluate", model_dir=din_dir, data=f"{features}/test1-*.tfrecord", batch_size=4,
             output_dir=din_eval)

    _step("report")
    print(report(os.path.join(eval_dir, "metrics.json"), class_names, prediction))
    if din_eval:
        print("\n" + order_comparison({"TSN (frames, average consensus)": eval_dir,
                                       "DIN (two-stage, TSN features)": din_eval}))
    print(f"\nfiles: videos {videos}\n       records {records}\n       run {run_dir}\n"
          f"       evaluation {eval_dir} (metrics.json, confusion.png, scores.npz)\n"
          f"       export {os.path.abspath(os.path.join(FLAGS.export_base, name))}\n"
          f"       preview {os.path.join(work, 'preview.png')}" +
          (f"\n       DIN evaluation {din_eval}" if din_eval else ""))
    print(f"quickstart finished in {time.time() - t0:.0f} s")


def run():
    """Console-script entry point (tfvid-quickstart)."""
    run_job(main)


if __name__ == "__main__":
    run()
