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
that silently outputs NaN (see docs/architecture.md, known traps).

Signatures: with a ``protocol`` (pipelines.export and export_four_stream pass one)
``serving_default`` takes uint8 frames, ``encoded_frames`` JPEG/PNG strings,
``sequence_example`` tfvid records, all running the test protocol in the graph
(tfvid.export.signatures), and ``clip`` the float32 clips below; without one,
``serving_default`` and ``clip`` are both the float32 clip signature. Every signature also
returns ``top_k_indices`` int32 (B, k) and ``top_k_classes`` string (B, k), k = min(5, K);
warmup requests cover every signature.

Signature ``clip``: input ``clip`` float32 (None, T, S, S, C) in the evaluation
layout (frames sampled, cropped and normalised exactly as at evaluation; T may be None for
variable-time models); outputs ``logits`` and ``probabilities`` = softmax(logits), both
float32 (None, num_classes). One view per row: clients batch multi-crop views themselves and
average the logits.

The signature checks its input in the graph (a model would otherwise reshape a clip of the
wrong size into a wrong number of rows): rank 5, the exported S, S, C, the exported T when it
is fixed (T >= 1 when variable), and finite values. A request that breaks a rule fails with
InvalidArgumentError "input clip must be a float32 tensor of shape (B, 3, 224, 224, 3) ...;
got shape] [2 3 256 256 3]" (or "input clip has non-finite values (Inf or NaN)"). An empty
batch (B = 0) returns empty (0, num_classes) outputs.

The sidecar is read and checked by :func:`read_sidecar` (one reader for predict,
convert_tflite and the export jobs): a missing field or one that contradicts the signature
raises :class:`SidecarError` (a ValueError) naming the file and the field.

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

from tfvid.atomic import public_mode

log = logging.getLogger(__name__)

SIGNATURE_NAME = "serving_default"
#: The float32 clip signature (every export has it; TFLite conversion and predict use it).
CLIP_SIGNATURE = "clip"
INPUT_NAME = "clip"
#: The float outputs every signature has (plus top_k_indices and top_k_classes, see
#: tfvid.export.signatures.OUTPUTS).
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


def shape_text(spec: tf.TensorSpec) -> str:
    """'(B, 3, 224, 224, 3)' (fixed T) or '(B, T, 224, 224, 3)' (variable T) of a clip spec."""
    _, t, h, w, c = spec.shape.as_list()
    return f"(B, {'T' if t is None else t}, {h}, {w}, {c})"


def _check_shape(x: tf.Tensor, spec: tf.TensorSpec, key: str) -> tf.Operation:
    """In-graph assert: `x` has rank 5 and the spec's fixed dims (T >= 1 when T is variable).

    The runtime shape is padded with -1 (no real dim) to 6 entries, so one comparison checks
    the rank as well (a rank-4 or rank-6 tensor cannot pass) without Rank/Size ops that
    TensorFlow folds from the placeholder's static shape.
    """
    _, t, h, w, c = spec.shape.as_list()
    shape = tf.shape(x)
    padded = tf.concat([shape, tf.fill([6], -1)], axis=0)[:6]
    ok = tf.reduce_all(tf.equal(padded[2:], tf.constant([h, w, c, -1])))
    if t is None:
        ok = tf.logical_and(ok, padded[1] >= 1)
        rule = "B >= 0 clips of T >= 1 time steps"
    else:
        ok = tf.logical_and(ok, tf.equal(padded[1], t))
        rule = f"B >= 0 clips of {t} time steps"
    # no quotes: the Assert op prints its strings with quotes escaped
    message = (f"input {key} must be a float32 tensor of shape {shape_text(spec)} ({rule}, "
               f"{h}x{w} pixels, {c} channels); got shape")
    return tf.debugging.Assert(ok, [message, shape], summarize=8, name=f"check_{key}_shape")


