"""The run configuration of a training run: checked flag values -> run_config.json.

    check_values(values, modality_given=...)      # ConfigError naming the flag; the modality
    setup = make_run(values, job_flags, train_files, val_files, num_replicas=1)
    setup.config                                  # what run_config.json holds

`values` maps the train job's flag names to their values (the model specs' flags included).
run_config.json records every job flag but `UNRECORDED_FLAGS` and other models' flags, plus
the resolved num_segments (the spec's paper T), num_classes and class names, steps, the
sampler config (tfvid.data.sampling), the training augmentation (the spec's by default), the
precision policy and why it was chosen, the resolved files and the number of replicas.
evaluate and export rebuild the network and the sampler from it (tfvid.train.run_dir).
Everything model-specific comes from the model's spec (tfvid.models.spec.ModelSpec).
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import NamedTuple

from tfvid.data.augment import AUGMENTATIONS
from tfvid.data.modality import MODALITIES
from tfvid.models.backbones import BACKBONES
from tfvid.models.spec import NO_BACKBONE, all_specs, get_spec, model_flags
from tfvid.train import data, run_dir
from tfvid.train.data import ConfigError
from tfvid.train.precision import PRECISIONS, choose_precision

#: run_config keys that define the network besides the model's own flags (ModelSpec.flags,
#: see resume_keys): a resumed run must agree on them.
RESUME_KEYS = ("model", "num_classes", "backbone", "modality", "width", "input_size",
               "num_segments", "new_length", "partial_bn")
#: Flags of the train job that run_config.json does not record.
UNRECORDED_FLAGS = ("progress",)
log = logging.getLogger("tfvid.train")
_POSITIVE = ("batch_size", "input_size", "num_segments", "log_every", "checkpoint_every")


class RunSetup(NamedTuple):
    config: dict          # run_config.json
    sampler: object       # the training sampler (tfvid.data.sampling)
    builder_kwargs: dict  # the model builder's keywords (run_dir.builder_kwargs)
    run_info: dict        # extra metrics.json entries: input kernels, data warnings


def resume_keys(spec) -> tuple[str, ...]:
    """RESUME_KEYS and the model's own flags."""
    return RESUME_KEYS + tuple(f for f in spec.flags if f not in RESUME_KEYS)


def recorded_flags(spec, job_flags) -> list[str]:
    """The job flags (names) that run_config.json records for a run of `spec`'s model."""
    foreign = set(model_flags()) - set(spec.flags)
    return [n for n in job_flags if n not in UNRECORDED_FLAGS and n not in foreign]


def paper_num_segments(model: str) -> int | None:
    """The model's paper training T (ModelSpec.default_time): TSN 3, StNet 7, DIN 8, VideoMap
    256; None when its sampler decides (dynamic_image)."""
    return get_spec(model).default_time


def stream_modality(spec, values: dict, modality_given: bool) -> str:
    """The run's modality. For a model with streams (ModelSpec.streams, e.g. dynamic_image)
    --stream implies it (si/di: rgb, of/dof: flow); ConfigError naming both flags when
    --modality was given and contradicts it."""
    if not spec.streams:
        return values["modality"]
    stream = values.get("stream")
    if stream not in spec.streams:
        raise ConfigError(f"--stream={stream} is not a stream of --model={spec.name} "
                          f"({', '.join(spec.streams)})")
    implied = spec.streams[stream]
    if modality_given and values["modality"] != implied:
        rule = ", ".join(f"{s}: {m}" for s, m in spec.streams.items())
        raise ConfigError(f"--modality={values['modality']} contradicts --stream={stream} "
                          f"(streams take {rule}); drop --modality or set --modality={implied}")
    return implied


def check_model_flags(spec, values: dict, job_flags) -> None:
    """ConfigError for a flag of other models' specs set away from its default, and for the
    spec's own check (ModelSpec.check) of the flag values."""
    for name, (_, default, _) in model_flags().items():
        if name not in spec.flags and values.get(name, default) != default:
            users = sorted(s.name for s in all_specs() if name in s.flags)
            raise ConfigError(f"--{name}={values[name]} applies to --model="
                              f"{' or '.join(users)}, not --model={spec.name}")
    if spec.check is not None:
        try:
            spec.check({n: values.get(n) for n in recorded_flags(spec, job_flags)})
        except ValueError as e:
            raise ConfigError(str(e)) from None


