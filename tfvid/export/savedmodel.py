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

The sidecar is read and checked by tfvid.export.sidecar.read_sidecar; warmup requests are
written by tfvid.export.warmup; the folder layout and names are tfvid.export.layout's; a
loaded export is tfvid.export.loaded.LoadedExport (all importable from here, as before).

A model on cached features takes (B, T, D): ``input_shapes={"features": (T, D)}`` with
``clip_name="features"`` gives the signatures "features" and serving_default, both float32
(None, T, D) -> the same outputs.

Several named inputs (e.g. the four-stream dynamic image network's ``rgb`` and ``flow``
windows): pass ``input_shapes={"rgb": (T, S, S, C1), "flow": (T, S, S, C2)}`` instead of
``clip_shape``; the model then takes a dict of those names and the signature has one input
per name (the warmup requests and the sidecar list them all).
"""
from __future__ import annotations
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
from tfvid.export import signatures as sigs
from tfvid.export.layout import (  # noqa: F401  (names of this module before the split)
    ASSETS_EXTRA, CLIP_SIGNATURE, FEATURES_SIGNATURE, INPUT_NAME, OUTPUT_NAMES, SIDECAR_FILE,
    SIDECAR_FORMAT, SIGNATURE_NAME, WARMUP_FILE, next_version, resolve_export_dir)
from tfvid.export.loaded import LoadedExport, clip_signature, load_export  # noqa: F401
from tfvid.export.sidecar import (  # noqa: F401
    SidecarError, _signature_description, read_sidecar, sidecar_file, signature_facts,
    validate_sidecar)
from tfvid.export.warmup import (  # noqa: F401
    MAX_WARMUP_REQUESTS, WARMUP_BATCH_SIZES, WARMUP_VARIABLE_TIME, append_clip_warmup,
    read_warmup_requests, write_warmup_requests)

log = logging.getLogger(__name__)


def _clip_spec(clip_shape: Sequence[int | None], name: str = INPUT_NAME) -> tf.TensorSpec:
    """TensorSpec (None, T, S, S, C) named `name` from clip_shape (T, S, S, C) or
    (None, T, S, S, C); a feature input (None, T, D) from (T, D) or (None, T, D)."""
    shape = list(clip_shape)
    if len(shape) in (3, 5):
        if shape[0] is not None:
            raise ValueError(f"clip_shape {tuple(clip_shape)}: the batch dimension must be None "
                             f"(or give the 4 dimensions (T, S, S, C))")
        shape = shape[1:]
    if len(shape) not in (2, 4):
        raise ValueError(f"clip_shape must be (T, S, S, C) or (T, D) (T may be None), got "
                         f"{tuple(clip_shape)}")
    t, rest = shape[0], shape[1:]
    if any(d is None for d in rest):
        raise ValueError(f"clip_shape {tuple(clip_shape)}: only the time dimension may be None")
    t = None if t in (None, 0) else int(t)
    return tf.TensorSpec([None, t, *(int(d) for d in rest)], tf.float32, name=name)


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



def shape_text(spec: tf.TensorSpec) -> str:
    """'(B, 3, 224, 224, 3)' (fixed T) or '(B, T, 224, 224, 3)' (variable T) of a clip spec;
    '(B, T, 1024)' of a feature spec."""
    _, t, *rest = spec.shape.as_list()
    return f"(B, {'T' if t is None else t}, {', '.join(str(d) for d in rest)})"


def _check_shape(x: tf.Tensor, spec: tf.TensorSpec, key: str) -> tf.Operation:
    """In-graph assert: `x` has the spec's rank (5, or 3 for features) and fixed dims (T >= 1
    when T is variable).

    The runtime shape is padded with -1 (no real dim) to rank + 1 entries, so one comparison checks
    the rank as well (a rank-4 or rank-6 tensor cannot pass) without Rank/Size ops that
    TensorFlow folds from the placeholder's static shape.
    """
    _, t, *rest = spec.shape.as_list()
    rank = 2 + len(rest)
    shape = tf.shape(x)
    padded = tf.concat([shape, tf.fill([rank + 1], -1)], axis=0)[:rank + 1]
    ok = tf.reduce_all(tf.equal(padded[2:], tf.constant([*rest, -1])))
    if t is None:
        ok = tf.logical_and(ok, padded[1] >= 1)
        rule = "B >= 0 clips of T >= 1 time steps"
    else:
        ok = tf.logical_and(ok, tf.equal(padded[1], t))
        rule = f"B >= 0 clips of {t} time steps"
    if len(rest) == 3:
        detail = f"{rest[0]}x{rest[1]} pixels, {rest[2]} channels"
    else:
        detail = f"{rest[-1]} features per step"
    # no quotes: the Assert op prints its strings with quotes escaped
    message = (f"input {key} must be a float32 tensor of shape {shape_text(spec)} ({rule}, "
               f"{detail}); got shape")
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


def export_saved_model(model, export_base: str, name: str, *, version: int | None = None,
                       clip_shape: Sequence[int | None] | None = None,
                       input_shapes: dict[str, Sequence[int | None]] | None = None,
                       sidecar: dict[str, Any], warmup: bool = True, protocol=None,
                       protocol_model=None, clip_name: str = CLIP_SIGNATURE) -> str:
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
      clip_name: name of the float32 signature ("clip"; "features" for a model on cached
        features, input_shapes={"features": (T, D)}).

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
    names = sigs.class_names_or_default(sidecar.get("class_names"), num_classes)
    float_name = clip_name
    clip_name = clip_name if protocol is not None else SIGNATURE_NAME
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
        endpoints.append((float_name, clip_fn, clip_sig, specs))
    else:
        endpoints.append((SIGNATURE_NAME, clip_fn, clip_sig, specs))
        endpoints.append((float_name, _serving_fn(model, specs, named, names), clip_sig,
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
                    append_clip_warmup(os.path.join(extra, WARMUP_FILE), name, specs, others)
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