def _checked_inputs(inputs: dict, specs: dict) -> dict:
    """The inputs behind in-graph checks: shapes (`_check_shape`), one batch size for all
    inputs, finite values (tf.debugging.assert_all_finite)."""
    checks = [_check_shape(inputs[k], specs[k], k) for k in specs]
    if len(specs) > 1:
        with tf.control_dependencies(checks):
            batches = tf.stack([tf.shape(inputs[k])[0] for k in specs])
            checks.append(tf.debugging.Assert(
                tf.reduce_all(tf.equal(batches, batches[0])),
                [f"inputs {' and '.join(specs)} must hold the same number of "
                 f"clips B; got batch sizes", batches], name="check_batch_sizes"))
    out = {}
    with tf.control_dependencies(checks):
        for k in specs:
            out[k] = tf.debugging.assert_all_finite(
                inputs[k], f"input {k} has non-finite values (Inf or NaN); clips must be "
                           f"finite")
    return out


def _serving_fn(model, specs: dict, named_inputs: bool = False, class_names=None):
    """serve(clip) -> {"logits", "probabilities", "top_k_indices", "top_k_classes"};
    serve(inputs: dict) with named_inputs.

    Inputs are checked in the graph (`_checked_inputs`); an empty batch skips the model and
    returns (0, num_classes) outputs (and (0, k) top-k)."""
    from tfvid.export import signatures as sigs

    num_classes = int(model.output_shape[-1])
    names = sigs.class_names_or_default(class_names, num_classes)

    def outputs(x):
        x = _checked_inputs(x, specs)
        first = x[next(iter(specs))]

        def run():
            return tf.cast(model(x if named_inputs else x[INPUT_NAME], training=False),
                           tf.float32)

        def empty():
            return tf.zeros([0, num_classes], tf.float32)

        logits = tf.cond(tf.shape(first)[0] > 0, run, empty)
        return sigs.outputs_of(tf.ensure_shape(logits, [None, num_classes]), names)

    if named_inputs:
        def serve_named(inputs):
            return outputs(dict(inputs))
        return serve_named

    def serve(clip):
        return outputs({INPUT_NAME: clip})
    return serve


