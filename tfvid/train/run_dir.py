"""A training run directory: what the train job leaves behind, read back by evaluate and export.

    runs/tsn_rgb/
      run_config.json            every train flag, the sampler config, class names, train files
      checkpoint, ckpt-<step>.*  tf.train checkpoints (tfvid.train.loop), or final.weights.h5

    cfg = read_run_config("runs/tsn_rgb")
    model = build_model(cfg, num_segments=None)      # variable T: 25 test snippets for a K=3 TSN
    restore(model, "runs/tsn_rgb")                   # latest checkpoint
    sampler = sampler_from_config(cfg, "test", 25)
    names = class_names(cfg, "runs/tsn_rgb")

The train job writes run_config.json with builder_kwargs() and sampler_from_config() too, so a
run is rebuilt with the same rules that made it. What differs between models (the builder
keywords a run records, the time argument, the sampler, the test protocol) comes from the
model's spec (tfvid.models.spec.ModelSpec), never from a table here.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os

import tensorflow as tf

from tfvid import models
from tfvid.prep.indexes import read_classes_file
from tfvid.train.precision import dtype_policy_scope

log = logging.getLogger(__name__)

RUN_CONFIG = "run_config.json"
FINAL_WEIGHTS = "final.weights.h5"
TRAINED = "trained"   # num_segments of builder_kwargs / build_model: keep the run's time length
TEST_SEGMENTS = 25    # snippets of the TSN test protocol (docs/tsn.md), when a spec gives none


def model_spec(cfg: dict):
    """The ModelSpec of the run's model; ValueError naming the known models."""
    name = cfg.get("model")
    if name not in models.MODELS:
        raise ValueError(f"run_config model {name!r} is not a known model "
                         f"({sorted(models.MODELS)})")
    return models.get_spec(name)


def read_run_config(model_dir: str) -> dict:
    """model_dir/run_config.json as a dict, checked for 'model' and 'num_classes'.

    FileNotFoundError naming the directory or file when either is missing; ValueError naming
    the file when a key is missing.
    """
    if not model_dir or not os.path.isdir(model_dir):
        raise FileNotFoundError(f"run directory {model_dir!r} does not exist")
    path = os.path.join(model_dir, RUN_CONFIG)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {model_dir!r} is not a training run "
                                "directory written by the train job (run_config.json + "
                                "checkpoints)")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    for key in ("model", "num_classes"):
        if key not in cfg:
            raise ValueError(f"{path} lacks '{key}'")
    return cfg


# ----------------------------------------------------------------------------- the model
def builder_kwargs(cfg: dict, *, num_segments=TRAINED, input_size: int | None = None) -> dict:
    """Keyword arguments of the run's model builder, `weights` excluded.

    run_config 'model_kwargs' first, then each of the spec's recorded_args of run_config that
    is not None (None leaves the builder's default); the run's num_segments (T) goes to the
    spec's time_arg. `num_segments` sets the builder's time length: TRAINED keeps the run's
    value, None makes it variable, an int fixes it. `input_size`, when given, replaces the
    spatial side.
    """
    spec = model_spec(cfg)
    kwargs = spec.builder_kwargs(cfg)
    if num_segments != TRAINED:
        if spec.time_arg is not None:
            kwargs[spec.time_arg] = None if num_segments is None else int(num_segments)
        elif num_segments is not None:
            raise ValueError(f"model {spec.name!r} has no time length argument (num_segments "
                             f"or num_frames) to set to {num_segments}")
    if input_size is not None:
        kwargs["input_size"] = int(input_size)
    return kwargs


def build_model(cfg: dict, *, num_segments=TRAINED, input_size: int | None = None):
    """Rebuilds the run's network with weights=None (restore() loads the trained ones).

    num_segments / input_size as in builder_kwargs: e.g. None for a variable time axis, so that
    a TSN trained on 3 segments runs 25 test snippets (not with the 'weighted' consensus, which
    learns one weight per segment). Input (B, T, S, S, C), output (B, num_classes) logits.
    The model is float32 whatever precision the run trained in (run_config 'precision'): its
    checkpoint variables are float32 under the mixed policies too (tfvid.train.precision).
    """
    kwargs = builder_kwargs(cfg, num_segments=num_segments, input_size=input_size)
    with dtype_policy_scope("float32"):
        return models.build(cfg["model"], int(cfg["num_classes"]), weights=None, **kwargs)


