"""The tfvid.json sidecar of an export: the one reader and its checks.

The sidecar is read and checked by :func:`read_sidecar` (one reader for predict,
convert_tflite and the export jobs): a missing field or one that contradicts the signature
raises :class:`SidecarError` (a ValueError) naming the file and the field. Clip inputs are
(None, T, S, S, C); exports of models on cached features take (None, T, D).
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

from tfvid.export.layout import (ASSETS_EXTRA, CLIP_SIGNATURE, FEATURES_INPUT,
                                 FEATURES_SIGNATURE, INPUT_NAME, OUTPUT_NAMES, SIDECAR_FILE,
                                 SIDECAR_FORMAT, SIGNATURE_NAME, resolve_export_dir)


class SidecarError(ValueError):
    """The sidecar (assets.extra/tfvid.json) is unreadable, lacks a field, or contradicts the
    export's signature. The message names the file and the field."""


def _signature_description(specs: dict, num_classes: int,
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
    if not isinstance(shape, list) or len(shape) not in (3, 5) or shape[0] is not None \
            or not all(d is None or (_is_int(d) and d > 0) for d in shape[1:]) \
            or any(d is None for d in shape[2:]):
        err(f"{field} must be a clip shape [null, T, S, S, C] or a feature shape [null, T, D] "
            f"(T may be null), got {shape!r}")
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
    if sig.get("name", SIGNATURE_NAME) not in (SIGNATURE_NAME, CLIP_SIGNATURE,
                                               FEATURES_SIGNATURE):
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
    clip = shapes.get(INPUT_NAME, shapes.get(FEATURES_INPUT))
    if sidecar.get("input_shape") is not None:
        if clip is None:
            err(f"'input_shape' is given but the signature has no {INPUT_NAME!r} (or "
                f"{FEATURES_INPUT!r}) input (inputs {sorted(shapes)})")
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