def write_warmup_requests(path: str, model_name: str, spec,
                          batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES, *,
                          signature_name: str = SIGNATURE_NAME, protocol=None,
                          protocol_signatures: Sequence[str] = ()) -> int:
    """Writes TF Serving warmup requests to `path`; returns how many.

    spec: the TensorSpec of the "clip" input, or a dict {input name: TensorSpec} (one zero
    tensor per input in every request), for the signature `signature_name` (one request per
    entry of `batch_sizes`). With `protocol` (tfvid.export.signatures.Protocol) also requests
    for each of `protocol_signatures` (serving_default: black uint8 frames; encoded_frames:
    black JPEGs; sequence_example: a record of black frames), batch sizes
    signatures.WARMUP_PROTOCOL_BATCHES. Each record is a PredictionLog with a PredictRequest.
    Tensors are stored compactly (one value repeated over the shape, as TensorProto allows),
    so the file stays small whatever the clip size. Raises ImportError without
    tensorflow-serving-api.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    from tfvid.export import signatures as sigs

    specs = spec if isinstance(spec, dict) else {INPUT_NAME: spec}
    requests = []
    for b in batch_sizes:
        inputs = {}
        for key, one in specs.items():
            _, t, h, w, c = one.shape.as_list()
            t = WARMUP_VARIABLE_TIME if t is None else t
            inputs[key] = tf.make_tensor_proto(0.0, dtype=tf.float32, shape=[int(b), t, h, w, c])
        requests.append((signature_name, inputs))
    for name in protocol_signatures if protocol is not None else ():
        for b in sigs.WARMUP_PROTOCOL_BATCHES:
            requests.append((name, sigs.warmup_inputs(protocol, name, int(b))))
    if len(requests) > MAX_WARMUP_REQUESTS:
        raise ValueError(f"{len(requests)} warmup requests; TF Serving replays at most "
                         f"{MAX_WARMUP_REQUESTS}")
    with tf.io.TFRecordWriter(path) as writer:
        for name, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=name))
            for key, proto in inputs.items():
                request.inputs[key].CopyFrom(proto)
            record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(record.SerializeToString())
    return len(requests)


#: TF Serving reads at most this many warmup records.
MAX_WARMUP_REQUESTS = 1000


def export_saved_model(model, export_base: str, name: str, *, version: int | None = None,
                       clip_shape: Sequence[int | None] | None = None,
                       input_shapes: dict[str, Sequence[int | None]] | None = None,
                       sidecar: dict[str, Any], warmup: bool = True, protocol=None,
                       protocol_model=None) -> str:
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
        written to assets.extra/tfvid.json with the signature descriptions added under
        "signature" (the float32 clip signature), "signatures" (all) and "serving".
      warmup: write assets.extra/tf_serving_warmup_requests (skipped with a warning when
        tensorflow-serving-api is not installed).
      protocol: a tfvid.export.signatures.Protocol: adds the signatures that run the test
        protocol in the graph (serving_default: uint8 frames, encoded_frames, sequence_example;
        see tfvid.export.signatures) beside "clip". Without it, serving_default and "clip" are
        both the float32 clip signature.
      protocol_model: the model those signatures run (default `model`; e.g. the variable-T
        model of the evaluate job, sharing `model`'s variables or holding its own).

    The SavedModel is first written to a hidden temporary folder beside the version folders
    (TF Serving ignores non-integer names) and renamed into place when complete.
    """
    import keras

    from tfvid.export import signatures as sigs

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
    names = sigs.class_names_or_default(sidecar.get("class_names"), num_classes)
    clip_name = CLIP_SIGNATURE if protocol is not None else SIGNATURE_NAME
    endpoints = []         # (signature name, fn, input_signature, specs for the sidecar)
    named = input_shapes is not None
    clip_fn = _serving_fn(model, specs, named, names)
    clip_sig = [specs if named else specs[INPUT_NAME]]
    if protocol is not None:
        runner = protocol_model if protocol_model is not None else model
        for sig_name, encoded in ((sigs.FRAMES_SIGNATURE, False),
                                  (sigs.ENCODED_SIGNATURE, True)):
            fspecs = sigs.frames_specs(protocol, encoded=encoded)
            endpoints.append((sig_name, _dict_fn(sigs.frames_fn(runner, protocol, names,
                                                                encoded=encoded)),
                              [fspecs], fspecs))
        endpoints.append((sigs.RECORD_SIGNATURE, sigs.records_fn(runner, protocol, names),
                          [sigs.RECORDS_SPEC], {sigs.RECORDS_INPUT: sigs.RECORDS_SPEC}))
        endpoints.append((CLIP_SIGNATURE, clip_fn, clip_sig, specs))
    else:
        endpoints.append((SIGNATURE_NAME, clip_fn, clip_sig, specs))
        endpoints.append((CLIP_SIGNATURE, _serving_fn(model, specs, named, names), clip_sig,
                          specs))

    full_sidecar = dict(sidecar)
    full_sidecar.setdefault("class_names", None)
    full_sidecar.update({
        "format": SIDECAR_FORMAT,
        "name": name,
        "version": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "num_classes": num_classes,
        "signature": _signature_description(specs, num_classes, clip_name),
        "signatures": {n: sigs.signature_description(sp, num_classes)
                       for n, _, _, sp in endpoints},
        "top_k": sigs.top_k(num_classes),
    })
    if protocol is not None:
        full_sidecar["serving"] = protocol.describe()
    sidecar_text = json.dumps(full_sidecar, indent=2, sort_keys=True)  # fail before writing
    # the reader's checks, before anything is written (class names vs the model's classes,
    # input_shape / sampling / preprocessing vs the signature), on the JSON as stored
    validate_sidecar(json.loads(sidecar_text), f"sidecar of export {final}",
                     inputs={k: v.shape.as_list() for k, v in specs.items()},
                     num_classes=num_classes)

    os.makedirs(model_base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_base)
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        if protocol_model is not None and protocol_model is not model:
            archive.track(protocol_model)
        for sig_name, fn, input_signature, _ in endpoints:
            archive.add_endpoint(sig_name, fn, input_signature=input_signature)
        archive.write_out(tmp, verbose=False)
        extra = os.path.join(tmp, ASSETS_EXTRA)
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, SIDECAR_FILE), "w", encoding="utf-8") as f:
            f.write(sidecar_text + "\n")
        if warmup:
            try:
                others = [n for n, *_ in endpoints if n != clip_name]
                if protocol is None:
                    # serving_default and clip: the same clip function under two names
                    write_warmup_requests(os.path.join(extra, WARMUP_FILE), name, specs)
                    _append_clip_warmup(os.path.join(extra, WARMUP_FILE), name, specs, others)
                else:
                    write_warmup_requests(os.path.join(extra, WARMUP_FILE), name, specs,
                                          signature_name=clip_name, protocol=protocol,
                                          protocol_signatures=others)
            except ImportError:
                warnings.warn("tensorflow-serving-api is not installed: no TF Serving warmup "
                              "requests written (pip install tensorflow-serving-api)")
        if os.path.exists(final):  # appeared while we were writing
            raise FileExistsError(f"export version {final!r} was created concurrently")
        public_mode(tmp)   # mkdtemp made it 0700: TF Serving may run as another user
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s", final)
    return final


