"""The tfvid.json sidecar of a SavedModel exported from a training run (pipelines.export,
pipelines.export_four_stream): class names, the run's model and builder arguments, the test-mode
sampling of the signature's T, how the training videos were decoded, and the preprocessing.

What differs between models (the backbone whose normalisation applies, frames or cached
features) comes from the model's spec (tfvid.models.spec.ModelSpec). A run on cached features
(DIN / VideoMap with --backbone=none) gets "features" {"name", "dimension"} instead of
"preprocessing" and "decoding": its input is (B, T, D) feature rows, not pixels.
"""
from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from tfvid.data import augment, schema
from tfvid.data.pipeline import read_list_file
from tfvid.train import run_dir

DEFAULT_FRAME_SIZE = (340, 256)  # (w, h): TSN stores frames at 340x256


def _prepare_options(first: str) -> dict | None:
    """Options of the prepare_data run that wrote `first` (<split>-manifest.json beside it)."""
    folder = os.path.dirname(os.path.abspath(first))
    if not os.path.isdir(folder):
        return None
    manifests = sorted(f for f in os.listdir(folder) if f.endswith("-manifest.json"))
    base = os.path.basename(first)
    manifests.sort(key=lambda f: not base.startswith(f[:-len("-manifest.json")]))
    for f in manifests:
        try:
            with open(os.path.join(folder, f), encoding="utf-8") as fh:
                return json.load(fh)["options"]
        except (OSError, ValueError, KeyError):
            continue
    return None


def _first_frame_size(list_file: str) -> list[int] | None:
    """[w, h] of the first JPEG of the first video folder of a raw-frames .list file."""
    try:
        dirs = read_list_file(list_file)[0]
        images = sorted(f for f in os.listdir(dirs[0]) if f.lower().endswith((".jpg", ".jpeg")))
        data = tf.io.read_file(os.path.join(dirs[0], images[0]))
        h, w = tf.io.extract_jpeg_shape(data).numpy()[:2]
        return [int(w), int(h)]
    except (OSError, IndexError, ValueError, tf.errors.OpError) as e:
        logging.warning("cannot read a frame listed in %s (%s); assuming %dx%d frames",
                        list_file, e, *DEFAULT_FRAME_SIZE)
        return None


def read_data_context(run_config: dict) -> dict:
    """How the training videos were decoded: {"frame_size": [w, h] | None, "short_side",
    "fps", "flow_method", "flow_bound"}, from the prepare_data manifest beside the first train
    file, else from its first record's context, else TSN's 340x256 (with a warning)."""
    out = {"frame_size": list(DEFAULT_FRAME_SIZE), "short_side": None, "fps": None,
           "flow_method": "tvl1", "flow_bound": 20.0}
    first = run_dir.first_train_file(run_config)
    if not first or not os.path.isfile(first):
        logging.warning("training data %r not found; assuming %dx%d frames", first,
                        *DEFAULT_FRAME_SIZE)
        return out
    options = _prepare_options(first)
    if options:
        out.update(frame_size=options.get("frame_size"), short_side=options.get("short_side"),
                   fps=options.get("fps"))
        if options.get("flow") not in (None, "none"):
            out["flow_method"] = options["flow"]
        if options.get("flow_bound"):
            out["flow_bound"] = float(options["flow_bound"])
        return out
    if first.endswith(".list"):   # raw-frame folders: the size of the first stored frame
        size = _first_frame_size(first)
        if size:
            out["frame_size"] = size
        return out
    for raw in tf.data.TFRecordDataset(first).take(1).as_numpy_iterator():
        ctx = tf.train.SequenceExample.FromString(raw).context.feature
        w, h = ctx[schema.IMAGE_WIDTH].int64_list.value, ctx[schema.IMAGE_HEIGHT].int64_list.value
        if w and h and w[0] > 0 and h[0] > 0:
            out["frame_size"] = [int(w[0]), int(h[0])]
        if ctx[schema.FLOW_METHOD].bytes_list.value:
            out["flow_method"] = ctx[schema.FLOW_METHOD].bytes_list.value[0].decode()
        if ctx[schema.FLOW_BOUND].float_list.value:
            out["flow_bound"] = float(ctx[schema.FLOW_BOUND].float_list.value[0])
    return out


def signature_sampler(run_config: dict, time_steps: int | None) -> dict:
    """Config of the run's test-mode sampler whose T is the signature's (when fixed; 25 test
    snippets when T is variable, as in the TSN test protocol). ValueError if it cannot match."""
    sampler = run_dir.sampler_from_config(run_config, "test", time_steps)
    steps = sampler.num_steps("test")
    if time_steps is not None and steps != time_steps:
        raise ValueError(f"sampler {sampler.config()} gives T={steps} in test mode but the "
                         f"exported signature has T={time_steps}")
    return sampler.config()


def build_sidecar(model, model_dir: str, run_config: dict, kwargs: dict, checkpoint: str,
                  sampling: dict | None = None) -> dict:
    """The tfvid.json sidecar for an export of `model` restored from `model_dir`; `sampling`
    replaces the sampler derived from the signature's T (signature_sampler)."""
    name = run_config["model"]
    spec = run_dir.model_spec(run_config)
    shape = list(model.input_shape)
    time_steps = shape[1]
    common = {
        "class_names": run_dir.class_names(run_config, model_dir),
        "model": {"name": name, "builder_kwargs": kwargs, "model_dir": os.path.abspath(model_dir),
                  "checkpoint": os.path.basename(checkpoint), "run_config": run_config},
        "sampling": sampling or signature_sampler(run_config, time_steps),
        "input_shape": shape,
    }
    if spec.input_kind_of(run_config) == "features":
        return {**common, "features": {"name": run_config.get("feature"),
                                       "dimension": int(shape[-1])}}
    modality = run_config.get("modality", "rgb")
    backbone = spec.normalization_backbone(run_config, kwargs)
    decoding = read_data_context(run_config)
    if modality != "flow":
        decoding.pop("flow_method"), decoding.pop("flow_bound")
    preprocessing = {
        "modality": modality,
        "backbone": backbone,
        "input_size": int(shape[2]),
        "normalization": augment.normalization_config(backbone, modality),
        "mode": "test",
    }
    return {**common, "decoding": decoding, "preprocessing": preprocessing}
