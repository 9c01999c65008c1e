"""Evaluate a trained model on TFRecords with the multi-view test protocol.

    python -m pipelines.evaluate --model_dir=runs/tsn_rgb --data=data/ucf101/test-*.tfrecord
    tfvid-evaluate --model_dir=runs/tsn_rgb --data=test.list --num_crops=1 --view_batch=4

Rebuilds the model from model_dir/run_config.json (written by the train job), restores the
latest checkpoint (or model_dir/final.weights.h5), runs TSN's protocol (25 snippets x 10 crops by
default; REFERENCE.md section 2) and writes to --output_dir (default model_dir/eval):
metrics.json, scores.npz (input of the fuse job), confusion.png, confusion.csv, per_class.csv.
"""
from __future__ import annotations

import os

from absl import app, flags, logging

from pipelines.common import check_args, define_flag, flag_value, resolve_files

FLAGS = flags.FLAGS

define_flag("string", "model_dir", None, "Training directory with run_config.json and checkpoints.")
define_flag("string", "data", None, "TFRecord files: comma-separated globs, directories or .list "
            "files.")
define_flag("enum", "mode", "test", "test: --num_segments snippets (25); val: the training "
            "sampling.", enum_values=["test", "val"])
define_flag("integer", "num_segments", None, "Snippets per video (default 25 in test mode, the "
            "training value in val mode).")
define_flag("enum", "num_crops", "10", "Views per snippet: 1 centre, 3, or 10 (corners + centre, "
            "and flips).", enum_values=["1", "3", "10"])
define_flag("integer", "batch_size", 1, "Videos per batch.")
define_flag("integer", "view_batch", 10, "At most this many clips (videos x views) per forward "
            "pass.")
define_flag("string", "output_dir", None, "Where results go (default model_dir/eval).")
define_flag("string", "checkpoint", None, "A checkpoint prefix or .weights.h5 file (default: "
            "latest).")
define_flag("string", "classes", None, "Class names file (one per line); default run_config "
            "'class_names', model_dir/classes.txt or classes.txt beside the data.")


def evaluate_model_dir(model_dir: str, data: str, *, mode: str = "test",
                       num_segments: int | None = None, num_crops: int = 10,
                       batch_size: int = 1, view_batch: int = 10,
                       output_dir: str | None = None, checkpoint: str | None = None,
                       classes_file: str | None = None, progress: bool = True) -> dict:
    """The whole job as a function; returns the summary written to metrics.json."""
    from tfvid.data import build_dataset
    from tfvid.eval import metrics, plots, protocol
    from tfvid.train import run_dir

    cfg = run_dir.read_run_config(model_dir)
    files = resolve_files(data, "data")
    # A variable time axis lets a TSN trained on 3 segments run 25 test snippets; the
    # 'weighted' consensus learns one weight per segment and keeps its K.
    weighted = cfg.get("consensus") == "weighted"
    model = run_dir.build_model(cfg, num_segments=run_dir.TRAINED if weighted else None)
    loaded = run_dir.restore(model, model_dir, checkpoint)
    logging.info("restored %s", loaded)
    sampler = run_dir.sampler_from_config(cfg, mode, num_segments)
    dataset = build_dataset(files, sampler=sampler, mode=mode,
                            modality=cfg.get("modality", "rgb"), batch_size=batch_size,
                            input_size=cfg.get("input_size", 224),
                            backbone=cfg.get("backbone", "resnet50"), num_crops=num_crops,
                            repeat=False)
    names = run_dir.class_names(cfg, model_dir, data_files=files, classes_file=classes_file)
    scores = protocol.evaluate(model, dataset, view_batch=view_batch, progress=progress,
                               class_names=names)
    output_dir = output_dir or os.path.join(model_dir, "eval")
    protocol_info = {"model_dir": model_dir, "checkpoint": loaded, "data": files, "mode": mode,
                     "sampler": sampler.config(), "num_crops": num_crops}
    summary = plots.write_report(scores, output_dir, extra={"protocol": protocol_info},
                                 title=f"{cfg['model']} {cfg.get('modality', '')} ({mode})")
    print(metrics.format_summary(summary))
    print(f"results written to {output_dir}")
    return summary


def main(argv):
    check_args(argv, "model_dir", "data")
    # flag_value: this job's defaults even when another job defined a shared flag first.
    evaluate_model_dir(FLAGS.model_dir, FLAGS.data, mode=flag_value("mode", "test"),
                       num_segments=flag_value("num_segments", None),
                       num_crops=int(flag_value("num_crops", 10)),
                       batch_size=flag_value("batch_size", 1),
                       view_batch=flag_value("view_batch", 10),
                       output_dir=flag_value("output_dir", None),
                       checkpoint=flag_value("checkpoint", None),
                       classes_file=flag_value("classes", None))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