def _dict_fn(fn):
    """fn(inputs: dict) as a one-argument function (the endpoint's input is a dict of specs)."""
    def serve(inputs):
        return fn(dict(inputs))
    return serve


def _append_clip_warmup(path: str, model_name: str, specs: dict, names: Sequence[str]) -> None:
    """Adds one batch-1 request per name in `names` (float32 clip signatures) to the warmup
    file written by write_warmup_requests."""
    old = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    tmp = path + ".tmp"
    for sig_name in names:
        write_warmup_requests(tmp, model_name, specs, (1,), signature_name=sig_name)
        old += list(tf.data.TFRecordDataset(tmp).as_numpy_iterator())
    if os.path.exists(tmp):
        os.remove(tmp)
    with tf.io.TFRecordWriter(path) as writer:
        for raw in old:
            writer.write(raw)


class LoadedExport:
    """A loaded export: call with a clip batch (B, T, S, S, C) -> {"logits", "probabilities",
    "top_k_indices", "top_k_classes"} through the float32 "clip" signature (several named
    inputs: ``loaded(rgb=..., flow=...)`` or ``loaded({"rgb": ..., ...})``).
    ``loaded.call(signature_name, **inputs)`` runs any other signature (serving_default,
    encoded_frames, sequence_example).

    Keeps a reference to the loaded SavedModel object (the signature's variables live as long
    as it does). Exports written before the "clip" signature existed: their serving_default.
    """

    def __init__(self, path: str):
        self.path = path
        self.saved_model = tf.saved_model.load(path)
        self.signature = clip_signature(self.saved_model, path)

    @property
    def signature_names(self) -> list[str]:
        return sorted(self.saved_model.signatures)

    @property
    def input_specs(self) -> dict[str, tf.TensorSpec]:
        """{input name: TensorSpec} of the clip signature."""
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

    def call(self, signature_name: str, **inputs) -> dict[str, tf.Tensor]:
        """Runs signature `signature_name` on inputs converted to its dtypes."""
        if signature_name not in self.saved_model.signatures:
            raise ValueError(f"{self.path}: no {signature_name!r} signature (found "
                             f"{self.signature_names})")
        sig = self.saved_model.signatures[signature_name]
        specs = sig.structured_input_signature[1]
        return sig(**{k: tf.convert_to_tensor(v, specs[k].dtype) for k, v in inputs.items()})


