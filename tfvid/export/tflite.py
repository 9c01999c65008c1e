"""TFLite conversion of a tfvid SavedModel export, and a parity check against it.

    path = convert_to_tflite("saved_models/stnet/1", "saved_models/stnet/1.tflite")
    diff = check_parity("saved_models/stnet/1", path)          # max |tflite - SavedModel|

The source is the artifact of `tfvid.export.export_saved_model` (``keras.export`` /
``model.export()``): its ``serving_default`` signature is loaded and wrapped in a concrete
function with a fixed input shape, which the converter takes (``from_concrete_functions``
after loading). Never convert ``tf.saved_model.save(keras_model)`` output: that TFLite model
silently outputs NaN (DESIGN.md, known traps); always compare outputs with `check_parity`
(pipelines.convert_tflite does, and deletes a file that fails).

* Fixed shapes: the TFLite input is (batch_size, T, S, S, C) with batch_size 1 by default and
  T from the signature (or ``time_steps`` when the signature's T is variable). Static shapes
  keep every tensor statically sized (no resize at run time, delegates accept the model);
  run a different T by converting again.
* Builtin ops only (``target_spec.supported_ops = [TFLITE_BUILTINS]``): a model that would
  need Select TF ops (Flex) or custom ops fails with `TFLiteConversionError` instead of
  producing a file that a plain LiteRT runtime cannot load.
* Outputs keep the signature's names ``logits`` and ``probabilities`` (signature
  ``serving_default`` of the .tflite).
* The interpreter is ``ai_edge_litert.interpreter.Interpreter`` (tf.lite.Interpreter is
  deprecated).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from tfvid.atomic import atomic_path
from tfvid.export.savedmodel import INPUT_NAME, SIGNATURE_NAME, resolve_export_dir

OPTIMIZATIONS = {"default": tf.lite.Optimize.DEFAULT}


class TFLiteConversionError(RuntimeError):
    """The export cannot be converted with builtin TFLite ops only."""


class ParityError(AssertionError):
    """TFLite outputs differ from the SavedModel's by more than the tolerance (or are NaN)."""


def load_signature(export_dir: str):
    """(loaded SavedModel, its serving_default concrete function); keep the first alive."""
    loaded = tf.saved_model.load(export_dir)
    if SIGNATURE_NAME not in loaded.signatures:
        raise ValueError(f"{export_dir}: no {SIGNATURE_NAME!r} signature (found "
                         f"{sorted(loaded.signatures)}); convert a tfvid export "
                         f"(pipelines.export / tfvid.export.export_saved_model)")
    return loaded, loaded.signatures[SIGNATURE_NAME]


def signature_input_shape(signature) -> list:
    """The (None, T, S, S, C) shape of the signature's clip input (None = variable)."""
    specs = signature.structured_input_signature[1]
    if INPUT_NAME not in specs:
        raise ValueError(f"signature {SIGNATURE_NAME!r} has no {INPUT_NAME!r} input "
                         f"(inputs: {sorted(specs)})")
    return specs[INPUT_NAME].shape.as_list()


def fixed_input_shape(shape: Sequence, *, batch_size: int = 1,
                      time_steps: int | None = None) -> list[int]:
    """Replace the variable dims of a (None, T, S, S, C) signature shape for TFLite."""
    shape = list(shape)
    if len(shape) != 5:
        raise ValueError(f"expected a (B, T, S, S, C) clip input, got shape {shape}")
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


