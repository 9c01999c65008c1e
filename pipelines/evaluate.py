"""Evaluate a trained model on TFRecords with the multi-view test protocol.

    python -m pipelines.evaluate --model_dir=runs/tsn_rgb --data=data/ucf101/test-*.tfrecord
    tfvid-evaluate --model_dir=runs/tsn_rgb --data=test.list --num_crops=1 --view_batch=4

Rebuilds the model from model_dir/run_config.json (written by the train job), restores the
latest checkpoint (or model_dir/final.weights.h5), runs TSN's protocol (25 snippets x 10 crops by
default; REFERENCE.md section 2) and writes to --output_dir (default model_dir/eval):
metrics.json, scores.npz (input of the fuse job), confusion.png, confusion.csv, per_class.csv.
"""
from __future__ import annotations

import dataclasses
import glob
import inspect
import json
import os

from absl import app, flags, logging

FLAGS = flags.FLAGS


def _define(kind, name, default, help_text, **kw):
    """Defines a flag unless another job imported in this process already did (shared names)."""
    if name not in FLAGS:
        getattr(flags, f"DEFINE_{kind}")(name=name, default=default, help=help_text, **kw)


_define("string", "model_dir", None, "Training directory with run_config.json and checkpoints.")
_define("string", "data", None, "TFRecord files: comma-separated globs, directories or .list files.")
_define("enum", "mode", "test", "test: --num_segments snippets (25); val: the training sampling.",
        enum_values=["test", "val"])
_define("integer", "num_segments", None, "Snippets per video (default 25 in test mode, the "
        "training value in val mode).")
_define("enum", "num_crops", "10", "Views per snippet: 1 centre, 3, or 10 (corners + centre, "
        "and flips).", enum_values=["1", "3", "10"])
_define("integer", "batch_size", 1, "Videos per batch.")
_define("integer", "view_batch", 10, "At most this many clips (videos x views) per forward pass.")
_define("string", "output_dir", None, "Where results go (default model_dir/eval).")
_define("string", "checkpoint", None, "A checkpoint prefix or .weights.h5 file (default: latest).")
_define("string", "classes", None, "Class names file (one per line); default run_config "
        "'class_names', model_dir/classes.txt or classes.txt beside the data.")

RUN_CONFIG = "run_config.json"
# Keywords of run_config.json that describe the network (passed to the builder if it takes them).
MODEL_KEYS = ("backbone", "modality", "width", "input_size", "num_segments", "new_length",
              "consensus", "dropout", "partial_bn", "top_k", "num_frames", "frames_per_segment",
              "feature_dim", "feature")
# Default sampler per model family when run_config.json does not record one.
DEFAULT_SAMPLER = {"tsn": "tsn", "stnet": "stnet", "din": "uniform", "videomap": "uniform",
                   "dynamic_image_net": "mdi"}


def read_run_config(model_dir: str) -> dict:
    path = os.path.join(model_dir, RUN_CONFIG)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: --model_dir must be a training directory "
                                "written by the train job (run_config.json + checkpoints)")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    for key in ("model", "num_classes"):
        if key not in cfg:
            raise ValueError(f"{path} lacks '{key}'")
    return cfg


def resolve_files(spec: str) -> list[str]:
    """Comma-separated globs or directories (their *.tfrecord* files) -> de-duplicated paths.

    TFRecord shards and raw-frame .list files (tfvid.data.pipeline.read_list_file) are both
    passed on to build_dataset as they are.
    """
    out: list[str] = []
    for part in [p.strip() for p in (spec or "").split(",") if p.strip()]:
        if os.path.isdir(part):
            found = sorted(glob.glob(os.path.join(part, "*.tfrecord*")))
        else:
            found = sorted(glob.glob(part))
        if not found:
            raise FileNotFoundError(f"--data entry {part!r} matches no file")
        out.extend(f for f in found if f not in out)
    if not out:
        raise ValueError("--data is empty: give TFRecord globs, directories or .list files")
    return out


def _accepts(fn, key: str) -> bool:
    params = inspect.signature(fn).parameters
    return key in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def build_model(cfg: dict, variable_time: bool = True):
    """Rebuilds the trained network from run_config.json values (weights=None; restored later).

    With variable_time the time axis is left open (num_segments=None) so that a TSN trained on
    3 segments runs on 25 test snippets; the 'weighted' consensus needs its training K.
    """
    from tfvid import models
    name = cfg["model"]
    builder = models.MODELS.get(name) if hasattr(models, "MODELS") else None
    kwargs = dict(cfg.get("model_kwargs") or {})
    for key in MODEL_KEYS:
        if key in cfg and cfg[key] is not None and (builder is None or _accepts(builder, key)):
            kwargs.setdefault(key, cfg[key])
    if variable_time and "num_segments" in kwargs and cfg.get("consensus") != "weighted":
        kwargs["num_segments"] = None
    return models.build(name, int(cfg["num_classes"]), weights=None, **kwargs)


