"""TFLite conversion of a tfvid SavedModel export (builtin ops only), quantized variants.

The export's float32 clip signature is loaded and wrapped in a concrete function with a fixed
input shape, which the converter takes; see tfvid.export.tflite for the whole contract.
"""
from __future__ import annotations

import inspect
import os
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from tfvid.atomic import atomic_path
from tfvid.export.layout import (CLIP_SIGNATURE, FEATURES_SIGNATURE, INPUT_NAME, OUTPUT_NAMES,
                                 SIGNATURE_NAME, resolve_export_dir)
from tfvid.export.tflite_runtime import tflite_ops
from tfvid.export.tflite_uint8 import normalize_in_graph, sidecar_normalizations, uint8_channels

OPTIMIZATIONS = {"default": tf.lite.Optimize.DEFAULT}
#: Variants of `convert_to_tflite(quantize=...)`.
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")
#: Variants whose outputs must match the SavedModel's top-1 on every clip.
EXACT_QUANTIZATIONS = ("none", "float16")


class TFLiteConversionError(RuntimeError):
    """The export cannot be converted with builtin TFLite ops only."""


def load_signature(export_dir: str):
    """(loaded SavedModel, its float32 clip signature); keep the first alive.

    The clip signature is "clip" when the export has one (exports whose serving_default runs
    the test protocol on uint8 frames or records, see tfvid.export.signatures), else
    serving_default (older exports, plain ``model.export()`` artifacts)."""
    loaded = tf.saved_model.load(export_dir)
    for key in (CLIP_SIGNATURE, FEATURES_SIGNATURE, SIGNATURE_NAME):
        if key in loaded.signatures:
            return loaded, loaded.signatures[key]
    raise ValueError(f"{export_dir}: no {CLIP_SIGNATURE!r} or {SIGNATURE_NAME!r} signature "
                     f"(found {sorted(loaded.signatures)}); convert a tfvid export "
                     f"(pipelines.export / tfvid.export.export_saved_model)")


def signature_input_specs(signature) -> dict[str, tf.TensorSpec]:
    """{input name: TensorSpec} of a serving signature, in sorted name order."""
    specs = signature.structured_input_signature[1]
    if not specs:
        raise ValueError(f"signature {SIGNATURE_NAME!r} has no named inputs")
    return {k: specs[k] for k in sorted(specs)}


def signature_input_shape(signature) -> list:
    """The (None, T, S, S, C) shape of the signature's clip input (None = variable); the
    shape of the only input when the signature has one input of another name."""
    specs = signature.structured_input_signature[1]
    if INPUT_NAME not in specs:
        if len(specs) == 1:
            return next(iter(specs.values())).shape.as_list()
        raise ValueError(f"signature {SIGNATURE_NAME!r} has no {INPUT_NAME!r} input "
                         f"(inputs: {sorted(specs)})")
    return specs[INPUT_NAME].shape.as_list()


def fixed_input_shape(shape: Sequence, *, batch_size: int = 1,
                      time_steps: int | None = None) -> list[int]:
    """Replace the variable dims of a (None, T, ...) signature shape for TFLite: a clip
    (None, T, S, S, C) or a feature sequence (None, T, D)."""
    shape = list(shape)
    if len(shape) < 3:
        raise ValueError(f"expected a (B, T, S, S, C) clip or (B, T, D) feature input, got "
                         f"shape {shape}")
    shape[0] = int(batch_size)
    if time_steps is not None:
        if shape[1] is not None and shape[1] != int(time_steps):
            raise ValueError(f"the export fixes T={shape[1]}; time_steps={time_steps} does not "
                             f"apply (export again with a variable or other T)")
        shape[1] = int(time_steps)
    if shape[1] is None:
        raise ValueError("the export's time axis T is variable: give time_steps "
                         "(--time_steps) to fix it for TFLite, e.g. the training T")
    if any(d is None for d in shape):
        raise ValueError(f"cannot fix every dimension of {shape} for TFLite")
    return [int(d) for d in shape]


def fixed_input_shapes(signature, *, batch_size: int = 1,
                       time_steps: int | None = None) -> dict[str, list[int]]:
    """{input name: fixed shape} of every signature input (`fixed_input_shape`)."""
    return {k: fixed_input_shape(v.shape.as_list(), batch_size=batch_size,
                                 time_steps=time_steps)
            for k, v in signature_input_specs(signature).items()}


def _numeric_outputs(outputs: dict) -> dict:
    """The outputs a .tflite keeps: ``logits`` and ``probabilities`` of a tfvid export (other
    outputs of the signature, e.g. class-name strings, stay with the SavedModel: on device the
    report's class names serve), else every float output (a plain model.export())."""
    keep = {k: v for k, v in outputs.items() if k in OUTPUT_NAMES}
    return keep or {k: v for k, v in outputs.items() if v.dtype.is_floating}


def _serving_function(signature, shapes: dict, normalizations: dict | None):
    """A tf.function with one positional argument per input (named as the inputs) and fixed
    shapes, calling the signature; uint8 inputs are normalised first."""
    names = list(shapes)
    specs = []
    for name in names:
        shape = list(shapes[name])
        if normalizations:
            shape[-1] = uint8_channels(normalizations[name], shape[-1])
            specs.append(tf.TensorSpec(shape, tf.uint8, name=name))
        else:
            specs.append(tf.TensorSpec(shape, tf.float32, name=name))

    def body(*args):
        inputs = dict(zip(names, args))
        if normalizations:
            inputs = {k: normalize_in_graph(v, normalizations[k]) for k, v in inputs.items()}
        return _numeric_outputs(signature(**inputs))

    body.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    body.__name__ = "serve"
    return tf.function(body, input_signature=specs), specs


