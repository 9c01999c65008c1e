"""Train a model on prepared TFRecords (or raw-frame .list files) under any tf.distribute strategy.

    python -m pipelines.train --flagfile=pipelines/configs/tsn_rgb_ucf101.flags \\
        --train_data=data/ucf101/train-*.tfrecord --val_data=data/ucf101/val.list \\
        --model_dir=runs/tsn_rgb
    tfvid-train --model=tsn --backbone=tiny --width=0.25 --input_size=64 --steps=100 ...

Writes model_dir/run_config.json (every flag, the sampler and the class names: evaluate and
export rebuild the model from it), checkpoints, TensorBoard logs and metrics.json (see
tfvid.train.loop). Rerunning with the same --model_dir resumes at the last checkpoint (--resume),
exactly where a killed run stopped; a second run while one is using --model_dir stops with a
UsageError naming it. Bad videos are skipped, logged once and listed in metrics.json
(--bad_data=skip) or stop the run (--bad_data=fail); incomplete prepare_data splits are
refused unless --allow_incomplete. --num_segments defaults to the model's paper value.

Everything model-specific comes from the model's spec (tfvid.models.spec.ModelSpec): its own
flags (e.g. --consensus, --frames_per_segment, --stream; the job defines the flags of every
registered spec), the stream -> modality rule, the sampler, the builder keywords run_config.json
records, the paper T. A model defined outside tfvid registers its spec when its module is
imported: name the module in the TFVID_PLUGINS environment variable (comma-separated) and this
job imports it before it defines its flags. Models with cached-feature input (DIN, VideoMap)
train on FEATURE/<--feature>/floats with --backbone=none.
Multi-worker: start one process per worker with the same flags and TF_CONFIG set, e.g.
TF_CONFIG='{"cluster":{"worker":["h1:2222","h2:2222"]},"task":{"type":"worker","index":0}}'.
"""
from __future__ import annotations

import glob
import json
import math
import os

from absl import app, flags, logging

from pipelines.common import (_JOB_DEFAULTS, check_args, define_flag, keep_last_given,
                              resolve_files, run_job)
from tfvid.models.spec import NO_BACKBONE, flag_kind, get_spec, load_plugins, model_flags

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



def define_model_flags() -> None:
    """Defines the flags of every registered model spec (ModelSpec.flags) not defined yet; a
    spec registered after the command line was parsed gets its flags at their defaults."""
    for name, (kind, default, help_text) in model_flags().items():
        kind, kw = flag_kind(kind)
        define_flag(kind, name, default, help_text, **kw)


define_model_flags()

#: run_config keys that define the network besides the model's own flags (ModelSpec.flags,
#: see resume_keys): a resumed run must agree on them.
RESUME_KEYS = ("model", "num_classes", "backbone", "modality", "width", "input_size",
               "num_segments", "new_length", "partial_bn")
#: Flags of this job that run_config.json does not record (it records every other one of
#: this job's flags, except the flags of other models' specs).
UNRECORDED_FLAGS = ("progress",)


def resume_keys(spec) -> tuple[str, ...]:
    """RESUME_KEYS and the model's own flags."""
    return RESUME_KEYS + tuple(f for f in spec.flags if f not in RESUME_KEYS)


def recorded_flags(spec) -> list[str]:
    """This job's flags that run_config.json records for a run of `spec`'s model."""
    foreign = set(model_flags()) - set(spec.flags)
    return [name for name in _JOB_DEFAULTS.get(__name__, {})
            if name not in UNRECORDED_FLAGS and name not in foreign]


def data_files(flag: str) -> list[str]:
    """The files of --train_data / --val_data (pipelines.common.resolve_files); UsageError."""
    try:
        return resolve_files(FLAGS[flag].value, flag)
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from None


