"""Loading an export: the float32 clip signature and the checked sidecar.

    serving, sidecar = load_export("saved_models/tsn_rgb")      # newest version
    out = serving(clips)            # {"logits", "probabilities", "top_k_indices", ...}
"""
from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from tfvid.export.layout import (CLIP_SIGNATURE, FEATURES_SIGNATURE, INPUT_NAME,
                                 SIGNATURE_NAME, resolve_export_dir)
from tfvid.export.sidecar import read_sidecar


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
        """The "clip" input's spec (the only input's, e.g. "features")."""
        specs = self.signature.structured_input_signature[1]
        return specs[INPUT_NAME] if INPUT_NAME in specs or len(specs) != 1 else \
            next(iter(specs.values()))

    def __call__(self, clip=None, **inputs) -> dict[str, tf.Tensor]:
        if isinstance(clip, dict):
            inputs = {**clip, **inputs}
        elif clip is not None:
            specs = self.signature.structured_input_signature[1]
            key = INPUT_NAME if INPUT_NAME in specs or len(specs) != 1 else next(iter(specs))
            inputs[key] = clip
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
    """The float32 clip signature of a loaded export: "clip" ("features" for a model on
    cached features), else (older exports) a serving_default whose inputs are float32."""
    sigs = saved_model.signatures
    for name in (CLIP_SIGNATURE, FEATURES_SIGNATURE):
        if name in sigs:
            return sigs[name]
    if SIGNATURE_NAME in sigs and all(
            v.dtype == tf.float32
            for v in sigs[SIGNATURE_NAME].structured_input_signature[1].values()):
        return sigs[SIGNATURE_NAME]
    raise ValueError(f"{path}: no {CLIP_SIGNATURE!r} signature (found {sorted(sigs)})")


def load_export(path: str, *, require: Sequence[str] = ()) -> tuple[LoadedExport, dict[str, Any]]:
    """Loads an export (version dir, or model dir = newest version) -> (serving fn, sidecar);
    the sidecar is checked against the loaded signature (`read_sidecar`)."""
    path = resolve_export_dir(path)
    serving = LoadedExport(path)
    return serving, read_sidecar(path, serving.signature, require=require)