def clip_signature(saved_model, path: str = "the export"):
    """The float32 clip signature of a loaded export: "clip", else (older exports) a
    serving_default whose inputs are float32."""
    sigs = saved_model.signatures
    if CLIP_SIGNATURE in sigs:
        return sigs[CLIP_SIGNATURE]
    if SIGNATURE_NAME in sigs and all(
            v.dtype == tf.float32
            for v in sigs[SIGNATURE_NAME].structured_input_signature[1].values()):
        return sigs[SIGNATURE_NAME]
    raise ValueError(f"{path}: no {CLIP_SIGNATURE!r} signature (found {sorted(sigs)})")


class SidecarError(ValueError):
    """The sidecar (assets.extra/tfvid.json) is unreadable, lacks a field, or contradicts the
    export's signature. The message names the file and the field."""


def _signature_description(specs: dict[str, tf.TensorSpec], num_classes: int,
                           name: str = SIGNATURE_NAME) -> dict:
    """The sidecar's "signature" entry (the float32 clip signature) for these input specs."""
    return {
        "name": name,
        "inputs": {k: {"dtype": "float32", "shape": v.shape.as_list()} for k, v in specs.items()},
        "outputs": {k: {"dtype": "float32", "shape": [None, num_classes]} for k in OUTPUT_NAMES},
    }


def signature_facts(signature) -> tuple[dict[str, list], int | None]:
    """({input name: shape list}, num_classes) of a loaded serving signature."""
    inputs = {k: v.shape.as_list() for k, v in signature.structured_input_signature[1].items()}
    outputs = signature.structured_outputs
    logits = outputs.get("logits") if isinstance(outputs, dict) else None
    classes = None if logits is None else logits.shape.as_list()[-1]
    return inputs, classes


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_clip_shape(err, field: str, shape, *, expected=None) -> None:
    if not isinstance(shape, list) or len(shape) != 5 or shape[0] is not None \
            or not all(d is None or (_is_int(d) and d > 0) for d in shape[1:]) \
            or any(d is None for d in shape[2:]):
        err(f"{field} must be a clip shape [null, T, S, S, C] (T may be null), got {shape!r}")
    if expected is not None and list(shape) != list(expected):
        err(f"{field} {shape} contradicts the signature's input shape {list(expected)}")


def _check_sampling(err, field: str, sampling, time_steps) -> None:
    """`sampling` builds a sampler; its test T equals the signature's fixed T when both are."""
    from tfvid.data import sampling as sampling_lib

    if not isinstance(sampling, dict) or not isinstance(sampling.get("name"), str):
        err(f"{field} must be a sampler description {{\"name\": ..., ...}}, got {sampling!r}")
    try:
        sampler = sampling_lib.get_sampler(**sampling)
    except (TypeError, ValueError) as e:
        err(f"{field} {sampling} does not describe a sampler ({e})")
    steps = sampler.num_steps("test")
    if steps is not None and time_steps is not None and int(steps) != int(time_steps):
        err(f"{field} {sampling} gives T={steps} test time steps but the signature's input "
            f"has T={time_steps}")


def _check_preprocessing(err, field: str, pre, shape) -> None:
    if not isinstance(pre, dict):
        err(f"{field} must be an object, got {pre!r}")
    size = pre.get("input_size")
    if size is not None and shape is not None and size != shape[2]:
        err(f"{field}.input_size {size} contradicts the signature's input side S={shape[2]} "
            f"(input shape {shape})")