def count_videos(files: list[str]) -> int:
    """Videos in the data: .list lines, a matching <split>-summary.json, or counting records."""
    if files[0].endswith(".list"):
        total = 0
        for path in files:
            with open(path, encoding="utf-8") as f:
                total += sum(1 for ln in f if ln.strip())
        return total
    wanted = {os.path.abspath(f) for f in files}
    folder = os.path.dirname(os.path.abspath(files[0]))
    for summary in glob.glob(os.path.join(folder, "*-summary.json")):
        with open(summary, encoding="utf-8") as f:
            info = json.load(f)
        shards = {os.path.abspath(s) for s in (info.get("files") or {}).get("shards", [])}
        if shards and shards == wanted:
            return int(info["videos"])
    from tfvid.prep.prepare import count_records
    logging.info("counting the records of %d shard(s) once (no matching summary json)", len(files))
    return sum(count_records(f) for f in files)


def sample_labels(files: list[str], limit: int = 64) -> list[int]:
    """Labels of a .list file (all) or of up to `limit` records (round robin over shards)."""
    if files[0].endswith(".list"):
        from tfvid.data.pipeline import read_list_file
        return [lab for f in files for lab in read_list_file(f)[3]]
    import tensorflow as tf
    from tfvid.data import schema
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=max(1, len(files))).take(limit)
    spec = {schema.LABEL_INDEX: tf.io.VarLenFeature(tf.int64)}
    labels = []
    for record in ds:
        context, _ = tf.io.parse_single_sequence_example(record, context_features=spec)
        values = tf.sparse.to_dense(context[schema.LABEL_INDEX]).numpy()
        labels.append(int(values[0]) if values.size else -1)
    return labels


def check_flags() -> None:
    """UsageError naming the flag for any bad value, before TensorFlow does any work."""
    from tfvid.data.modality import MODALITIES
    from tfvid.models.backbones import BACKBONES
    try:
        spec = get_spec(FLAGS.model)
    except ValueError as e:
        raise app.UsageError(f"--model={FLAGS.model!r}: {e}") from None
    if FLAGS.modality not in MODALITIES:
        raise app.UsageError(f"--modality={FLAGS.modality!r} is unknown; choose one of "
                             f"{MODALITIES}")
    check_stream(spec)
    if FLAGS.modality not in spec.modalities:
        raise app.UsageError(f"--modality={FLAGS.modality} does not apply to "
                             f"--model={spec.name} (it takes {', '.join(spec.modalities)})")
    check_model_flags(spec)
    if spec.feature_input and FLAGS.backbone in NO_BACKBONE:
        if not FLAGS.feature:
            raise app.UsageError(f"--backbone={FLAGS.backbone}: --model={spec.name} trains on "
                                 "cached features then; give --feature=<name> "
                                 "(FEATURE/<name>/floats of the records)")
    elif FLAGS.backbone not in BACKBONES:
        raise app.UsageError(f"--backbone={FLAGS.backbone!r} is unknown; choose one of {BACKBONES}")
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required")
    keep_last_given("steps", "epochs")   # a later --steps overrides a preset's --epochs
    if (FLAGS.steps > 0) == (FLAGS.epochs > 0):
        raise app.UsageError("give exactly one of --steps and --epochs (positive)")
    for name in ("batch_size", "input_size", "num_segments", "log_every", "checkpoint_every"):
        if getattr(FLAGS, name) is not None and getattr(FLAGS, name) <= 0:
            raise app.UsageError(f"--{name} must be positive, got {getattr(FLAGS, name)}")
    if FLAGS.width <= 0 or FLAGS.lr <= 0:
        raise app.UsageError("--width and --lr must be positive")
    if FLAGS.dropout is not None and not 0 <= FLAGS.dropout < 1:
        raise app.UsageError(f"--dropout must be in [0, 1), got {FLAGS.dropout}")
    try:
        steps = [int(s) for s in FLAGS.lr_steps]
    except ValueError:
        raise app.UsageError(f"--lr_steps must be integers, got {FLAGS.lr_steps}") from None
    if FLAGS.lr_schedule != "step" and steps:
        raise app.UsageError("--lr_steps only applies to --lr_schedule=step")
    if FLAGS.lr_schedule == "plateau" and not (FLAGS.val_data and FLAGS.eval_every > 0):
        raise app.UsageError("--lr_schedule=plateau needs --val_data and --eval_every > 0")
    if steps != sorted(set(steps)) or any(s <= 0 for s in steps):
        raise app.UsageError(f"--lr_steps must be positive and increasing, got {steps}")