def restore(model, model_dir: str, checkpoint: str | None = None) -> str:
    """Loads weights: `checkpoint` if given, else the latest tf.train checkpoint in model_dir,
    else model_dir/final.weights.h5. Returns what was loaded."""
    import tensorflow as tf
    path = checkpoint or tf.train.latest_checkpoint(model_dir)
    if path is None and os.path.isfile(os.path.join(model_dir, "final.weights.h5")):
        path = os.path.join(model_dir, "final.weights.h5")
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {model_dir}: expected a tf.train checkpoint "
                                "(a 'checkpoint' state file) or final.weights.h5")
    if path.endswith(".weights.h5"):
        model.load_weights(path)
    else:
        status = tf.train.Checkpoint(model=model).restore(path).expect_partial()
        try:
            status.assert_existing_objects_matched()
        except AssertionError as err:
            raise ValueError(f"checkpoint {path} does not match the model rebuilt from "
                             f"{os.path.join(model_dir, RUN_CONFIG)}: {err}") from None
    return path


def build_sampler(cfg: dict, mode: str, num_segments: int | None):
    """The training sampler (run_config 'sampler': a config dict or a name) with the test length."""
    from tfvid.data import sampling
    spec = cfg.get("sampler")
    if isinstance(spec, dict):
        sampler = sampling.get_sampler(**spec)
    else:
        name = spec or DEFAULT_SAMPLER.get(cfg["model"], "tsn")
        fields = {f.name for f in dataclasses.fields(sampling.SAMPLERS[name])}
        kw = {k: cfg[k] for k in fields if cfg.get(k) is not None}
        if name == "tsn" and "new_length" not in kw:
            from tfvid.models.tsn import DEFAULT_NEW_LENGTH
            kw["new_length"] = DEFAULT_NEW_LENGTH[cfg.get("modality", "rgb")]
        sampler = sampling.get_sampler(name, **kw)
    fields = {f.name for f in dataclasses.fields(sampler)}
    if mode == "test" and "test_segments" in fields:
        k = 25 if num_segments is None else num_segments
        if cfg.get("consensus") == "weighted" and k != getattr(sampler, "num_segments", k):
            raise ValueError(f"the 'weighted' consensus fixes K={sampler.num_segments}; "
                             f"--num_segments={k} cannot be used with it")
        sampler = dataclasses.replace(sampler, test_segments=k)
    elif num_segments is not None:
        key = "num_segments" if "num_segments" in fields else "num_frames"
        if key not in fields:
            raise ValueError(f"--num_segments does not apply to the {sampler.name!r} sampler")
        sampler = dataclasses.replace(sampler, **{key: num_segments})
    return sampler


def find_class_names(cfg: dict, model_dir: str, files: list[str], classes_file: str | None,
                     num_classes: int) -> list[str]:
    from tfvid.data.indexes import read_classes_file
    names = cfg.get("class_names")
    source = "run_config.json"
    if classes_file:
        names, source = read_classes_file(classes_file), classes_file
    elif not names:
        for path in (os.path.join(model_dir, "classes.txt"),
                     os.path.join(os.path.dirname(os.path.abspath(files[0])), "classes.txt")):
            if os.path.isfile(path):
                names, source = read_classes_file(path), path
                break
    if not names:
        return [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{source} lists {len(names)} classes, the model has {num_classes}")
    return [str(n) for n in names]


def evaluate_model_dir(model_dir: str, data: str, *, mode: str = "test",
                       num_segments: int | None = None, num_crops: int = 10,
                       batch_size: int = 1, view_batch: int = 10,
                       output_dir: str | None = None, checkpoint: str | None = None,
                       classes_file: str | None = None, progress: bool = True) -> dict:
    """The whole job as a function; returns the summary written to metrics.json."""
    from tfvid.data import build_dataset
    from tfvid.eval import metrics, plots, protocol

    if not model_dir or not os.path.isdir(model_dir):
        raise FileNotFoundError(f"--model_dir {model_dir!r} is not a directory")
    cfg = read_run_config(model_dir)
    files = resolve_files(data)
    model = build_model(cfg)
    loaded = restore(model, model_dir, checkpoint)
    logging.info("restored %s", loaded)
    sampler = build_sampler(cfg, mode, num_segments)
    dataset = build_dataset(files, sampler=sampler, mode=mode,
                            modality=cfg.get("modality", "rgb"), batch_size=batch_size,
                            input_size=cfg.get("input_size", 224),
                            backbone=cfg.get("backbone", "resnet50"), num_crops=num_crops,
                            repeat=False)
    names = find_class_names(cfg, model_dir, files, classes_file, int(cfg["num_classes"]))
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


def _value(name, default):
    """A flag's value; its default here when unset (another job may define the same name with
    another default, e.g. train's --num_segments=3, when both are imported in one process)."""
    return FLAGS[name].value if FLAGS[name].present else default


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.model_dir or not FLAGS.data:
        raise app.UsageError("--model_dir and --data are required")
    evaluate_model_dir(FLAGS.model_dir, FLAGS.data, mode=_value("mode", "test"),
                       num_segments=_value("num_segments", None),
                       num_crops=int(_value("num_crops", 10)),
                       batch_size=_value("batch_size", 1), view_batch=_value("view_batch", 10),
                       output_dir=_value("output_dir", None),
                       checkpoint=_value("checkpoint", None), classes_file=_value("classes", None))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
