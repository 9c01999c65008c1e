"""SavedModel export in the TF Serving layout, with a JSON sidecar and warmup requests.

Layout written by :func:`export_saved_model`::

    <export_base>/<name>/<version>/          integer version, as TF Serving expects
        saved_model.pb, variables/, fingerprint.pb
        assets.extra/tfvid.json             sidecar: class names, model / sampling /
                                            preprocessing config, input shape
        assets.extra/tf_serving_warmup_requests
                                            TFRecord of PredictionLog (zero clips)

The model is written with ``keras.export.ExportArchive`` (what ``model.export()`` uses), never
``tf.saved_model.save(keras_model)``: a SavedModel from the latter converts to a TFLite model
that silently outputs NaN (see DESIGN.md, known traps).

Signature ``serving_default``: input ``clip`` float32 (None, T, S, S, C) in the evaluation
layout (frames sampled, cropped and normalised exactly as at evaluation; T may be None for
variable-time models); outputs ``logits`` and ``probabilities`` = softmax(logits), both
float32 (None, num_classes). One view per row: clients batch multi-crop views themselves and
average the logits.

Several named inputs (e.g. the four-stream dynamic image network's ``rgb`` and ``flow``
windows): pass ``input_shapes={"rgb": (T, S, S, C1), "flow": (T, S, S, C2)}`` instead of
``clip_shape``; the model then takes a dict of those names and the signature has one input
per name (the warmup requests and the sidecar list them all).
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import tempfile
import warnings
from typing import Any, Sequence

import tensorflow as tf

log = logging.getLogger(__name__)

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "clip"
OUTPUT_NAMES = ("logits", "probabilities")
SIDECAR_FILE = "tfvid.json"
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
SIDECAR_FORMAT = 1
#: Batch sizes of the warmup requests (one request each). TF Serving replays them at load time.
WARMUP_BATCH_SIZES = (1, 1, 2, 2, 4)
#: Time length used in warmup requests when the signature's T is variable.
WARMUP_VARIABLE_TIME = 8


def _clip_spec(clip_shape: Sequence[int | None], name: str = INPUT_NAME) -> tf.TensorSpec:
    """TensorSpec (None, T, S, S, C) named `name` from clip_shape (T, S, S, C) or
    (None, T, S, S, C)."""
    shape = list(clip_shape)
    if len(shape) == 5:
        if shape[0] is not None:
            raise ValueError(f"clip_shape {tuple(clip_shape)}: the batch dimension must be None "
                             f"(or give the 4 dimensions (T, S, S, C))")
        shape = shape[1:]
    if len(shape) != 4:
        raise ValueError(f"clip_shape must be (T, S, S, C) (T may be None), got {tuple(clip_shape)}")
    t, h, w, c = shape
    if any(d is None for d in (h, w, c)):
        raise ValueError(f"clip_shape {tuple(clip_shape)}: only the time dimension may be None")
    t = None if t in (None, 0) else int(t)
    return tf.TensorSpec([None, t, int(h), int(w), int(c)], tf.float32, name=name)


def input_specs(clip_shape=None, input_shapes=None) -> dict[str, tf.TensorSpec]:
    """{input name: TensorSpec (None, T, S, S, C)}: {"clip": ...} from `clip_shape`, or one
    spec per entry of `input_shapes` {name: (T, S, S, C)}. Exactly one of them is given."""
    if (clip_shape is None) == (input_shapes is None):
        raise ValueError("give exactly one of clip_shape (one 'clip' input) and input_shapes "
                         "({name: (T, S, S, C)} for several named inputs)")
    if clip_shape is not None:
        return {INPUT_NAME: _clip_spec(clip_shape)}
    if not input_shapes:
        raise ValueError("input_shapes is empty")
    specs = {}
    for key, shape in input_shapes.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"input name {key!r} must be a Python identifier (a signature "
                             f"argument name)")
        specs[key] = _clip_spec(shape, name=key)
    return specs


def _existing_versions(model_base: str) -> list[int]:
    if not os.path.isdir(model_base):
        return []
    return sorted(int(d) for d in os.listdir(model_base)
                  if d.isdigit() and os.path.isdir(os.path.join(model_base, d)))


def next_version(export_base: str, name: str) -> int:
    """1 + the largest integer version under export_base/name (1 when there is none)."""
    versions = _existing_versions(os.path.join(export_base, name))
    return versions[-1] + 1 if versions else 1


def resolve_export_dir(path: str) -> str:
    """A version dir for `path`: itself if it holds saved_model.pb, else its newest version."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"export dir {path!r} does not exist")
    for v in reversed(_existing_versions(path)):
        candidate = os.path.join(path, str(v))
        if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise FileNotFoundError(f"{path!r} is neither a SavedModel (no saved_model.pb) nor a model "
                            f"dir with integer version subdirs holding one")