def check_stream(spec=None) -> None:
    """For a model with streams (ModelSpec.streams, e.g. dynamic_image), --stream implies
    --modality (si/di: rgb, of/dof: flow): sets it, or UsageError naming both flags when
    --modality was given (command line or flagfile) and contradicts it."""
    spec = spec or get_spec(FLAGS.model)
    if not spec.streams:
        return
    if FLAGS.stream not in spec.streams:
        raise app.UsageError(f"--stream={FLAGS.stream} is not a stream of --model={spec.name} "
                             f"({', '.join(spec.streams)})")
    implied = spec.streams[FLAGS.stream]
    if FLAGS["modality"].present and FLAGS.modality != implied:
        rule = ", ".join(f"{s}: {m}" for s, m in spec.streams.items())
        raise app.UsageError(f"--modality={FLAGS.modality} contradicts --stream={FLAGS.stream} "
                             f"(streams take {rule}); drop --modality or set "
                             f"--modality={implied}")
    FLAGS.modality = implied


def check_model_flags(spec) -> None:
    """UsageError for a flag of other models' specs set away from its default, and for the
    spec's own check (ModelSpec.check) of the flag values."""
    own = set(spec.flags)
    for name, (_, default, _) in model_flags().items():
        if name not in own and FLAGS[name].value != default:
            users = sorted(s.name for s in _specs_with_flag(name))
            raise app.UsageError(f"--{name}={FLAGS[name].value} applies to --model="
                                 f"{' or '.join(users)}, not --model={spec.name}")
    if spec.check is not None:
        try:
            spec.check({name: FLAGS[name].value for name in recorded_flags(spec)})
        except ValueError as e:
            raise app.UsageError(str(e)) from None


def _specs_with_flag(name):
    from tfvid.models.spec import all_specs
    return [s for s in all_specs() if name in s.flags]


def resolve_num_classes(train_files, val_files) -> tuple[int, list[str] | None]:
    """--num_classes (or the length of classes.txt beside the training data) and the class
    names; UsageError when they disagree or when labels fall outside [0, num_classes)."""
    from tfvid.prep.indexes import read_classes_file
    path = os.path.join(os.path.dirname(os.path.abspath(train_files[0])), "classes.txt")
    names = read_classes_file(path) if os.path.isfile(path) else None
    num_classes = FLAGS.num_classes
    if num_classes <= 0:
        if names is None:
            raise app.UsageError("--num_classes=0 needs classes.txt beside the training data "
                                 f"({os.path.dirname(os.path.abspath(train_files[0]))}); "
                                 "give --num_classes")
        num_classes = len(names)
    elif names is not None and len(names) != num_classes:
        raise app.UsageError(f"--num_classes={num_classes} but classes.txt beside the training "
                             f"data lists {len(names)} classes")
    for flag, files in (("train_data", train_files), ("val_data", val_files)):
        if not files:
            continue
        labels = sample_labels(files)
        bad = sorted({lab for lab in labels if not 0 <= lab < num_classes})
        if bad:
            raise app.UsageError(f"--{flag} holds labels {bad[:10]} outside [0, {num_classes}) "
                                 f"(--num_classes={num_classes}); -1 means an unlabeled video")
    return num_classes, names


def paper_num_segments(model: str) -> int | None:
    """The model's paper training T (ModelSpec.default_time): TSN 3, StNet 7, DIN 8, VideoMap
    256; None when its sampler decides (dynamic_image)."""
    return get_spec(model).default_time


