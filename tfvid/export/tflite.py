"""TFLite conversion of a tfvid SavedModel export, quantized variants, and checks against it.

    path = convert_to_tflite("saved_models/stnet/1", "saved_models/stnet/1.tflite")
    diff = check_parity("saved_models/stnet/1", path)          # max |tflite - SavedModel|
    convert_to_tflite(export, "1-int8.tflite", quantize="int8",
                      representative_data=lambda: clips)          # calibrated int8
    convert_to_tflite(export, "1-uint8.tflite", uint8_input=True) # uint8 in, normalised inside
    stats = compare(export, path, clips, labels)                  # diff, top-1 agreement, acc.

The source is the artifact of `tfvid.export.export_saved_model` (``keras.export`` /
``model.export()``): its float32 clip signature (``clip``, else ``serving_default``) is loaded and wrapped in a concrete
function with a fixed input shape, which the converter takes (``from_concrete_functions``
after loading). Never convert ``tf.saved_model.save(keras_model)`` output: that TFLite model
silently outputs NaN (docs/architecture.md, known traps); always compare outputs with `check_parity` /
`compare` (pipelines.convert_tflite does, and deletes a file that fails).

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
"""
from __future__ import annotations

import inspect
import os
import time
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from tfvid.atomic import atomic_path
from tfvid.export import savedmodel as _savedmodel
from tfvid.export.savedmodel import (INPUT_NAME, OUTPUT_NAMES, SIGNATURE_NAME,
                                     resolve_export_dir)

#: The float32 clip signature of an export (tfvid.export.savedmodel.CLIP_SIGNATURE).
CLIP_SIGNATURE = getattr(_savedmodel, "CLIP_SIGNATURE", "clip")

OPTIMIZATIONS = {"default": tf.lite.Optimize.DEFAULT}
#: Variants of `convert_to_tflite(quantize=...)`.
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")
#: Variants whose outputs must match the SavedModel's top-1 on every clip.
EXACT_QUANTIZATIONS = ("none", "float16")


class TFLiteConversionError(RuntimeError):
    """The export cannot be converted with builtin TFLite ops only."""


class ParityError(AssertionError):
    """TFLite outputs differ from the SavedModel's by more than the tolerance (or are NaN)."""


def load_signature(export_dir: str):
    """(loaded SavedModel, its float32 clip signature); keep the first alive.

    The clip signature is "clip" when the export has one (exports whose serving_default runs
    the test protocol on uint8 frames or records, see tfvid.export.signatures), else
    serving_default (older exports, plain ``model.export()`` artifacts)."""
    loaded = tf.saved_model.load(export_dir)
    for key in (CLIP_SIGNATURE, SIGNATURE_NAME):
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


# ------------------------------------------------------------------ uint8 input normalisation
def normalization_affine(config: dict, channels: int) -> tuple[list[int], list[float],
                                                                list[float]]:
    """(source, mul, add) with out[..., o] = x[..., source[o]] * mul[o] + add[o] from a
    normalisation config (tfvid.data.augment.normalization_config: 'channel_order', 'scale',
    'mean', 'std', 'modality'), as tfvid.data.augment.channel_affine computes it."""
    modality = config.get("modality", "rgb")
    period = 1 if modality == "flow" else 3
    if channels % period:
        raise ValueError(f"modality {modality!r} needs a multiple of 3 channels, got {channels}")
    shuffle = modality != "flow" and config.get("channel_order") == "bgr"
    mean, std = list(config["mean"]), list(config["std"])
    scale = float(config.get("scale", 1.0))
    source = [o - o % period + period - 1 - o % period if shuffle else o
              for o in range(channels)]
    mul = [scale / float(std[o % period % len(std)]) for o in range(channels)]
    add = [-float(mean[o % period % len(mean)]) / float(std[o % period % len(std)])
           for o in range(channels)]
    return source, mul, add


def uint8_channels(config: dict, channels: int) -> int:
    """Channels C0 of the uint8 input for a model input of `channels` channels: rgbdiff takes
    the L frames (3L = C + 3), the others the same C."""
    return channels + 3 if config.get("modality") == "rgbdiff" else channels


