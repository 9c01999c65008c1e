"""Exports a trained model as a SavedModel in the TF Serving layout.

    python -m pipelines.export --model_dir=runs/tsn_rgb --export_base=saved_models

Rebuilds the model from <model_dir>/run_config.json, restores the latest checkpoint and writes
<export_base>/<name>/<version>/ with a `serving_default` signature (float32 clip
(None, T, S, S, C) in the evaluation layout -> logits, probabilities), a tfvid.json sidecar
(class names, model, sampling and preprocessing config) and TF Serving warmup requests.
The signature takes one view per row: clients batch crops themselves and average the logits
(pipelines.predict does this).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os

from absl import app, flags

FLAGS = flags.FLAGS
DEFAULT_FRAME_SIZE = (340, 256)  # (w, h): TSN stores frames at 340x256
# Default sampler per model family when run_config.json records none (as pipelines.evaluate).
DEFAULT_SAMPLER = {"tsn": "tsn", "stnet": "stnet", "din": "uniform", "videomap": "uniform",
                   "dynamic_image_net": "mdi"}


def _define(kind, name, default, help_text, **kw):
    """Defines a flag unless another job imported in this process already did (shared names)."""
    if name not in FLAGS:
        getattr(flags, f"DEFINE_{kind}")(name=name, default=default, help=help_text, **kw)


_define("string", "model_dir", None, "Training directory with run_config.json and checkpoints.")
_define("string", "name", None, "Model name under --export_base (default: basename of "
        "--model_dir).")
_define("string", "export_base", "saved_models", "Root of the TF Serving model base paths.")
_define("integer", "version", 0, "Integer version to write; 0 = next after the existing ones. "
        "Existing versions are never overwritten.")
_define("integer", "num_segments", None, "Time length T of the exported signature. Default: "
        "the training value; 0 = variable T (models that allow it).")
_define("integer", "input_size", None, "Spatial side S of the exported signature (default: the "
        "training value).")
_define("bool", "warmup", True, "Write TF Serving warmup requests "
        "(assets.extra/tf_serving_warmup_requests).")


# ----------------------------------------------------------------------- run directory
def load_run_config(model_dir: str) -> dict:
    """The run_config.json of a training run (FileNotFoundError naming the dir if absent)."""
    path = os.path.join(model_dir, "run_config.json")
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"--model_dir {model_dir!r} does not exist")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--model_dir {model_dir!r} has no run_config.json (not a tfvid "
                                f"training run?)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _builder_kwargs(model_name: str, run_config: dict, time_length, input_size) -> dict:
    """Keyword arguments of the model builder taken from run_config, with overrides."""
    from tfvid import models

    if model_name not in models.MODELS:
        raise ValueError(f"run_config model {model_name!r} is not a known model "
                         f"({sorted(models.MODELS)})")
    params = inspect.signature(models.MODELS[model_name]).parameters
    kwargs = dict(run_config.get("model_kwargs") or {})
    for key, value in run_config.items():
        if key in params and key not in ("num_classes", "weights"):
            kwargs.setdefault(key, value)
    kwargs.pop("weights", None)
    time_key = next((k for k in ("num_segments", "num_frames") if k in params), None)
    if time_length is not None:
        if time_key is None:
            raise ValueError(f"model {model_name!r} has no time length argument; "
                             f"drop --num_segments")
        kwargs[time_key] = None if time_length == 0 else int(time_length)
    if input_size is not None:
        kwargs["input_size"] = int(input_size)
    return kwargs


def _builder_default(model_name: str, key: str):
    from tfvid import models

    param = inspect.signature(models.MODELS[model_name]).parameters.get(key)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def restore_model(model_dir: str, run_config: dict, *, time_length=None, input_size=None):
    """Builds the run's model (optionally another T / S) and restores its latest checkpoint.

    Returns (model, builder kwargs, checkpoint path).
    """
    import tensorflow as tf
    from tfvid import models

    name = run_config.get("model")
    if not name:
        raise ValueError(f"{model_dir}/run_config.json has no 'model' entry")
    if "num_classes" not in run_config:
        raise ValueError(f"{model_dir}/run_config.json has no 'num_classes' entry")
    ckpt = tf.train.latest_checkpoint(model_dir)
    if ckpt is None and os.path.isfile(os.path.join(model_dir, "final.weights.h5")):
        ckpt = os.path.join(model_dir, "final.weights.h5")
    if ckpt is None:
        raise FileNotFoundError(f"--model_dir {model_dir!r} holds no checkpoint (no tf.train "
                                f"'checkpoint' state file, no final.weights.h5)")
    kwargs = _builder_kwargs(name, run_config, time_length, input_size)
    model = models.build(name, int(run_config["num_classes"]), weights=None, **kwargs)
    if ckpt.endswith(".weights.h5"):
        model.load_weights(ckpt)
        return model, kwargs, ckpt
    status = tf.train.Checkpoint(model=model).restore(ckpt).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(f"checkpoint {ckpt} does not match the model rebuilt from "
                         f"{model_dir}/run_config.json: {e}") from None
    return model, kwargs, ckpt


def _first_train_file(run_config: dict) -> str | None:
    """The first training file: run_config 'train_files' (resolved by the train job), else the
    first entry of 'train_data' (a path, a glob or a comma-separated list)."""
    files = run_config.get("train_files")
    if files:
        return str(files[0])
    data = run_config.get("train_data")
    if not data:
        return None
    first = data[0] if isinstance(data, (list, tuple)) else str(data).split(",")[0].strip()
    if any(c in first for c in "*?["):
        import tensorflow as tf
        matches = sorted(tf.io.gfile.glob(first))
        return matches[0] if matches else None
    return first


def read_class_names(run_config: dict, model_dir: str, num_classes: int) -> list[str]:
    """Class names: run_config 'class_names', else model_dir/classes.txt, else classes.txt in the
    data dir (folder of the first train file); class_<i> with a warning when none is found."""
    from tfvid.data.indexes import read_classes_file

    names, source = run_config.get("class_names"), f"{model_dir}/run_config.json"
    if not names:
        first = _first_train_file(run_config)
        candidates = [os.path.join(model_dir, "classes.txt")]
        if first:
            candidates.append(os.path.join(os.path.dirname(os.path.abspath(first)), "classes.txt"))
        for path in candidates:
            if os.path.isfile(path):
                names, source = read_classes_file(path), path
                break
        else:
            logging.warning("no class names found (%s); using class_<i>", ", ".join(candidates))
            return [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{source} lists {len(names)} classes but the model has {num_classes}")
    return [str(n) for n in names]


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
    import tensorflow as tf
    from tfvid.data.pipeline import read_list_file

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
    import tensorflow as tf
    from tfvid.data import schema

    out = {"frame_size": list(DEFAULT_FRAME_SIZE), "short_side": None, "fps": None,
           "flow_method": "tvl1", "flow_bound": 20.0}
    first = _first_train_file(run_config)
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


def sampler_config(model_name: str, run_config: dict, time_steps) -> dict:
    """Test-mode sampler description whose T equals the exported time length (when fixed).

    The training sampler is run_config 'sampler' (a config dict or a name) or the model family's
    default (DEFAULT_SAMPLER) built from run_config values; its test length is then set to the
    signature's T (25 test snippets when T is variable, as in the TSN test protocol).
    """
    from tfvid.data import sampling

    spec = run_config.get("sampler")
    if isinstance(spec, dict):
        sampler = sampling.get_sampler(**spec)
    else:
        name = spec or DEFAULT_SAMPLER.get(model_name, "tsn")
        fields = {f.name for f in dataclasses.fields(sampling.SAMPLERS[name])}
        kw = {k: run_config[k] for k in fields if run_config.get(k) is not None}
        if name == "tsn" and "new_length" not in kw:
            from tfvid.models.tsn import DEFAULT_NEW_LENGTH
            kw["new_length"] = DEFAULT_NEW_LENGTH[run_config.get("modality", "rgb")]
        sampler = sampling.get_sampler(name, **kw)
    fields = {f.name for f in dataclasses.fields(sampler)}
    if "test_segments" in fields:
        sampler = dataclasses.replace(sampler, test_segments=time_steps or 25)
    elif time_steps is not None and "num_frames" in fields:
        sampler = dataclasses.replace(sampler, num_frames=time_steps)
    steps = sampler.num_steps("test")
    if time_steps is not None and steps != time_steps:
        raise ValueError(f"sampler {sampler.config()} gives T={steps} in test mode but the "
                         f"exported signature has T={time_steps}")
    return sampler.config()


def build_sidecar(model, model_dir: str, run_config: dict, kwargs: dict, checkpoint: str) -> dict:
    """The tfvid.json sidecar for an export of `model` restored from `model_dir`."""
    from tfvid.data import augment

    name = run_config["model"]
    shape = list(model.input_shape)
    time_steps = shape[1]
    modality = run_config.get("modality", "rgb")
    backbone = kwargs.get("backbone") or _builder_default(name, "backbone") or "resnet50"
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
    return {
        "class_names": read_class_names(run_config, model_dir, int(run_config["num_classes"])),
        "model": {"name": name, "builder_kwargs": kwargs, "model_dir": os.path.abspath(model_dir),
                  "checkpoint": os.path.basename(checkpoint), "run_config": run_config},
        "sampling": sampler_config(name, run_config, time_steps),
        "decoding": decoding,
        "preprocessing": preprocessing,
        "input_shape": shape,
    }


# ------------------------------------------------------------------------------ job
def export(model_dir: str, *, name: str | None = None, export_base: str = "saved_models",
           version: int | None = None, num_segments: int | None = None,
           input_size: int | None = None, warmup: bool = True) -> str:
    """Restores the run in `model_dir` and exports it; returns the version directory."""
    from tfvid.export import export_saved_model

    model_dir = os.path.normpath(model_dir)
    run_config = load_run_config(model_dir)
    model, kwargs, ckpt = restore_model(model_dir, run_config, time_length=num_segments,
                                        input_size=input_size)
    sidecar = build_sidecar(model, model_dir, run_config, kwargs, ckpt)
    name = name or os.path.basename(os.path.abspath(model_dir))
    return export_saved_model(model, export_base, name, version=version or None,
                              clip_shape=model.input_shape[1:], sidecar=sidecar, warmup=warmup)


def describe(path: str) -> str:
    """Signature inputs/outputs of an export and curl / docker examples for TF Serving REST."""
    from tfvid.export import load_export

    serving, sidecar = load_export(path)
    sig = serving.signature
    lines = [f"exported: {path}", "signature 'serving_default':"]
    for key, spec in sig.structured_input_signature[1].items():
        lines.append(f"  input  {key}: {spec.dtype.name} {spec.shape.as_list()}")
    for key, spec in sig.structured_outputs.items():
        lines.append(f"  output {key}: {spec.dtype.name} {spec.shape.as_list()}")
    name = sidecar["name"]
    base = os.path.abspath(os.path.dirname(path))
    _, t, s, _, c = (list(sidecar["input_shape"]) + [None] * 5)[:5]
    t = 8 if t is None else t
    lines += [
        "serve with TF Serving:",
        f"  docker run -p 8501:8501 -v {base}:/models/{name} -e MODEL_NAME={name} "
        f"tensorflow/serving",
        f"  curl -X POST http://localhost:8501/v1/models/{name}:predict \\",
        "       -d '{\"signature_name\": \"serving_default\", \"inputs\": {\"clip\": CLIPS}}'",
        f"  (CLIPS: nested lists of shape [views, {t}, {s}, {s}, {c}], preprocessed as in "
        f"assets.extra/tfvid.json; or: python -m pipelines.predict --export_dir={path} "
        f"--video=VIDEO)",
    ]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required")
    try:
        path = export(FLAGS.model_dir, name=FLAGS.name, export_base=FLAGS.export_base,
                      version=FLAGS.version, num_segments=FLAGS.num_segments,
                      input_size=FLAGS.input_size, warmup=FLAGS.warmup)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise SystemExit(f"export failed: {e}") from e
    print(describe(path))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