def check_data(train_files, val_files) -> list[str]:
    """tfvid.prep.completeness.check_shards on the training and validation files (ValueError
    -> UsageError naming missing or truncated shards unless --allow_incomplete); warnings."""
    from tfvid.prep.completeness import check_shards
    warnings = []
    for flag, files in (("train_data", train_files), ("val_data", val_files)):
        if not files:
            continue
        try:
            found = check_shards(files, allow_incomplete=FLAGS.allow_incomplete)
        except ValueError as e:
            raise app.UsageError(f"--{flag}: {e}") from None
        for text in found or []:
            logging.warning("--%s: %s", flag, text)
            warnings.append(f"--{flag}: {text}")
    return warnings


def kernels_status() -> dict:
    """Whether the fused input kernels run: tfvid.data.kernels.info()'s on, path and status."""
    from tfvid.data import kernels
    info = kernels.info()
    return {k: info[k] for k in ("on", "path", "status")}


def name_data_loss(err, files_by_flag) -> None:
    """Re-raises a DataLossError met while training naming the truncated or corrupt shard
    (found with verify_records)."""
    import tensorflow as tf

    from tfvid.data.pipeline import verify_records
    for flag, files in files_by_flag:
        if not files or files[0].endswith(".list"):
            continue
        try:
            verify_records(files)
        except tf.errors.DataLossError as named:
            raise tf.errors.DataLossError(None, None, f"--{flag}: {named.message}") from err
    raise err


def cached_feature_dim(train_files, config: dict) -> int:
    """D of the cached features the head trains on: FEATURE/<--feature>/dimension of the
    training records (tfvid.data.pipeline.feature_dimension); UsageError when there are none
    or when --feature_dim contradicts it."""
    from tfvid.data.pipeline import feature_dimension
    try:
        dim = feature_dimension(train_files, config["feature"])
    except ValueError as e:
        raise app.UsageError(f"--train_data / --feature={config['feature']}: {e}") from None
    given = config.get("feature_dim")
    if given is not None and int(given) != dim:
        raise app.UsageError(f"--feature_dim={given} but the training records hold "
                             f"{dim}-d features {config['feature']!r}; drop --feature_dim")
    return dim


def check_previous_run(model_dir: str, config: dict) -> None:
    """A model_dir of another network (different run_config resume_keys) -> UsageError."""
    from tfvid.train.run_dir import RUN_CONFIG
    path = os.path.join(model_dir, RUN_CONFIG)
    if not (FLAGS.resume and os.path.isfile(path)):
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    keys = resume_keys(get_spec(config["model"]))
    diff = {k: (old.get(k), config.get(k)) for k in keys if old.get(k) != config.get(k)}
    if diff:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise app.UsageError(f"--model_dir={model_dir} holds a run of a different model ({detail});"
                             " use another --model_dir")