def _serving_fn(model, named_inputs: bool = False):
    """serve(clip) -> {"logits", "probabilities"}; serve(inputs: dict) with named_inputs."""
    def outputs(x):
        logits = tf.cast(model(x, training=False), tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    if named_inputs:
        def serve_named(inputs):
            return outputs(inputs)
        return serve_named

    def serve(clip):
        return outputs(clip)
    return serve


def write_warmup_requests(path: str, model_name: str, spec,
                          batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES) -> int:
    """Writes TF Serving warmup requests (zero clips) to `path`; returns how many.

    spec: the TensorSpec of the "clip" input, or a dict {input name: TensorSpec} (one zero
    tensor per input in every request). Each record is a PredictionLog with a PredictRequest
    on SIGNATURE_NAME. The tensors are
    stored compactly (one float value repeated over the shape, as TensorProto allows), so the
    file stays a few hundred bytes whatever the clip size. Raises ImportError without
    tensorflow-serving-api.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    specs = spec if isinstance(spec, dict) else {INPUT_NAME: spec}
    with tf.io.TFRecordWriter(path) as writer:
        for b in batch_sizes:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE_NAME))
            for key, one in specs.items():
                _, t, h, w, c = one.shape.as_list()
                t = WARMUP_VARIABLE_TIME if t is None else t
                request.inputs[key].CopyFrom(
                    tf.make_tensor_proto(0.0, dtype=tf.float32, shape=[int(b), t, h, w, c]))
            record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(record.SerializeToString())
    return len(batch_sizes)


def export_saved_model(model, export_base: str, name: str, *, version: int | None = None,
                       clip_shape: Sequence[int | None] | None = None,
                       input_shapes: dict[str, Sequence[int | None]] | None = None,
                       sidecar: dict[str, Any], warmup: bool = True) -> str:
    """Exports a Keras clip classifier to export_base/name/<version>/ and returns that path.

    Args:
      model: keras.Model mapping float32 (B, T, S, S, C) to logits (B, num_classes) (with
        `input_shapes`: mapping a dict {name: (B, T, S, S, C)} to logits).
      export_base: root of the TF Serving model base paths (e.g. "saved_models").
      name: model name (TF Serving's model name, the folder under export_base).
      version: integer version > 0; None (or 0) picks 1 + the newest existing version. An
        existing version is never overwritten (FileExistsError).
      clip_shape: (T, S, S, C) of one clip (T None = variable time): input "clip".
      input_shapes: instead of clip_shape, {input name: (T, S, S, C)} for several inputs.
      sidecar: JSON-serialisable dict (class_names, model / sampling / preprocessing config...)
        written to assets.extra/tfvid.json with the signature description added under
        "signature".
      warmup: write assets.extra/tf_serving_warmup_requests (skipped with a warning when
        tensorflow-serving-api is not installed).

    The SavedModel is first written to a hidden temporary folder beside the version folders
    (TF Serving ignores non-integer names) and renamed into place when complete.
    """
    import keras

    specs = input_specs(clip_shape, input_shapes)
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"invalid export name {name!r}")
    if version is not None and int(version) < 0:
        raise ValueError(f"version must be a positive integer (or None/0 for next), got {version}")
    model_base = os.path.join(os.fspath(export_base), name)
    version = int(version) if version else next_version(export_base, name)
    final = os.path.join(model_base, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"export version {final!r} already exists; choose another "
                              f"--version or 0 for the next one")

    num_classes = int(model.output_shape[-1])
    full_sidecar = dict(sidecar)
    full_sidecar.setdefault("class_names", None)
    names = full_sidecar["class_names"]
    if names is not None and len(names) != num_classes:
        raise ValueError(f"sidecar has {len(names)} class names but the model outputs "
                         f"{num_classes} classes")
    full_sidecar.update({
        "format": SIDECAR_FORMAT,
        "name": name,
        "version": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "num_classes": num_classes,
        "signature": {
            "name": SIGNATURE_NAME,
            "inputs": {k: {"dtype": "float32", "shape": v.shape.as_list()}
                       for k, v in specs.items()},
            "outputs": {k: {"dtype": "float32", "shape": [None, num_classes]}
                        for k in OUTPUT_NAMES},
        },
    })
    sidecar_text = json.dumps(full_sidecar, indent=2, sort_keys=True)  # fail before writing

    os.makedirs(model_base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_base)
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        named = input_shapes is not None
        archive.add_endpoint(SIGNATURE_NAME, _serving_fn(model, named),
                             input_signature=[specs if named else specs[INPUT_NAME]])
        archive.write_out(tmp, verbose=False)
        extra = os.path.join(tmp, ASSETS_EXTRA)
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, SIDECAR_FILE), "w", encoding="utf-8") as f:
            f.write(sidecar_text + "\n")
        if warmup:
            try:
                write_warmup_requests(os.path.join(extra, WARMUP_FILE), name, specs)
            except ImportError:
                warnings.warn("tensorflow-serving-api is not installed: no TF Serving warmup "
                              "requests written (pip install tensorflow-serving-api)")
        if os.path.exists(final):  # appeared while we were writing
            raise FileExistsError(f"export version {final!r} was created concurrently")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s", final)
    return final


class LoadedExport:
    """A loaded export: call with a clip batch (B, T, S, S, C) -> {"logits", "probabilities"}
    (several named inputs: ``loaded(rgb=..., flow=...)`` or ``loaded({"rgb": ..., ...})``).

    Keeps a reference to the loaded SavedModel object (the signature's variables live as long
    as it does).
    """

    def __init__(self, path: str):
        self.path = path
        self.saved_model = tf.saved_model.load(path)
        if SIGNATURE_NAME not in self.saved_model.signatures:
            raise ValueError(f"{path}: no {SIGNATURE_NAME!r} signature (found "
                             f"{sorted(self.saved_model.signatures)})")
        self.signature = self.saved_model.signatures[SIGNATURE_NAME]

    @property
    def input_specs(self) -> dict[str, tf.TensorSpec]:
        """{input name: TensorSpec} of the signature."""
        return dict(self.signature.structured_input_signature[1])

    @property
    def input_spec(self) -> tf.TensorSpec:
        return self.signature.structured_input_signature[1][INPUT_NAME]

    def __call__(self, clip=None, **inputs) -> dict[str, tf.Tensor]:
        if isinstance(clip, dict):
            inputs = {**clip, **inputs}
        elif clip is not None:
            inputs[INPUT_NAME] = clip
        return self.signature(**{k: tf.convert_to_tensor(v, tf.float32)
                                 for k, v in inputs.items()})


def read_sidecar(path: str) -> dict[str, Any]:
    """The tfvid.json sidecar of an export version dir (or model dir: newest version)."""
    path = resolve_export_dir(path)
    file = os.path.join(path, ASSETS_EXTRA, SIDECAR_FILE)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{path}: no sidecar {ASSETS_EXTRA}/{SIDECAR_FILE} (not a tfvid "
                                f"export?)")
    with open(file, encoding="utf-8") as f:
        return json.load(f)


def load_export(path: str) -> tuple[LoadedExport, dict[str, Any]]:
    """Loads an export (version dir, or model dir = newest version) -> (serving fn, sidecar)."""
    path = resolve_export_dir(path)
    return LoadedExport(path), read_sidecar(path)


def read_warmup_requests(path: str) -> list:
    """Parses an export's warmup file into PredictionLog protos (needs tensorflow-serving-api)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = resolve_export_dir(path) if os.path.isdir(path) else path
    if os.path.isdir(path):
        path = os.path.join(path, ASSETS_EXTRA, WARMUP_FILE)
    logs = []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        logs.append(prediction_log_pb2.PredictionLog.FromString(raw))
    return logs

