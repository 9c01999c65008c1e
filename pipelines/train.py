"""Train a model on prepared TFRecords (or raw-frame .list files) under any tf.distribute strategy.

    python -m pipelines.train --flagfile=pipelines/configs/tsn_rgb_ucf101.flags \\
        --train_data=data/ucf101/train-*.tfrecord --val_data=data/ucf101/val.list \\
        --model_dir=runs/tsn_rgb
    tfvid-train --model=tsn --backbone=tiny --width=0.25 --input_size=64 --steps=100 ...

Writes model_dir/run_config.json (tfvid.train.config: evaluate and export rebuild the model
from it), checkpoints, TensorBoard logs and metrics.json (tfvid.train.loop). Rerunning with the
same --model_dir resumes exactly where a killed run stopped; a second run while one uses it
stops naming it. Bad videos are skipped and listed (--bad_data=skip) or stop the run (fail);
incomplete prepare_data splits are refused unless --allow_incomplete. Model-specific flags
(--consensus, --stream, ...), the sampler, the paper T (--num_segments) and augmentation come
from the model's spec (tfvid.models.spec; TFVID_PLUGINS names modules registering more).
--precision=auto: a mixed policy where the hardware is fast at it (tfvid.train.precision).
Multi-worker: start one process per worker with the same flags and TF_CONFIG set, e.g.
TF_CONFIG='{"cluster":{"worker":["h1:2222","h2:2222"]},"task":{"type":"worker","index":0}}'.
"""
from __future__ import annotations

import json

from absl import flags

from pipelines.common import (_JOB_DEFAULTS, UsageError, check_args, define_flag,
                              keep_last_given, resolve_files, run_job, usage_errors)
from tfvid.models.spec import flag_kind, get_spec, load_plugins, model_flags
from tfvid.train import config as run_config
from tfvid.train.config import paper_num_segments, resume_keys  # noqa: F401 (the job's API)
from tfvid.train.data import ConfigError, count_videos  # noqa: F401

FLAGS = flags.FLAGS
load_plugins()   # TFVID_PLUGINS: modules registering model specs, before the flags are defined

define_flag("enum", "strategy", "default", "tf.distribute strategy.",
            enum_values=["default", "one_device", "mirrored", "multi_worker"])
define_flag("string", "model", "tsn", "Model name in tfvid.models.MODELS.")
define_flag("string", "modality", "rgb", "rgb, flow or rgbdiff.")
define_flag("string", "backbone", "bninception", "Backbone name "
            "(tfvid.models.backbones.BACKBONES); 'none' for a model that trains on cached "
            "features (--feature).")
define_flag("float", "width", 1.0, "Backbone width multiplier.")
define_flag("integer", "input_size", 224, "Spatial side of the network input.")
define_flag("integer", "num_segments", None, "TSN segments K (time steps T of other models); "
            "default: the model's paper value (TSN 3, StNet 7; dynamic_image: its sampler's).")
define_flag("integer", "new_length", None, "Frames per snippet L (default 1 rgb, 5 flow, "
            "6 rgbdiff).")
define_flag("float", "dropout", None, "Dropout before the classifier (default: the paper's).")
define_flag("bool", "partial_bn", True, "Freeze every BatchNormalization but the first.")
define_flag("string", "weights", None, "None, 'imagenet' or a weights file for the backbone.")
define_flag("string", "train_data", None, "Training TFRecords: comma-separated globs, "
            "directories or a .list file.")
define_flag("string", "val_data", None, "Validation data (same forms); evaluated every "
            "--eval_every.")
define_flag("integer", "num_classes", 0, "Classes; 0 = count the lines of classes.txt beside "
            "the data.")
define_flag("integer", "batch_size", 256, "Global batch size (split over all replicas).")
define_flag("float", "lr", 0.001, "Base learning rate.")
define_flag("enum", "lr_schedule", "step", "step: divide by 10 at --lr_steps; plateau: divide "
            "by 10 when validation accuracy stalls for --lr_patience evaluations; constant.",
            enum_values=["step", "plateau", "constant"])
define_flag("list", "lr_steps", [], "Iterations at which the step schedule divides the lr by 10.")
define_flag("integer", "lr_patience", 2, "Evaluations without improvement before a plateau drop.")
define_flag("float", "momentum", 0.9, "SGD momentum.")
define_flag("float", "weight_decay", 5e-4, "L2 weight decay on kernels (Caffe form, see "
            "tfvid.train.loop).")
define_flag("float", "clip_norm", 40.0, "Global gradient-norm clip; 0 disables.")
define_flag("integer", "steps", 0, "Training iterations (optimizer steps).")
define_flag("float", "epochs", 0, "Alternative to --steps: epochs over the training videos.")
define_flag("string", "model_dir", None, "Output directory (checkpoints, logs, "
            "run_config.json).")
