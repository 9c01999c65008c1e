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
import time

from absl import flags

from pipelines.common import (UsageError, check_args, define_flag, run_job, run_job_command,
                              usage_errors)
from tfvid.data.preview import preview_batches
from tfvid.eval.order import class_group_report, order_table
from tfvid.prep.synthetic import (ORDER_FREE_CLASSES, TIME_REVERSAL_PAIRS, check_num_classes,
                                  make_synthetic_dataset)

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


def _job(job: str, **flag_values) -> None:
    run_job_command(job, caller="quickstart", **flag_values)


def main(argv):
    check_args(argv)
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
    preview_batches(f"{records}/train1-*.tfrecord", f"{records}/test1-*.tfrecord",
                    os.path.join(work, "preview.png"), input_size=FLAGS.input_size,
                    class_names=class_names)

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
    print(class_group_report(os.path.join(eval_dir, "metrics.json"), class_names,
                             ORDER_FREE_CLASSES, TIME_REVERSAL_PAIRS))
    print("\nTSN averages its snippet scores, so it cannot see the order of time: expect the "
          "order-free classes far above chance and about 50% inside each time-reversal pair.")
    top = prediction["top_k"][0]
    print(f"\nprediction through the export for {prediction['video']}: {top['label']} "
          f"(p={top['probability']:.3f})")
    if din_eval:
        print("\n" + order_table({"TSN (frames, average consensus)": eval_dir,
                                  "DIN (two-stage, TSN features)": din_eval},
                                 ORDER_FREE_CLASSES, TIME_REVERSAL_PAIRS))
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