def validate_sidecar(sidecar: Any, source: str, *, inputs: dict[str, list] | None = None,
                     num_classes: int | None = None, require: Sequence[str] = ()) -> dict:
    """Checks a sidecar dict; returns it. Raises SidecarError "<source>: <field> ...".

    Always: "format" (<= SIDECAR_FORMAT), "num_classes" (> 0), "signature" (inputs of shape
    [null, T, S, S, C], outputs [null, num_classes]), "class_names" (null or num_classes
    strings). When present: "input_shape" = the signature's "clip" shape, "sampling" builds a
    sampler whose test T is the signature's fixed T, "preprocessing.input_size" = S, and the
    same for each entry of "streams" (four-stream exports; matched to the "rgb" / "flow" input
    by its preprocessing modality).
    inputs / num_classes: the loaded signature's {input name: shape} and output classes (see
    `signature_facts`): the sidecar must agree with them.
    require: further top-level fields that must be present and not null (e.g. predict needs
    "sampling" and "preprocessing").
    """
    def err(text):
        raise SidecarError(f"{source}: {text}")

    if not isinstance(sidecar, dict):
        err(f"expected a JSON object, got {type(sidecar).__name__}")
    missing = [k for k in ("format", "num_classes", "signature", *require)
               if sidecar.get(k) is None]
    if missing:
        err(f"missing field{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(k) for k in dict.fromkeys(missing))} (not a complete tfvid "
            f"export sidecar; export again with pipelines.export)")
    fmt = sidecar["format"]
    if not _is_int(fmt) or not 1 <= fmt <= SIDECAR_FORMAT:
        err(f"'format' {fmt!r} is not a sidecar format this tfvid reads (1..{SIDECAR_FORMAT})")
    classes = sidecar["num_classes"]
    if not _is_int(classes) or classes < 1:
        err(f"'num_classes' must be a positive integer, got {classes!r}")
    if num_classes is not None and classes != num_classes:
        err(f"'num_classes' {classes} contradicts the signature, whose outputs have "
            f"{num_classes} classes")
    names = sidecar.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            err(f"'class_names' must be a list of strings or null, got {names!r:.200}")
        if len(names) != classes:
            err(f"'class_names' has {len(names)} class names but 'num_classes' is {classes}")
    sig = sidecar["signature"]
    if not isinstance(sig, dict) or not isinstance(sig.get("inputs"), dict) \
            or not sig["inputs"] or not isinstance(sig.get("outputs"), dict):
        err(f"'signature' must have 'inputs' and 'outputs' objects, got {sig!r:.200}")
    if sig.get("name", SIGNATURE_NAME) not in (SIGNATURE_NAME, CLIP_SIGNATURE):
        err(f"'signature.name' is {sig['name']!r}, expected {CLIP_SIGNATURE!r} (or "
            f"{SIGNATURE_NAME!r} in exports without in-graph preprocessing)")
    others = sidecar.get("signatures")
    if others is not None and (not isinstance(others, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("inputs"), dict) for v in others.values())):
        err(f"'signatures' must map signature names to {{\"inputs\": ..., \"outputs\": ...}}, "
            f"got {others!r:.200}")
    if inputs is not None and others and sorted(inputs) != sorted(sig["inputs"]):
        # the loaded signature is another one of the export (e.g. serving_default of uint8
        # frames): it must be listed under "signatures" with these inputs
        for desc in others.values():
            listed = {k: v.get("shape") for k, v in desc["inputs"].items()}
            if listed == {k: list(v) for k, v in inputs.items()}:
                inputs = None
                break
    shapes = {}
    for key, desc in sig["inputs"].items():
        field = f"'signature.inputs.{key}'"
        if not isinstance(desc, dict) or desc.get("dtype") != "float32":
            err(f"{field} must be {{\"dtype\": \"float32\", \"shape\": [...]}}, got {desc!r}")
        _check_clip_shape(err, f"{field}.shape", desc.get("shape"),
                          expected=None if inputs is None or key not in inputs else inputs[key])
        shapes[key] = desc["shape"]
    if inputs is not None and sorted(inputs) != sorted(shapes):
        err(f"'signature.inputs' lists {sorted(shapes)} but the signature's inputs are "
            f"{sorted(inputs)}")
    for key in OUTPUT_NAMES:
        desc = sig["outputs"].get(key)
        if not isinstance(desc, dict) or desc.get("shape") != [None, classes]:
            err(f"'signature.outputs.{key}' must have shape [null, {classes}] "
                f"('num_classes'), got {desc!r}")
    clip = shapes.get(INPUT_NAME)
    if sidecar.get("input_shape") is not None:
        if clip is None:
            err(f"'input_shape' is given but the signature has no {INPUT_NAME!r} input "
                f"(inputs {sorted(shapes)})")
        _check_clip_shape(err, "'input_shape'", sidecar["input_shape"], expected=clip)
    if sidecar.get("sampling") is not None:
        _check_sampling(err, "'sampling'", sidecar["sampling"],
                        None if clip is None else clip[1])
    if sidecar.get("preprocessing") is not None:
        _check_preprocessing(err, "'preprocessing'", sidecar["preprocessing"], clip)
    streams = sidecar.get("streams")
    if streams is not None:
        if not isinstance(streams, dict) or not all(isinstance(v, dict)
                                                    for v in streams.values()):
            err(f"'streams' must map stream names to objects, got {streams!r:.200}")
        for stream, part in streams.items():
            pre = part.get("preprocessing") or {}
            key = "flow" if isinstance(pre, dict) and pre.get("modality") == "flow" else "rgb"
            shape = shapes.get(key)
            if part.get("input_shape") is not None:
                got = part["input_shape"]
                _check_clip_shape(err, f"'streams.{stream}.input_shape'", got)
                if shape is not None and any(a is not None and b is not None and a != b
                                             for a, b in zip(got, shape)):
                    err(f"'streams.{stream}.input_shape' {got} contradicts the signature's "
                        f"{key!r} input {shape}")
            if part.get("sampling") is not None:
                _check_sampling(err, f"'streams.{stream}.sampling'", part["sampling"],
                                None if shape is None else shape[1])
            if part.get("preprocessing") is not None:
                _check_preprocessing(err, f"'streams.{stream}.preprocessing'", pre, shape)
    return sidecar