def latest_checkpoint(model_dir: str) -> str:
    """The newest tf.train checkpoint prefix in model_dir, else model_dir/final.weights.h5.

    FileNotFoundError naming the directory when there is neither.
    """
    path = tf.train.latest_checkpoint(model_dir)
    if path is None and os.path.isfile(os.path.join(model_dir, FINAL_WEIGHTS)):
        path = os.path.join(model_dir, FINAL_WEIGHTS)
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {model_dir}: no checkpoint state file of "
                                f"tf.train and no {FINAL_WEIGHTS}")
    return path


def restore(model, model_dir: str, checkpoint: str | None = None) -> str:
    """Loads `checkpoint` (a tf.train prefix or a .weights.h5 file; default: latest_checkpoint)
    into `model` and returns its path. ValueError when it does not match the model."""
    path = checkpoint or latest_checkpoint(model_dir)
    if path.endswith(".weights.h5"):
        model.load_weights(path)
        return path
    try:
        status = tf.train.Checkpoint(model=model).restore(path).expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as err:   # missing objects or incompatible shapes
        raise ValueError(f"checkpoint {path} does not match the model rebuilt from "
                         f"{os.path.join(model_dir, RUN_CONFIG)}: {err}") from None
    return path


# ---------------------------------------------------------------------------- the data
def _training_sampler(cfg: dict):
    """run_config 'sampler' (a config dict or a name), else the model spec's sampler, with
    its fields taken from run_config values (ModelSpec.make_sampler)."""
    return model_spec(cfg).make_sampler(cfg)


def sampler_from_config(cfg: dict, mode: str, num_segments: int | None = None):
    """The run's sampler (tfvid.data.sampling) with its time length set for `mode`.

    In test mode a sampler with test snippets (TSN, StNet) takes `num_segments` of them
    (the spec's test_segments, else TEST_SEGMENTS, when None); otherwise `num_segments`, when given, replaces its num_segments
    or num_frames. ValueError when it does not apply (no time length, 'weighted' consensus).
    """
    sampler = _training_sampler(cfg)
    fields = {f.name for f in dataclasses.fields(sampler)}
    if mode == "test" and "test_segments" in fields:
        k = num_segments
        if k is None:
            k = model_spec(cfg).test_segments or TEST_SEGMENTS
        if cfg.get("consensus") == "weighted" and k != getattr(sampler, "num_segments", k):
            raise ValueError(f"the 'weighted' consensus fixes K={sampler.num_segments}; "
                             f"{k} test segments cannot be used with it")
        return dataclasses.replace(sampler, test_segments=k)
    if num_segments is None or num_segments == sampler.num_steps(mode):
        return sampler
    key = "num_segments" if "num_segments" in fields else "num_frames"
    if key not in fields:
        raise ValueError(f"a time length ({num_segments}) does not apply to the "
                         f"{sampler.name!r} sampler")
    return dataclasses.replace(sampler, **{key: num_segments})


def first_train_file(cfg: dict) -> str | None:
    """The first training file: run_config 'train_files' (resolved by the train job), else the
    first entry of 'train_data' (a path, a glob or a comma-separated list); None if neither."""
    files = cfg.get("train_files")
    if files:
        return str(files[0])
    data = cfg.get("train_data")
    if not data:
        return None
    first = data[0] if isinstance(data, (list, tuple)) else str(data).split(",")[0].strip()
    if any(c in first for c in "*?["):
        matches = sorted(tf.io.gfile.glob(first))
        return matches[0] if matches else None
    return first


def class_names(cfg: dict, model_dir: str, *, data_files=None,
                classes_file: str | None = None) -> list[str]:
    """The run's class names in label order.

    `classes_file` if given, else run_config 'class_names', else the first classes.txt found in
    model_dir, beside data_files[0], beside the first training file; class_<i> (with a warning)
    when there is none. ValueError naming the source when its count is not num_classes.
    """
    num_classes = int(cfg["num_classes"])
    if classes_file:
        names, source = read_classes_file(classes_file), classes_file
    elif cfg.get("class_names"):
        names, source = cfg["class_names"], os.path.join(model_dir, RUN_CONFIG)
    else:
        beside = [f for f in [*(data_files or [])[:1], first_train_file(cfg)] if f]
        folders = [model_dir] + [os.path.dirname(os.path.abspath(f)) for f in beside]
        candidates = list(dict.fromkeys(os.path.join(d, "classes.txt") for d in folders))
        source = next((p for p in candidates if os.path.isfile(p)), None)
        if source is None:
            log.warning("no class names (run_config 'class_names', %s); using class_<i>",
                        ", ".join(candidates))
            return [f"class_{i}" for i in range(num_classes)]
        names = read_classes_file(source)
    if len(names) != num_classes:
        raise ValueError(f"{source} lists {len(names)} classes but the model has {num_classes}")
    return [str(n) for n in names]
