"""Running a .tflite model with LiteRT (ai_edge_litert; tf.lite.Interpreter is deprecated):
its ops, a callable wrapper and its latency on this CPU."""
from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np
from tfvid.export.layout import SIGNATURE_NAME


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
