"""Checks of a .tflite against its SavedModel export: logit differences, top-1 agreement and
accuracy on clips (`compare`), the float32 parity contract (`check_parity`) and the top-1
contract of float32 / float16 (`check_top1`); the SavedModel's latency at the TFLite input
shape (`savedmodel_latency`)."""
from __future__ import annotations

import time
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from tfvid.export.layout import resolve_export_dir
from tfvid.export.tflite_convert import _numeric_outputs, fixed_input_shapes, load_signature
from tfvid.export.tflite_runtime import TFLiteModel
from tfvid.export.tflite_uint8 import host_normalize, sidecar_normalizations


class ParityError(AssertionError):
    """TFLite outputs differ from the SavedModel's by more than the tolerance (or are NaN)."""


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
        from tfvid.export.sidecar import read_sidecar
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
