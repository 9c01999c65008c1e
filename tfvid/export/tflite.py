"""TFLite conversion of a tfvid SavedModel export, quantized variants, and checks against it.

    path = convert_to_tflite("saved_models/stnet/1", "saved_models/stnet/1.tflite")
    diff = check_parity("saved_models/stnet/1", path)          # max |tflite - SavedModel|
    convert_to_tflite(export, "1-int8.tflite", quantize="int8",
                      representative_data=lambda: clips)          # calibrated int8
    convert_to_tflite(export, "1-uint8.tflite", uint8_input=True) # uint8 in, normalised inside
    stats = compare(export, path, clips, labels)                  # diff, top-1 agreement, acc.

The source is the artifact of `tfvid.export.export_saved_model` (``keras.export`` /
``model.export()``): its float32 clip signature (``clip``, else ``serving_default``) is loaded
and wrapped in a concrete function with a fixed input shape, which the converter takes
(``from_concrete_functions`` after loading). Never convert ``tf.saved_model.save(keras_model)``
output: that TFLite model silently outputs NaN (docs/architecture.md, known traps); always
compare outputs with `check_parity` / `compare` (pipelines.convert_tflite does, and deletes a
file that fails).

* Inputs: every input of the signature (``clip`` (B, T, S, S, C) for tfvid exports; ``rgb``
  and ``flow`` for the four-stream model; any (B, T, ...) input such as the DIN / VideoMap
  heads' ``features`` (B, T, D) of a plain ``model.export()`` artifact). Fixed shapes: batch
  ``batch_size`` (1 by default) and T from the signature (or ``time_steps`` when the
  signature's T is variable). Static shapes keep every tensor statically sized (no resize at
  run time, delegates accept the model); run a different T by converting again.
* Builtin ops only (``TFLITE_BUILTINS``, plus ``TFLITE_BUILTINS_INT8`` for int8): a model that
  would need Select TF ops (Flex) or custom ops fails with `TFLiteConversionError` instead of
  producing a file that a plain LiteRT runtime cannot load.
* ``quantize`` (`QUANTIZATIONS`): "none" (float32), "dynamic" (int8 weights, dynamic-range
  activations), "float16" (float16 weights, float32 compute), "int8" (int8 weights and
  activations calibrated on ``representative_data``, float32 input / output; every op int8
  when the converter can, else float fallback for the rest: see `convert_to_tflite`).
* ``uint8_input``: the TFLite input is uint8 (B, T, S, S, C0) on the 8-bit scale (already
  sampled and cropped), cast and normalised inside the model with the sidecar's
  ``preprocessing.normalization`` constants (tfvid.data.augment.normalization_config):
  out = (x[order] * scale - mean) / std; rgbdiff takes the 3L frame channels (C0 = C + 3) and
  takes the differences inside. The same as normalising float clips on the host with
  tfvid.data.augment.normalize (`host_normalize`).
* Outputs keep the signature's names ``logits`` and ``probabilities`` (signature
  ``serving_default`` of the .tflite).
* The interpreter is ``ai_edge_litert.interpreter.Interpreter`` (tf.lite.Interpreter is
  deprecated).

Modules: tflite_convert (conversion), tflite_uint8 (normalisation inside), tflite_runtime
(LiteRT, latency), tflite_check (parity), tflite_report (the convert_tflite job's report); this
module gathers their names.
"""
from __future__ import annotations

from tfvid.export.layout import CLIP_SIGNATURE  # noqa: F401
from tfvid.export.tflite_check import (  # noqa: F401
    ParityError, _random_inputs, _reference_inputs, check_parity, check_top1, compare,
    savedmodel_latency)
from tfvid.export.tflite_convert import (  # noqa: F401
    EXACT_QUANTIZATIONS, OPTIMIZATIONS, QUANTIZATIONS, TFLiteConversionError, _convert,
    _numeric_outputs, _representative, _resolve_quantize, _serving_function, convert_to_tflite,
    fixed_input_shape, fixed_input_shapes, load_signature, signature_input_shape,
    signature_input_specs)
from tfvid.export.tflite_runtime import (  # noqa: F401
    TFLiteModel, _interpreter, measure_latency, tflite_ops)
from tfvid.export.tflite_uint8 import (  # noqa: F401
    _normalize_in_graph, host_normalize, normalization_affine, sidecar_normalizations,
    uint8_channels)