def sidecar_file(path: str) -> str:
    """The sidecar file of an export version dir (or model dir: newest version)."""
    return os.path.join(resolve_export_dir(path), ASSETS_EXTRA, SIDECAR_FILE)


def read_sidecar(path: str, signature=None, *, require: Sequence[str] = ()) -> dict[str, Any]:
    """The checked tfvid.json sidecar of an export version dir (or model dir: newest version).

    The one sidecar reader of tfvid (predict, convert_tflite, load_export). `signature`: the
    export's loaded serving signature, when at hand: the sidecar must agree with its inputs
    and number of classes. `require`: top-level fields that must be present (not null).
    Raises FileNotFoundError (no sidecar) or SidecarError (a ValueError naming the file and
    the field: invalid JSON, a missing field, a contradiction; see `validate_sidecar`).
    """
    file = sidecar_file(path)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file}: no such file; {os.path.dirname(os.path.dirname(file))} "
                                f"has no sidecar {ASSETS_EXTRA}/{SIDECAR_FILE} (not a tfvid "
                                f"export? export it with pipelines.export)")
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SidecarError(f"{file}: not valid JSON ({e})") from None
    inputs, classes = signature_facts(signature) if signature is not None else (None, None)
    return validate_sidecar(data, file, inputs=inputs, num_classes=classes, require=require)


def load_export(path: str, *, require: Sequence[str] = ()) -> tuple[LoadedExport, dict[str, Any]]:
    """Loads an export (version dir, or model dir = newest version) -> (serving fn, sidecar);
    the sidecar is checked against the loaded signature (`read_sidecar`)."""
    path = resolve_export_dir(path)
    serving = LoadedExport(path)
    return serving, read_sidecar(path, serving.signature, require=require)


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

