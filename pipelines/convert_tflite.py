"""Converts a SavedModel export to TFLite (builtin ops only) and checks it against the export.

    python -m pipelines.convert_tflite --export_dir=saved_models/stnet
    tfvid-convert-tflite --export_dir=saved_models/stnet/3 --time_steps=7

--export_dir is a version dir (saved_models/<name>/<version>) or a model dir (its newest
version). The .tflite goes beside the version dir by default, as saved_models/<name>/
<version>.tflite: TF Serving only loads integer-named folders, so it ignores the file, and the
served version stays untouched. A <output>.json report sits next to it (source export, input
shape, ops, parity, class names from the export's sidecar, for on-device clients).

TFLite gets a fixed input shape (--batch_size, default 1; T from the signature, else
--time_steps, else the T of the sidecar's test sampler). After conversion the .tflite runs
--parity_samples random clips through ai_edge_litert and the SavedModel's serving_default;
above --atol the file is removed and the job fails. A model needing non-builtin ops (Select TF
ops or custom ops) fails with a message naming the export.
"""
from __future__ import annotations

import json
import os

from absl import app, flags

from pipelines.common import check_args, define_flag, flag_value

FLAGS = flags.FLAGS

define_flag("string", "export_dir", None, "Export version dir, or model dir (newest version).")
define_flag("string", "output", None, "The .tflite file (default: <model dir>/<version>.tflite, "
            "beside the version dir).")
define_flag("integer", "time_steps", None, "T of the TFLite input when the export's T is "
            "variable (default: the sidecar's test sampler).")
define_flag("integer", "batch_size", 1, "Fixed batch size of the TFLite input.")
define_flag("enum", "optimize", "none", "none: float32; default: tf.lite.Optimize.DEFAULT "
            "(dynamic-range weight quantization; raise --atol).", enum_values=["none", "default"])
define_flag("integer", "parity_samples", 2, "Random clips compared against the SavedModel.")
define_flag("float", "atol", 1e-4, "Largest allowed |tflite - SavedModel| output difference.")


def default_output(export_dir: str) -> str:
    """saved_models/<name>/<version> -> saved_models/<name>/<version>.tflite."""
    export_dir = os.path.normpath(export_dir)
    return os.path.join(os.path.dirname(export_dir), os.path.basename(export_dir) + ".tflite")


def sidecar_time_steps(sidecar: dict) -> int | None:
    """T of the sidecar's test sampler (test_segments, num_segments or num_frames)."""
    sampling = sidecar.get("sampling") or {}
    for key in ("test_segments", "num_segments", "num_frames"):
        if sampling.get(key):
            return int(sampling[key])
    return None


def convert(export_dir: str, *, output: str | None = None, time_steps: int | None = None,
            batch_size: int = 1, optimize: str = "none", parity_samples: int = 2,
            atol: float = 1e-4) -> dict:
    """Converts, checks parity and writes the report; returns the report dict."""
    from tfvid.export import read_sidecar, resolve_export_dir
    from tfvid.export import tflite

    export_dir = resolve_export_dir(export_dir)
    try:
        sidecar = read_sidecar(export_dir)
    except FileNotFoundError:
        sidecar = {}
    loaded, signature = tflite.load_signature(export_dir)
    shape = tflite.signature_input_shape(signature)
    del loaded, signature
    if shape[1] is None and time_steps is None:
        time_steps = sidecar_time_steps(sidecar)
    output = output or default_output(export_dir)
    optimizations = None if optimize == "none" else [optimize]
    path = tflite.convert_to_tflite(export_dir, output, optimizations=optimizations,
                                    batch_size=batch_size, time_steps=time_steps)
    try:
        diff = tflite.check_parity(export_dir, path, num_samples=parity_samples, atol=atol)
    except Exception:   # ParityError or a failed check: leave no unchecked .tflite behind
        os.remove(path)
        raise
    report = {
        "tflite": os.path.abspath(path),
        "export_dir": os.path.abspath(export_dir),
        "input_shape": tflite.fixed_input_shape(shape, batch_size=batch_size,
                                                time_steps=time_steps),
        "optimizations": optimizations or [],
        "ops": tflite.tflite_ops(path),
        "parity": {"samples": int(parity_samples), "max_abs_diff": diff, "atol": atol},
        "size_bytes": os.path.getsize(path),
        "class_names": sidecar.get("class_names"),
        "preprocessing": sidecar.get("preprocessing"),
        "sampling": sidecar.get("sampling"),
    }
    with open(path + ".json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report


def main(argv):
    check_args(argv, "export_dir")
    from tfvid.export.tflite import ParityError, TFLiteConversionError
    try:   # flag_value: this job's default even when train defined --batch_size first
        report = convert(FLAGS.export_dir, output=FLAGS.output, time_steps=FLAGS.time_steps,
                         batch_size=flag_value("batch_size", 1), optimize=FLAGS.optimize,
                         parity_samples=FLAGS.parity_samples, atol=FLAGS.atol)
    except (FileNotFoundError, ValueError, TFLiteConversionError, ParityError) as e:
        raise SystemExit(f"convert_tflite failed: {e}") from e
    parity = report["parity"]
    print(f"wrote {report['tflite']} ({report['size_bytes']} bytes), input "
          f"{report['input_shape']}")
    print(f"parity: max |tflite - SavedModel| = {parity['max_abs_diff']:.3g} over "
          f"{parity['samples']} random clips (atol {parity['atol']:g})")
    print(f"ops ({len(report['ops'])}, builtin only): {', '.join(report['ops'])}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