def main(argv):
    define_model_flags()     # specs registered since the import (their flags at defaults)
    check_args(argv)
    check_flags()
    train_files = data_files("train_data")
    val_files = data_files("val_data") if FLAGS.val_data else None
    from tfvid.train.strategy import make_strategy  # before any TF op (multi-worker needs it)
    strategy = make_strategy(FLAGS.strategy)
    from tfvid.train import run_dir
    from tfvid.train.strategy import is_chief

    data_warnings = check_data(train_files, val_files)
    num_classes, class_names = resolve_num_classes(train_files, val_files)
    kernels = kernels_status()
    logging.info("%s", kernels["status"])
    steps = FLAGS.steps
    if FLAGS.epochs > 0:
        videos = count_videos(train_files)
        steps = max(1, math.ceil(FLAGS.epochs * videos / FLAGS.batch_size))
        logging.info("%g epochs of %d videos at batch %d = %d steps", FLAGS.epochs, videos,
                     FLAGS.batch_size, steps)
    # run_config.json holds the flags; evaluate and export rebuild the network and the sampler
    # from it with the same run_dir functions.
    spec = get_spec(FLAGS.model)
    config = {name: FLAGS[name].value for name in recorded_flags(spec)}
    if config.get("num_segments") is None:   # the model's paper default (TSN 3, StNet 7)
        config["num_segments"] = spec.default_time
    if spec.configure is not None:          # e.g. dynamic_image: stream, sampler, model_kwargs
        config.update(spec.configure(dict(config)))
    if spec.input_kind_of(config) == "features":
        config["feature_dim"] = cached_feature_dim(train_files, config)
    sampler = run_dir.sampler_from_config(config, "train")
    kwargs = run_dir.builder_kwargs(config)
    config.update(num_classes=num_classes, steps=steps, sampler=sampler.config(),
                  class_names=class_names, train_files=train_files, val_files=val_files,
                  num_replicas=strategy.num_replicas_in_sync)
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    import contextlib

    from tfvid.lock import LockedError, folder_lock
    chief = is_chief(strategy)
    try:   # one training run per model_dir, held from before run_config.json is written
        with (folder_lock(os.path.join(FLAGS.model_dir, ".lock"), "training run") if chief
              else contextlib.nullcontext()):
            check_previous_run(FLAGS.model_dir, config)
            if chief:
                with open(os.path.join(FLAGS.model_dir, run_dir.RUN_CONFIG), "w",
                          encoding="utf-8") as f:
                    json.dump(config, f, indent=1)
            return _train(config, strategy, sampler, kwargs, num_classes, steps, train_files,
                          val_files, kernels, data_warnings, spec)
    except LockedError as err:
        raise app.UsageError(f"--model_dir: {err}") from None


def _train(config, strategy, sampler, kwargs, num_classes, steps, train_files, val_files,
           kernels, data_warnings, spec):
    from tfvid import models
    from tfvid.data import build_dataset
    from tfvid.train.loop import train
    from tfvid.train.schedules import make_schedule

    def model_fn():
        return models.build(FLAGS.model, num_classes, weights=FLAGS.weights, **kwargs)

    # cached features (FEATURE/<name>/floats) or decoded frames, as the spec says for this run
    if spec.input_kind_of(config) == "features":
        source = {"feature": config["feature"]}
    else:
        source = {"modality": FLAGS.modality, "backbone": FLAGS.backbone}

    def dataset_fn(ctx, files=train_files, mode="train"):
        return build_dataset(files, sampler=sampler, mode=mode, batch_size=FLAGS.batch_size,
                             input_size=FLAGS.input_size, seed=FLAGS.seed, input_context=ctx,
                             num_classes=num_classes,
                             bad_data="skip" if FLAGS.bad_data == "skip" else "mark", **source)

    def val_fn(ctx):
        return dataset_fn(ctx, val_files, "val")

    lr = make_schedule(FLAGS.lr_schedule, FLAGS.lr, [int(s) for s in FLAGS.lr_steps],
                       patience=FLAGS.lr_patience)
    import tensorflow as tf
    try:
        result = train(model_fn, dataset_fn, model_dir=FLAGS.model_dir, steps=steps,
                       global_batch_size=FLAGS.batch_size, strategy=strategy, learning_rate=lr,
                       momentum=FLAGS.momentum, weight_decay=FLAGS.weight_decay,
                       clip_norm=FLAGS.clip_norm or None,
                       val_dataset_fn=val_fn if val_files else None,
                       eval_every=FLAGS.eval_every if val_files else 0,
                       log_every=FLAGS.log_every, checkpoint_every=FLAGS.checkpoint_every,
                       resume=FLAGS.resume, seed=FLAGS.seed, progress=FLAGS.progress,
                       bad_data=FLAGS.bad_data,
                       run_info={"input_kernels": kernels, "data_warnings": data_warnings},
                       lock=False)
    except tf.errors.DataLossError as err:
        name_data_loss(err, (("train_data", train_files), ("val_data", val_files)))
    print(json.dumps(result.metrics, indent=1))
    return result.metrics


def run():
    run_job(main)


if __name__ == "__main__":
    run()