define_flag("bool", "resume", True, "Continue from the last checkpoint in --model_dir.")
define_flag("integer", "seed", 0, "Seed of initialisation and data sampling.")
define_flag("integer", "eval_every", 0, "Evaluate --val_data every N steps (0: only at the end).")
define_flag("integer", "log_every", 20, "Log and write summaries every N steps.")
define_flag("integer", "checkpoint_every", 500, "Save a checkpoint every N steps.")
define_flag("bool", "progress", True, "Show a progress bar.")
define_flag("enum", "bad_data", "skip", "Invalid training/validation videos (incomplete JPEG "
            "frame, label outside [0, num_classes), flow/RGB count mismatch): skip (zero weight, "
            "each logged once and listed in metrics.json 'bad_videos'; a truncated shard is "
            "read up to its last complete record) or fail (stop naming the video and file).",
            enum_values=["skip", "fail"])
define_flag("bool", "allow_incomplete", False, "Train on a prepare_data split with missing or "
            "truncated shards (tfvid.prep.completeness.check_shards) instead of refusing it.")
define_flag("enum", "augmentation", None, "Training augmentation (default: the model's "
            "paper recipe, ModelSpec.augmentation): multiscale_crop_flip (TSN's corner and "
            "scale-jitter crops + flip) or random_crop_flip (a random --input_size crop + flip, "
            "StNet's).", enum_values=["multiscale_crop_flip", "random_crop_flip"])
define_flag("string", "data_service", None, "grpc://HOST:PORT of a tf.data service dispatcher "
            "(pipelines/data_service.py): the training input runs on its workers.")
define_flag("enum", "precision", "auto", "float32, mixed_bfloat16 or mixed_float16 (loss "
            "scaling); auto: mixed_bfloat16 on a GPU of compute capability >= 8 or a CPU with "
            "AMX (amx_bf16), mixed_float16 on older GPUs, float32 otherwise. Logits, "
            "loss and checkpoints stay float32.",
            enum_values=["auto", "float32", "mixed_bfloat16", "mixed_float16"])


def define_model_flags() -> None:
    """Defines the flags of every registered model spec (ModelSpec.flags) not defined yet; a
    spec registered after the command line was parsed gets its flags at their defaults."""
    for name, (kind, default, help_text) in model_flags().items():
        kind, kw = flag_kind(kind)
        define_flag(kind, name, default, help_text, **kw)


define_model_flags()


def job_flags() -> list[str]:
    return list(_JOB_DEFAULTS.get(__name__, {}))      # this job's flags, the specs' included


def flag_values() -> dict:
    return {name: FLAGS[name].value for name in job_flags()}


def check_flags() -> None:
    """UsageError naming the flag for any bad value, before TensorFlow does any work; sets
    --modality from --stream for a model with streams."""
    keep_last_given("steps", "epochs")   # a later --steps overrides a preset's --epochs
    with usage_errors(ConfigError):
        FLAGS.modality = run_config.check_values(flag_values(), job_flags(),
                                                 modality_given=FLAGS["modality"].present)


def check_stream(spec=None) -> None:
    """--stream implies --modality (tfvid.train.config.stream_modality): sets it, or
    UsageError naming both flags."""
    spec = spec or get_spec(FLAGS.model)
    with usage_errors(ConfigError):
        FLAGS.modality = run_config.stream_modality(spec, flag_values(),
                                                    FLAGS["modality"].present)


def data_files(flag: str) -> list[str] | None:
    """The files of --train_data / --val_data (None when not given); UsageError."""
    if flag != "train_data" and not FLAGS[flag].value:
        return None
    with usage_errors(FileNotFoundError, ValueError):
        return resolve_files(FLAGS[flag].value, flag)


def main(argv):
    define_model_flags()     # specs registered since the import (their flags at defaults)
    check_args(argv)
    check_flags()
    train_files, val_files = data_files("train_data"), data_files("val_data")
    from tfvid.train.strategy import make_strategy  # before any TF op (multi-worker needs it)
    strategy = make_strategy(FLAGS.strategy)
    from tfvid.lock import LockedError
    from tfvid.train.launch import run_training
    with usage_errors(ConfigError):
        setup = run_config.make_run(flag_values(), job_flags(), train_files, val_files,
                                    num_replicas=strategy.num_replicas_in_sync)
    try:
        with usage_errors(ConfigError):
            metrics = run_training(setup, strategy, progress=FLAGS.progress)
    except LockedError as err:
        raise UsageError(f"--model_dir: {err}") from None
    print(json.dumps(metrics, indent=1))
    return metrics


def run():
    run_job(main)


if __name__ == "__main__":
    run()