def _resolve_quantize(quantize: str | None, optimizations: Sequence[str] | None) -> str:
    for name in optimizations or ():
        if name not in OPTIMIZATIONS:
            raise ValueError(f"unknown optimization {name!r}; choose from {sorted(OPTIMIZATIONS)}")
    if quantize is None:
        return "dynamic" if optimizations else "none"
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantize {quantize!r}; choose from {QUANTIZATIONS}")
    return quantize


def _representative(data, names: list[str], specs: list[tf.TensorSpec]) -> Callable:
    """The converter's representative_dataset: lists of arrays in input order."""
    def gen():
        count = 0
        for item in (data() if callable(data) else data):
            if not isinstance(item, dict):
                item = {names[0]: item}
            yield [np.asarray(item[n]).astype(s.dtype.as_numpy_dtype).reshape(s.shape)
                   for n, s in zip(names, specs)]
            count += 1
        if not count:
            raise ValueError("representative_data gave no samples")
    return gen


def _convert(converter, export_dir: str) -> bytes:
    try:
        return converter.convert()
    except Exception as err:  # ConverterError and friends: say what to do about it
        text = str(err)
        needs = sorted({ln.strip() for ln in text.splitlines()
                        if ln.strip().startswith(("TF Select ops:", "Custom ops:"))})
        raise TFLiteConversionError(
            f"{export_dir}: conversion with builtin TFLite ops only failed"
            + (f"; the model needs non-builtin ops ({'; '.join(needs)})" if needs else "")
            + ". Replace those ops in the model (Select TF ops / custom ops are not allowed "
            f"here). Converter said: {text[:1500]}") from err


def convert_to_tflite(export_dir: str, out_path: str, *, optimizations: Sequence[str] | None = None,
                      batch_size: int = 1, time_steps: int | None = None,
                      quantize: str | None = None, representative_data=None,
                      uint8_input: bool | dict = False, info: dict | None = None) -> str:
    """Converts a tfvid SavedModel export to a builtin-ops-only .tflite file; returns its path.

    Args:
      export_dir: a version dir (saved_models/<name>/<version>) or a model dir (newest version);
        also a plain ``model.export()`` directory (any (B, T, ...) inputs).
      out_path: the .tflite file to write (atomically: written beside it, then renamed).
      optimizations: legacy names of ``OPTIMIZATIONS`` ("default" = quantize "dynamic").
      batch_size, time_steps: the fixed input shape, see `fixed_input_shape`.
      quantize: one of `QUANTIZATIONS` (None: "none", or "dynamic" with optimizations).
      representative_data: for "int8": an iterable (or a callable returning one) of samples,
        each an array of the (fixed, batch-size) input shape or a dict {input name: array}
        (uint8 arrays for a uint8-input model). 100 or so clips of training data.
      uint8_input: True (normalisation from the export's sidecar, `sidecar_normalizations`) or
        {input name: normalisation config}: uint8 inputs, normalised inside (module docstring).
      info: a dict that receives facts about the conversion ("int8_ops": "int8" when every op
        was quantized, "mixed" when the converter kept float ops beside the int8 ones).
    Raises:
      TFLiteConversionError when an op has no builtin TFLite kernel (message lists the
      converter's complaint).
    """
    quantize = _resolve_quantize(quantize, optimizations)
    if quantize == "int8" and representative_data is None:
        raise ValueError("quantize='int8' needs representative_data (calibration clips)")
    export_dir = resolve_export_dir(export_dir)
    loaded, signature = load_signature(export_dir)
    shapes = fixed_input_shapes(signature, batch_size=batch_size, time_steps=time_steps)
    normalizations = None
    if uint8_input:
        if isinstance(uint8_input, dict):
            normalizations = dict(uint8_input)
        else:
            from tfvid.export.sidecar import read_sidecar
            normalizations = sidecar_normalizations(read_sidecar(export_dir), shapes)
        missing = sorted(set(shapes) - set(normalizations))
        if missing:
            raise ValueError(f"uint8_input: no normalisation for input(s) {missing}")
    serve, specs = _serving_function(signature, shapes, normalizations)
    names = list(shapes)

    def converter_for(ops):
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [serve.get_concrete_function()], loaded)
        converter.target_spec.supported_ops = ops
        converter.allow_custom_ops = False
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.representative_dataset = _representative(representative_data, names,
                                                                specs)
        return converter

    info = {} if info is None else info
    if quantize == "int8":
        try:   # every op int8 (float I/O: quantize / dequantize at the ends)
            content = _convert(converter_for([tf.lite.OpsSet.TFLITE_BUILTINS_INT8]), export_dir)
            info["int8_ops"] = "int8"
        except TFLiteConversionError as first:
            try:   # int8 where the converter can, float builtins for the rest
                content = _convert(converter_for([tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                  tf.lite.OpsSet.TFLITE_BUILTINS]), export_dir)
            except TFLiteConversionError:
                raise first from None
            info["int8_ops"] = "mixed"
            info["int8_full_integer_error"] = " ".join(str(first).split())[:500]
    else:
        content = _convert(converter_for([tf.lite.OpsSet.TFLITE_BUILTINS]), export_dir)
    ops = tflite_ops(content)
    bad = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if bad:
        raise TFLiteConversionError(f"{export_dir}: the converted model uses non-builtin ops "
                                    f"{bad}")
    info.update(quantize=quantize,
                input_shapes={n: s.shape.as_list() for n, s in zip(names, specs)},
                input_dtype="uint8" if normalizations else "float32",
                normalization=normalizations)
    out_path = os.fspath(out_path)
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        f.write(content)
    del loaded
    return out_path