def convert_to_tflite(export_dir: str, out_path: str, *, optimizations: Sequence[str] | None = None,
                      batch_size: int = 1, time_steps: int | None = None) -> str:
    """Converts a tfvid SavedModel export to a builtin-ops-only .tflite file; returns its path.

    Args:
      export_dir: a version dir (saved_models/<name>/<version>) or a model dir (newest version).
      out_path: the .tflite file to write (atomically: written beside it, then renamed).
      optimizations: names of ``OPTIMIZATIONS`` ("default" = tf.lite.Optimize.DEFAULT,
        dynamic-range weight quantization); None converts float32 as is.
      batch_size, time_steps: the fixed input shape, see `fixed_input_shape`.
    Raises:
      TFLiteConversionError when an op has no builtin TFLite kernel (message lists the
      converter's complaint).
    """
    export_dir = resolve_export_dir(export_dir)
    loaded, signature = load_signature(export_dir)
    shape = fixed_input_shape(signature_input_shape(signature), batch_size=batch_size,
                              time_steps=time_steps)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)])
    def serve(clip):
        return signature(**{INPUT_NAME: clip})

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], loaded)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    opts = []
    for name in optimizations or ():
        if name not in OPTIMIZATIONS:
            raise ValueError(f"unknown optimization {name!r}; choose from {sorted(OPTIMIZATIONS)}")
        opts.append(OPTIMIZATIONS[name])
    converter.optimizations = opts
    try:
        content = converter.convert()
    except Exception as err:  # ConverterError and friends: say what to do about it
        text = str(err)
        needs = sorted({ln.strip() for ln in text.splitlines()
                        if ln.strip().startswith(("TF Select ops:", "Custom ops:"))})
        raise TFLiteConversionError(
            f"{export_dir}: conversion with builtin TFLite ops only failed"
            + (f"; the model needs non-builtin ops ({'; '.join(needs)})" if needs else "")
            + ". Replace those ops in the model (Select TF ops / custom ops are not allowed "
            f"here). Converter said: {text[:1500]}") from err
    ops = tflite_ops(content)
    bad = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if bad:
        raise TFLiteConversionError(f"{export_dir}: the converted model uses non-builtin ops "
                                    f"{bad}")
    out_path = os.fspath(out_path)
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        f.write(content)
    return out_path


def _interpreter(model_path: str | None = None, model_content: bytes | None = None, *,
                 allocate: bool = True):
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=model_path, model_content=model_content)
    if allocate:
        interpreter.allocate_tensors()
    return interpreter


def tflite_ops(model) -> list[str]:
    """Sorted names of the ops a .tflite model uses (``model``: a path or the file's bytes).

    Read before tensors are allocated, i.e. before a delegate (XNNPACK) replaces nodes.
    """
    if isinstance(model, (bytes, bytearray)):
        interpreter = _interpreter(model_content=bytes(model), allocate=False)
    else:
        interpreter = _interpreter(model_path=os.fspath(model), allocate=False)
    return sorted({d["op_name"] for d in interpreter._get_ops_details()})


class TFLiteModel:
    """A .tflite clip classifier: call with a float32 clip batch of the fixed input shape ->
    {"logits": ..., "probabilities": ...} (numpy)."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.interpreter = _interpreter(model_path=self.path)
        signatures = self.interpreter.get_signature_list()
        key = SIGNATURE_NAME if SIGNATURE_NAME in signatures else next(iter(signatures), None)
        if key is None:
            raise ValueError(f"{self.path}: the TFLite model has no signature")
        self.runner = self.interpreter.get_signature_runner(key)
        self.input_name = signatures[key]["inputs"][0]
        self.input_shape = tuple(int(d) for d in self.runner.get_input_details()
                                 [self.input_name]["shape"])

    def __call__(self, clip) -> dict[str, np.ndarray]:
        clip = np.asarray(clip, np.float32)
        if clip.shape != self.input_shape:
            raise ValueError(f"{self.path} takes clips of shape {self.input_shape}, got "
                             f"{clip.shape}")
        return {k: np.asarray(v) for k, v in self.runner(**{self.input_name: clip}).items()}


def check_parity(export_dir: str, tflite_path: str, num_samples: int = 2, atol: float = 1e-4,
                 seed: int = 0) -> float:
    """Max |TFLite - SavedModel| over ``num_samples`` random N(0, 1) clips and every shared
    output (logits, probabilities); raises ParityError above ``atol`` or on NaN."""
    export_dir = resolve_export_dir(export_dir)
    loaded, signature = load_signature(export_dir)  # keep `loaded`: it owns the variables
    lite = TFLiteModel(tflite_path)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(int(num_samples)):
        clip = rng.standard_normal(lite.input_shape).astype(np.float32)
        expected = {k: v.numpy() for k, v in signature(**{INPUT_NAME: tf.constant(clip)}).items()}
        got = lite(clip)
        shared = sorted(set(expected) & set(got))
        if not shared:
            raise ParityError(f"{tflite_path}: no output name in common with the SavedModel "
                              f"({sorted(got)} vs {sorted(expected)})")
        for name in shared:
            if not np.all(np.isfinite(got[name])):
                raise ParityError(f"{tflite_path}: output {name!r} is not finite")
            worst = max(worst, float(np.max(np.abs(got[name] - expected[name]))))
    if worst > atol:
        raise ParityError(f"{tflite_path}: max |tflite - SavedModel| = {worst:.3g} > atol "
                          f"{atol:g}")
    return worst
