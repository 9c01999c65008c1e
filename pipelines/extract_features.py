"""Per-frame features of a frozen network over prepared data (DenseImage network / VideoMap).

    python -m pipelines.extract_features --data='data/ucf101/train1-*.tfrecord' \\
        --output_dir=data/ucf101_feat_rgb --model_dir=runs/tsn_rgb
    tfvid-extract-features --data=data/ucf101_flow --output_dir=data/ucf101_feat_flow \\
        --model_dir=runs/tsn_flow --num_frames=25 --crops=10
    tfvid-extract-features --data=data/ucf101 --output_dir=data/ucf101_r50 \\
        --backbone=resnet50 --weights=resnet50.weights.h5 --fps=5

The network is a TSN run's backbone (--model_dir: rebuilt, latest or --checkpoint restored;
modality, snippet length L and input size follow the run: a flow run sees the L=5 flow frames
centred on each position) or an ImageNet backbone (--backbone + --weights). Its global-pool
output (1024-d BN-Inception, 2048-d ResNet-50) is written for every position: --frames=all
(default), --fps=R or --num_frames=N; centre crop, or the mean over --crops=3|10 views.

One output shard per input shard (same name) in --output_dir, one SequenceExample per video:
FEATURE/<name>/floats (one D-float row per position), FEATURE/<name>/frame_index and
/timestamp, and in the context FEATURE/<name>/dimension, model, source, checkpoint, backbone,
modality, new_length, input_size, density, crops, rate; id and labels kept. Frames and flow
are dropped unless --keep_frames. A rerun skips finished shards (other options are refused);
bad records go to extract_features-rejects.tsv, counts to extract_features-summary.json
(see docs/records.md and tfvid.prep.extract_features).
"""
from __future__ import annotations

import json

from absl import flags

from pipelines.common import (UsageError, check_args, define_flag, resolve_files, run_job,
                              usage_errors)

FLAGS = flags.FLAGS

define_flag("string", "data", None, "Prepared TFRecord shards: comma-separated globs or "
            "directories (flow runs need shards with flow).")
define_flag("string", "output_dir", None, "Where the feature shards go (not the input folder).")
define_flag("string", "model_dir", None, "A TSN training run (run_config.json + checkpoints) "
            "whose backbone computes the features.")
define_flag("string", "checkpoint", None, "A checkpoint prefix or .weights.h5 file of "
            "--model_dir (default: the latest).")
define_flag("string", "backbone", None, "Instead of --model_dir: a backbone of "
            "tfvid.models.backbones (e.g. resnet50), with --weights.")
define_flag("string", "weights", None, "With --backbone: 'imagenet' or a .weights.h5 file.")
define_flag("string", "modality", "rgb", "With --backbone: rgb, flow or rgbdiff (conv1 adapted "
            "by TSN's cross-modality rule).")
define_flag("integer", "new_length", None, "With --backbone: frames per position L (default "
            "1 rgb, 5 flow, 6 rgbdiff).")
define_flag("integer", "input_size", None, "With --backbone: network input side (default 224).")
define_flag("float", "width", 1.0, "With --backbone: width multiplier.")
define_flag("string", "feature_name", None, "Name of the features in the records "
            "(FEATURE/<name>/floats); default: the modality (rgb, flow, rgbdiff).")
define_flag("string", "frames", "all", "'all': features of every stored frame (default; "
            "--fps or --num_frames choose fewer positions).")
define_flag("float", "fps", 0.0, "Positions at this rate (frames per second of video, from "
            "the stored frame rate); 0: not used.")
define_flag("integer", "num_frames", 0, "N positions spread uniformly over each video; 0: not "
            "used.")
define_flag("integer", "crops", 1, "Views per position: 1 (centre crop), 3 or 10; the pooled "
            "features of the views are averaged.")
define_flag("bool", "keep_frames", False, "Keep the JPEG frames and flow in the output "
            "records (default: features only, small records).")
define_flag("integer", "batch_size", 64, "Images (positions x crops) per network call.")
define_flag("bool", "progress", True, "Show a progress bar.")


def load_network():
    """The FrameNetwork of --model_dir or --backbone/--weights (UsageError when wrong)."""
    from tfvid.prep.frame_network import load_backbone_network, load_run_network
    if bool(FLAGS.model_dir) == bool(FLAGS.backbone):
        raise UsageError("give --model_dir (a TSN run) or --backbone with --weights")
    if FLAGS.model_dir:
        given = [f"--{n}" for n in ("weights", "new_length", "input_size")
                 if FLAGS[n].value is not None] + (["--modality"] if FLAGS.modality != "rgb"
                                                   else [])
        if given:
            raise UsageError(f"{', '.join(given)}: these follow the run with --model_dir")
        with usage_errors(ValueError, FileNotFoundError, prefix="--model_dir: "):
            return load_run_network(FLAGS.model_dir, FLAGS.checkpoint)
    if FLAGS.checkpoint:
        raise UsageError("--checkpoint goes with --model_dir; use --weights with --backbone")
    with usage_errors(ValueError, FileNotFoundError):
        return load_backbone_network(FLAGS.backbone, FLAGS.weights, modality=FLAGS.modality,
                                     new_length=FLAGS.new_length,
                                     input_size=FLAGS.input_size or 224, width=FLAGS.width)


def main(argv):
    check_args(argv, "data", "output_dir")
    from tfvid.prep.extract_features import extract_features
    from tfvid.prep.frame_network import CROPS, parse_density
    from tfvid.lock import LockedError
    if FLAGS.crops not in CROPS:
        raise UsageError(f"--crops must be 1, 3 or 10, got {FLAGS.crops}")
    with usage_errors():
        density = parse_density(FLAGS.frames, FLAGS.fps, FLAGS.num_frames)
    with usage_errors(FileNotFoundError, ValueError):
        files = resolve_files(FLAGS.data, "data")
    lists = [f for f in files if f.endswith(".list")]
    if lists:
        raise UsageError(f"--data: TFRecord shards only (raw-frame list {lists[0]}: "
                             "prepare with --layout=tfrecord)")
    network = load_network()
    with usage_errors(ValueError, LockedError):
        summary = extract_features(files, FLAGS.output_dir, network,
                                   feature_name=FLAGS.feature_name, density=density,
                                   crops=FLAGS.crops, keep_frames=FLAGS.keep_frames,
                                   batch_size=FLAGS.batch_size, progress=FLAGS.progress)
    print(json.dumps(summary, indent=1))
    return summary


def run():
    """Console-script entry point (tfvid-extract-features)."""
    run_job(main)


if __name__ == "__main__":
    run()
