"""Launch a configured training run: one run per model_dir, run_config.json, then the loop.

    setup = tfvid.train.config.make_run(values, job_flags, train_files, val_files,
                                        num_replicas=strategy.num_replicas_in_sync)
    metrics = run_training(setup, strategy)

run_training holds model_dir/.lock (tfvid.lock.folder_lock, chief only) from before it checks
the previous run and writes run_config.json until training ends; it builds the model
(tfvid.models.build with the run's builder keywords and --weights), the input
(tfvid.data.build_dataset with the run's sampler, augmentation and data service), the
learning-rate schedule, and calls tfvid.train.loop.train with the run's solver settings.
"""
from __future__ import annotations

import contextlib
import os

import tensorflow as tf

from tfvid import models
from tfvid.data import build_dataset
from tfvid.lock import folder_lock
from tfvid.train import config as run_config
from tfvid.train.data import name_data_loss
from tfvid.train.loop import train
from tfvid.train.schedules import make_schedule
from tfvid.train.strategy import is_chief

def input_options(config: dict) -> dict:
    """build_dataset keywords of the run's training input: cached features
    (FEATURE/<name>/floats) or decoded frames with the run's augmentation, as the spec says;
    the tf.data service dispatcher when there is one."""
    spec = models.get_spec(config["model"])
    if spec.input_kind_of(config) == "features":
        options = {"feature": config["feature"]}
    else:
        options = {"modality": config["modality"], "backbone": config["backbone"]}
        if config.get("augmentation"):     # run_config.json of older runs lacks it
            options["augmentation"] = config["augmentation"]
    if config.get("data_service"):
        options["data_service"] = config["data_service"]
    return options


def dataset_fns(setup: run_config.RunSetup):
    """(train dataset_fn, val dataset_fn or None): InputContext -> build_dataset(...)."""
    config = setup.config
    options = input_options(config)

    def dataset_fn(ctx, files=config["train_files"], mode="train"):
        extra = options if mode == "train" else {   # validation: local, no augmentation
            k: v for k, v in options.items() if k not in ("augmentation", "data_service")}
        return build_dataset(files, sampler=setup.sampler, mode=mode,
                             batch_size=config["batch_size"], input_size=config["input_size"],
                             seed=config["seed"], input_context=ctx,
                             num_classes=config["num_classes"],
                             bad_data="skip" if config["bad_data"] == "skip" else "mark",
                             **extra)

    val_files = config["val_files"]
    return dataset_fn, ((lambda ctx: dataset_fn(ctx, val_files, "val")) if val_files else None)


def run_training(setup: run_config.RunSetup, strategy, *, progress: bool = True) -> dict:
    """Trains the run of `setup` under `strategy`; returns metrics.json's dict.

    ConfigError: model_dir holds a different network; tfvid.lock.LockedError: another live
    run uses model_dir; tf.errors.DataLossError naming the flag and shard of a corrupt
    TFRecord met while training; the loop's errors (tfvid.train.loop.train)."""
    config = setup.config
    model_dir = config["model_dir"]
    os.makedirs(model_dir, exist_ok=True)
    chief = is_chief(strategy)
    with (folder_lock(os.path.join(model_dir, ".lock"), "training run") if chief
          else contextlib.nullcontext()):
        run_config.check_previous_run(config)
        if chief:
            run_config.write_run_config(config)
        return _train(setup, strategy, progress)


def _train(setup, strategy, progress):
    config = setup.config
    kwargs = setup.builder_kwargs

    def model_fn():
        return models.build(config["model"], config["num_classes"], weights=config["weights"],
                            **kwargs)

    dataset_fn, val_fn = dataset_fns(setup)
    lr = make_schedule(config["lr_schedule"], config["lr"],
                       [int(s) for s in config["lr_steps"]], patience=config["lr_patience"])
    try:
        result = train(model_fn, dataset_fn, model_dir=config["model_dir"],
                       steps=config["steps"], global_batch_size=config["batch_size"],
                       strategy=strategy, learning_rate=lr, momentum=config["momentum"],
                       weight_decay=config["weight_decay"],
                       clip_norm=config["clip_norm"] or None, val_dataset_fn=val_fn,
                       eval_every=config["eval_every"] if val_fn else 0,
                       log_every=config["log_every"],
                       checkpoint_every=config["checkpoint_every"], resume=config["resume"],
                       seed=config["seed"], progress=progress, bad_data=config["bad_data"],
                       run_info=setup.run_info, lock=False, precision=config["precision"],
                       # service workers deliver batches in the order they finish them: the
                       # iterator cannot be checkpointed, a resumed run starts the stream anew
                       data_resume="restart" if config.get("data_service") else "checkpoint")
    except tf.errors.DataLossError as err:
        name_data_loss(err, {"train_data": config["train_files"],
                             "val_data": config["val_files"]})
    return result.metrics
