"""The TF Serving layout of a tfvid export: names of the signatures, inputs and files, and
the integer version folders.

    <export_base>/<name>/<version>/          integer version, as TF Serving expects
        saved_model.pb, variables/, fingerprint.pb
        assets.extra/tfvid.json             sidecar (tfvid.export.sidecar)
        assets.extra/tf_serving_warmup_requests   (tfvid.export.warmup)
"""
from __future__ import annotations

import os

SIGNATURE_NAME = "serving_default"
#: The float32 clip signature (every export has it; TFLite conversion and predict use it).
CLIP_SIGNATURE = "clip"
#: The float32 signature of an export of a model on cached features ((B, T, D) "features").
FEATURES_SIGNATURE = "features"
INPUT_NAME = "clip"
#: The input of a features export: float32 (B, T, D) per-frame feature rows.
FEATURES_INPUT = "features"
#: The float outputs every signature has (plus top_k_indices and top_k_classes, see
#: tfvid.export.signatures.OUTPUTS).
OUTPUT_NAMES = ("logits", "probabilities")
SIDECAR_FILE = "tfvid.json"
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
SIDECAR_FORMAT = 1


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