def check_values(values: dict, job_flags, *, modality_given: bool) -> str:
    """ConfigError naming the flag for any bad value, before TensorFlow does any work; returns
    the run's modality (implied by --stream for a model with streams)."""
    try:
        spec = get_spec(values["model"])
    except ValueError as e:
        raise ConfigError(f"--model={values['model']!r}: {e}") from None
    if values["modality"] not in MODALITIES:
        raise ConfigError(f"--modality={values['modality']!r} is unknown; choose one of "
                          f"{MODALITIES}")
    modality = stream_modality(spec, values, modality_given)
    if modality not in spec.modalities:
        raise ConfigError(f"--modality={modality} does not apply to --model={spec.name} (it "
                          f"takes {', '.join(spec.modalities)})")
    check_model_flags(spec, {**values, "modality": modality}, job_flags)
    backbone = values["backbone"]
    if spec.feature_input and backbone in NO_BACKBONE:
        if not values.get("feature"):
            raise ConfigError(f"--backbone={backbone}: --model={spec.name} trains on cached "
                              "features then; give --feature=<name> (FEATURE/<name>/floats of "
                              "the records)")
    elif backbone not in BACKBONES:
        raise ConfigError(f"--backbone={backbone!r} is unknown; choose one of {BACKBONES}")
    if not values["model_dir"]:
        raise ConfigError("--model_dir is required")
    if (values["steps"] > 0) == (values["epochs"] > 0):
        raise ConfigError("give exactly one of --steps and --epochs (positive)")
    for name in _POSITIVE:
        if values[name] is not None and values[name] <= 0:
            raise ConfigError(f"--{name} must be positive, got {values[name]}")
    if values["width"] <= 0 or values["lr"] <= 0:
        raise ConfigError("--width and --lr must be positive")
    if values["dropout"] is not None and not 0 <= values["dropout"] < 1:
        raise ConfigError(f"--dropout must be in [0, 1), got {values['dropout']}")
    _check_schedule(values)
    if values.get("augmentation") not in (None, *AUGMENTATIONS):
        raise ConfigError(f"--augmentation={values['augmentation']!r} is unknown; choose one "
                          f"of {AUGMENTATIONS}")
    if values.get("precision", "auto") not in PRECISIONS:
        raise ConfigError(f"--precision={values['precision']!r} is unknown; choose one of "
                          f"{PRECISIONS}")
    service = values.get("data_service")
    if service and ":" not in str(service):
        raise ConfigError(f"--data_service={service!r} must look like grpc://HOST:PORT")
    return modality


def _check_schedule(values: dict) -> None:
    try:
        steps = [int(s) for s in values["lr_steps"]]
    except ValueError:
        raise ConfigError(f"--lr_steps must be integers, got {values['lr_steps']}") from None
    if values["lr_schedule"] != "step" and steps:
        raise ConfigError("--lr_steps only applies to --lr_schedule=step")
    if values["lr_schedule"] == "plateau" and not (values["val_data"] and
                                                   values["eval_every"] > 0):
        raise ConfigError("--lr_schedule=plateau needs --val_data and --eval_every > 0")
    if steps != sorted(set(steps)) or any(s <= 0 for s in steps):
        raise ConfigError(f"--lr_steps must be positive and increasing, got {steps}")


def training_steps(values: dict, train_files) -> int:
    """--steps, or --epochs over the training videos at --batch_size (rounded up)."""
    if values["epochs"] <= 0:
        return values["steps"]
    videos = data.count_videos(train_files)
    steps = max(1, math.ceil(values["epochs"] * videos / values["batch_size"]))
    log.info("%g epochs of %d videos at batch %d = %d steps", values["epochs"], videos,
                  values["batch_size"], steps)
    return steps


def make_run(values: dict, job_flags, train_files, val_files, *, num_replicas: int) -> RunSetup:
    """The run's config, sampler, builder keywords and run_info from checked flag `values`:
    checks the shards, the classes and labels (ConfigError), counts the steps, resolves the
    paper defaults (T, augmentation), the spec's configure(), the cached features' D and the
    precision (logged with the reason)."""
    files = {"train_data": train_files, "val_data": val_files}
    warnings = data.check_shards_of(files, allow_incomplete=values["allow_incomplete"])
    num_classes, class_names = data.resolve_num_classes(train_files, val_files,
                                                        values["num_classes"])
    kernels = data.kernels_status()
    log.info("%s", kernels["status"])
    steps = training_steps(values, train_files)
    spec = get_spec(values["model"])
    config = {name: values[name] for name in recorded_flags(spec, job_flags)}
    if config.get("num_segments") is None:   # the model's paper default (TSN 3, StNet 7)
        config["num_segments"] = spec.default_time
    config["augmentation"] = config.get("augmentation") or spec.augmentation
    if spec.configure is not None:          # e.g. dynamic_image: stream, sampler, model_kwargs
        config.update(spec.configure(dict(config)))
    if spec.input_kind_of(config) == "features":
        config["feature_dim"] = data.cached_feature_dim(train_files, config["feature"],
                                                        config.get("feature_dim"))
    policy, reason = choose_precision(config.get("precision") or "auto")
    log.info("precision %s (%s)", policy, reason)
    sampler = run_dir.sampler_from_config(config, "train")
    kwargs = run_dir.builder_kwargs(config)
    config.update(num_classes=num_classes, steps=steps, sampler=sampler.config(),
                  class_names=class_names, train_files=train_files, val_files=val_files,
                  num_replicas=num_replicas, precision=policy, precision_reason=reason)
    return RunSetup(config, sampler, kwargs, {"input_kernels": kernels, "data_warnings": warnings,
                                              "precision_reason": reason})


def check_previous_run(config: dict) -> None:
    """ConfigError when config['model_dir'] holds a run of another network (different
    resume_keys in its run_config.json) and config['resume'] is on."""
    model_dir = config["model_dir"]
    path = os.path.join(model_dir, run_dir.RUN_CONFIG)
    if not (config["resume"] and os.path.isfile(path)):
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    keys = resume_keys(get_spec(config["model"]))
    diff = {k: (old.get(k), config.get(k)) for k in keys if old.get(k) != config.get(k)}
    if diff:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"--model_dir={model_dir} holds a run of a different model ({detail});"
                          " use another --model_dir")


def write_run_config(config: dict) -> str:
    """Writes config to config['model_dir']/run_config.json; returns the path."""
    path = os.path.join(config["model_dir"], run_dir.RUN_CONFIG)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
    return path