def _normalize_in_graph(x: tf.Tensor, config: dict) -> tf.Tensor:
    """uint8 (..., C0) -> float32 network input: cast, RGB differences (rgbdiff), affine."""
    x = tf.cast(x, tf.float32)
    if config.get("modality") == "rgbdiff":
        x = x[..., 3:] - x[..., :-3]
    channels = int(x.shape[-1])
    source, mul, add = normalization_affine(config, channels)
    if source != list(range(channels)):
        x = tf.gather(x, source, axis=-1)
    if any(m != 1.0 for m in mul):
        x = x * tf.constant(mul, tf.float32)
    if any(a != 0.0 for a in add):
        x = x + tf.constant(add, tf.float32)
    return x


def host_normalize(clip, config: dict) -> np.ndarray:
    """What a client does on the host: uint8 / 8-bit-scale (..., C0) -> float32 network input
    with tfvid.data.augment.normalize (RGB differences first for rgbdiff)."""
    from tfvid.data import augment
    from tfvid.data import modality as mod

    x = tf.convert_to_tensor(np.asarray(clip))
    modality = config.get("modality", "rgb")
    if modality == "rgbdiff":
        x = mod.rgb_diff_channels(x)
    return augment.normalize(tf.cast(x, tf.float32), config["backbone"], modality).numpy()


def sidecar_normalizations(sidecar: dict, input_names: Iterable[str]) -> dict[str, dict]:
    """{input name: normalisation config} from an export sidecar: 'preprocessing' for a
    one-input export, the 'streams' entries matched by modality (rgb / flow) for several."""
    names = list(input_names)
    out = {}
    pre = (sidecar or {}).get("preprocessing") or {}
    if len(names) == 1 and pre.get("normalization"):
        return {names[0]: dict(pre["normalization"])}
    for part in ((sidecar or {}).get("streams") or {}).values():
        cfg = ((part or {}).get("preprocessing") or {}).get("normalization")
        if not cfg:
            continue
        key = "flow" if cfg.get("modality") == "flow" else "rgb"
        if key in names:
            if key in out and out[key] != cfg:
                raise ValueError(f"the sidecar's streams normalise the {key!r} input in "
                                 f"different ways ({out[key]} vs {cfg}); a uint8 input cannot "
                                 f"serve both")
            out[key] = dict(cfg)
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError(f"the sidecar has no preprocessing.normalization for input(s) "
                         f"{missing}: cannot build a uint8-input model (export with "
                         f"pipelines.export, or pass the normalisation explicitly)")
    return out


# ----------------------------------------------------------------------------- conversion
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
            inputs = {k: _normalize_in_graph(v, normalizations[k]) for k, v in inputs.items()}
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
            from tfvid.export.savedmodel import read_sidecar
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
    info.update(quantize=quantize, input_shapes={n: s.shape.as_list() for n, s in zip(names, specs)},
                input_dtype="uint8" if normalizations else "float32",
                normalization=normalizations)
    out_path = os.fspath(out_path)
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        f.write(content)
    del loaded
    return out_path


def _interpreter(model_path: str | None = None, model_content: bytes | None = None, *,
                 allocate: bool = True, num_threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=model_path, model_content=model_content,
                              num_threads=num_threads)
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
    """A .tflite clip classifier: call with a clip batch of the fixed input shape (or named
    inputs: ``lite(rgb=..., flow=...)``) -> {"logits": ..., "probabilities": ...} (numpy).

    ``input_shape`` / ``input_dtype``: of the first input (the only one for a clip model);
    ``input_shapes`` / ``input_dtypes``: {name: ...} of all of them.
    """

    def __init__(self, path: str, num_threads: int | None = None):
        self.path = os.fspath(path)
        self.interpreter = _interpreter(model_path=self.path, num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        key = SIGNATURE_NAME if SIGNATURE_NAME in signatures else next(iter(signatures), None)
        if key is None:
            raise ValueError(f"{self.path}: the TFLite model has no signature")
        self.runner = self.interpreter.get_signature_runner(key)
        details = self.runner.get_input_details()
        self.input_names = list(signatures[key]["inputs"])
        self.input_name = self.input_names[0]
        self.input_shapes = {n: tuple(int(d) for d in details[n]["shape"])
                             for n in self.input_names}
        self.input_dtypes = {n: np.dtype(details[n]["dtype"]) for n in self.input_names}
        self.input_shape = self.input_shapes[self.input_name]
        self.input_dtype = self.input_dtypes[self.input_name]

    def __call__(self, clip=None, **inputs) -> dict[str, np.ndarray]:
        if isinstance(clip, dict):
            inputs = {**clip, **inputs}
        elif clip is not None:
            inputs[self.input_name] = clip
        if sorted(inputs) != sorted(self.input_names):
            raise ValueError(f"{self.path} takes inputs {self.input_names}, got {sorted(inputs)}")
        feed = {}
        for name, value in inputs.items():
            dtype = self.input_dtypes[name]
            if dtype == np.uint8 and np.asarray(value).dtype != np.uint8:
                raise ValueError(f"{self.path}: input {name!r} is uint8 (8-bit scale, normalised "
                                 f"inside), got {np.asarray(value).dtype}")
            value = np.asarray(value, dtype)
            if value.shape != self.input_shapes[name]:
                raise ValueError(f"{self.path} takes clips of shape {self.input_shapes[name]}"
                                 f"{'' if len(inputs) == 1 else ' for ' + name}, got "
                                 f"{value.shape}")
            feed[name] = value
        return {k: np.asarray(v) for k, v in self.runner(**feed).items()}

    def latency(self, inputs=None, *, runs: int = 20, warmup: int = 3) -> float:
        """Median seconds per call on `inputs` (default: zeros of the input shapes)."""
        if inputs is None:
            inputs = {n: np.zeros(s, self.input_dtypes[n]) for n, s in self.input_shapes.items()}
        for _ in range(int(warmup)):
            self(inputs)
        times = []
        for _ in range(max(1, int(runs))):
            start = time.perf_counter()
            self(inputs)
            times.append(time.perf_counter() - start)
        return float(np.median(times))


def measure_latency(tflite_path: str, threads: Sequence[int] = (1, 2), *, runs: int = 20,
                    warmup: int = 3) -> dict[str, float]:
    """{"<n>_threads_ms": median ms per call} of a .tflite model on zero inputs, one
    interpreter per thread count (ai_edge_litert, XNNPACK as it picks)."""
    out = {}
    for n in threads:
        lite = TFLiteModel(tflite_path, num_threads=int(n))
        out[f"{int(n)}_threads_ms"] = 1000.0 * lite.latency(runs=runs, warmup=warmup)
    return out


def savedmodel_latency(export_dir: str, batch_size: int = 1, time_steps: int | None = None, *,
                       runs: int = 20, warmup: int = 3) -> float:
    """Median ms per call of the SavedModel's serving_default on zero inputs of the TFLite
    shape (TensorFlow's own thread pools, i.e. every core it is allowed)."""
    loaded, signature = load_signature(resolve_export_dir(export_dir))
    shapes = fixed_input_shapes(signature, batch_size=batch_size, time_steps=time_steps)
    inputs = {k: tf.zeros(s, tf.float32) for k, s in shapes.items()}
    for _ in range(int(warmup)):
        signature(**inputs)
    times = []
    for _ in range(max(1, int(runs))):
        start = time.perf_counter()
        {k: v.numpy() for k, v in signature(**inputs).items()}
        times.append(time.perf_counter() - start)
    del loaded
    return 1000.0 * float(np.median(times))


# --------------------------------------------------------------------------- checks
def _random_inputs(lite: TFLiteModel, rng) -> dict[str, np.ndarray]:
    out = {}
    for name, shape in lite.input_shapes.items():
        if lite.input_dtypes[name] == np.uint8:
            out[name] = rng.integers(0, 256, size=shape).astype(np.uint8)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


def _reference_inputs(inputs: dict, normalizations: dict | None) -> dict:
    """The SavedModel's float inputs for TFLite inputs (uint8 ones normalised on the host)."""
    out = {}
    for name, value in inputs.items():
        value = np.asarray(value)
        if value.dtype == np.uint8:
            if not normalizations or name not in normalizations:
                raise ValueError(f"uint8 input {name!r} needs its normalisation config to be "
                                 f"compared with the SavedModel")
            value = host_normalize(value, normalizations[name])
        out[name] = tf.constant(value.astype(np.float32))
    return out


def compare(export_dir: str, tflite_path: str, samples: Iterable | None = None,
            labels: Sequence[int] | None = None, *, normalizations: dict | None = None,
            num_random: int = 2, seed: int = 0) -> dict:
    """TFLite vs SavedModel on clips: {"clips", "max_abs_diff" (logits), "max_abs_diff_all"
    (every shared output), "top1_agreement" (fraction), "top1_disagreements" (count),
    "finite", and with labels "accuracy_tflite", "accuracy_savedmodel" (fractions)}.

    samples: arrays (the first input) or dicts {input name: array} of the TFLite input
    shapes and dtypes; None: ``num_random`` random clips (N(0, 1), uint8 uniform).
    normalizations: {input name: config} for uint8 inputs (the SavedModel gets them
    normalised on the host, `host_normalize`); default: from the export's sidecar.
    """
    export_dir = resolve_export_dir(export_dir)
    loaded, signature = load_signature(export_dir)  # keep `loaded`: it owns the variables
    lite = TFLiteModel(tflite_path)
    if normalizations is None and any(d == np.uint8 for d in lite.input_dtypes.values()):
        from tfvid.export.savedmodel import read_sidecar
        normalizations = sidecar_normalizations(read_sidecar(export_dir), lite.input_names)
    if samples is None:
        rng = np.random.default_rng(seed)
        samples = [_random_inputs(lite, rng) for _ in range(int(num_random))]
    worst = worst_all = 0.0
    agree = count = 0
    finite = True
    hits_lite = hits_saved = 0
    labels = None if labels is None else list(labels)
    for i, sample in enumerate(samples):
        inputs = sample if isinstance(sample, dict) else {lite.input_name: sample}
        expected = {k: v.numpy() for k, v in _numeric_outputs(
            signature(**_reference_inputs(inputs, normalizations))).items()}
        got = {k: v for k, v in lite(inputs).items() if np.issubdtype(v.dtype, np.floating)}
        shared = sorted(set(expected) & set(got))
        if not shared:
            raise ParityError(f"{tflite_path}: no output name in common with the SavedModel "
                              f"({sorted(got)} vs {sorted(expected)})")
        for name in shared:
            if not np.all(np.isfinite(got[name])):
                finite = False
                continue
            diff = float(np.max(np.abs(got[name] - expected[name])))
            worst_all = max(worst_all, diff)
        key = "logits" if "logits" in shared else shared[0]
        if np.all(np.isfinite(got[key])):
            worst = max(worst, float(np.max(np.abs(got[key] - expected[key]))))
        top_lite, top_saved = np.argmax(got[key], -1), np.argmax(expected[key], -1)
        agree += int(np.sum(top_lite == top_saved))
        count += int(top_lite.size)
        if labels is not None:
            label = np.asarray(labels[i]).reshape(-1)
            hits_lite += int(np.sum(top_lite == label))
            hits_saved += int(np.sum(top_saved == label))
    if not count:
        raise ValueError("compare: no clips")
    out = {"clips": count, "max_abs_diff": worst, "max_abs_diff_all": worst_all,
           "top1_agreement": agree / count, "top1_disagreements": count - agree,
           "finite": finite}
    if labels is not None:
        out.update(accuracy_tflite=hits_lite / count, accuracy_savedmodel=hits_saved / count)
    return out


def check_parity(export_dir: str, tflite_path: str, num_samples: int = 2, atol: float = 1e-4,
                 seed: int = 0, normalizations: dict | None = None) -> float:
    """Max |TFLite - SavedModel| over ``num_samples`` random N(0, 1) clips (uniform uint8
    clips, normalised on the host for the SavedModel, for a uint8-input model) and every
    shared output (logits, probabilities); raises ParityError above ``atol`` or on NaN."""
    stats = compare(export_dir, tflite_path, None, normalizations=normalizations,
                    num_random=num_samples, seed=seed)
    if not stats["finite"]:
        raise ParityError(f"{tflite_path}: an output is not finite")
    worst = stats["max_abs_diff_all"]
    if worst > atol:
        raise ParityError(f"{tflite_path}: max |tflite - SavedModel| = {worst:.3g} > atol "
                          f"{atol:g}")
    return worst


def check_top1(stats: dict, tflite_path: str) -> None:
    """Raises ParityError unless the TFLite top-1 equals the SavedModel's on every clip
    (`compare` stats) and every output is finite."""
    if not stats["finite"]:
        raise ParityError(f"{tflite_path}: an output is not finite")
    if stats["top1_disagreements"]:
        raise ParityError(f"{tflite_path}: top-1 differs from the SavedModel's on "
                          f"{stats['top1_disagreements']} of {stats['clips']} clips (max "
                          f"|logit diff| {stats['max_abs_diff']:.3g})")
