"""Converts a SavedModel export to TFLite (builtin ops only) and checks it against the export.

    python -m pipelines.convert_tflite --export_dir=saved_models/stnet
    tfvid-convert-tflite --export_dir=saved_models/stnet/3 --time_steps=7

--export_dir is a version dir (saved_models/<name>/<version>) or a model dir (its newest
version). The .tflite goes beside the version dir by default, as saved_models/<name>/
<version>.tflite: TF Serving only loads integer-named folders, so it ignores the file, and the
served version stays untouched. A <output>.json report sits next to it (source export, input
shape, ops, parity, size, latency, class names from the export's sidecar, for on-device
clients).

TFLite gets a fixed input shape (--batch_size, default 1; T from the signature, else
--time_steps, else the T of the sidecar's test sampler, see `sidecar_time_steps`). After
conversion the .tflite runs --parity_samples random clips through ai_edge_litert and the
SavedModel's serving_default; above --atol the file is removed and the job fails. A model
needing non-builtin ops (Select TF ops or custom ops) fails with a message naming the export.

Variants (one .tflite and one report each; default names <version>-<quantize>[-uint8].tflite):

    --quantize=none|dynamic|float16|int8   float32; int8 weights (dynamic range); float16
                                           weights; int8 weights and activations with float
                                           input / output, calibrated on
                                           --representative_data=GLOB (training TFRecords or
                                           .list files, build_dataset in test mode with the
                                           sidecar's sampler, --representative_samples=N)
    --uint8_input                          input uint8 (B, T, S, S, C) on the 8-bit scale
                                           (sampled, cropped), normalised inside the model with
                                           the sidecar's preprocessing constants

Checks against the SavedModel on evaluation clips (--eval_data=GLOB, labelled; else
--parity_samples random clips): float32 and float16 must give the SavedModel's top-1 on every
clip; dynamic and int8 report their numbers and, with labels, fail when their top-1 accuracy
is more than --max_top1_drop points (1.0) below the SavedModel's. Every failure removes the
.tflite. The report adds the file size, LiteRT latency per clip with --latency_threads (1,2),
the largest logit difference, top-1 agreement and (labels) both accuracies.

T of a variable-T export without --time_steps: the sidecar's test sampler (TSN / StNet
test_segments, MDI max_windows; tfvid.export.tflite_report, which does this job's work).

The export must have its sidecar (assets.extra/tfvid.json), consistent with the signature: a
missing, corrupt or contradicting sidecar fails with a one-line error naming the file and the
field (tfvid.export.read_sidecar).
"""
from __future__ import annotations

from absl import flags

from pipelines.common import check_args, define_flag, flag_value, job_error, run_job
from tfvid.export import tflite_report
from tfvid.export.tflite import ParityError, TFLiteConversionError

FLAGS = flags.FLAGS

define_flag("string", "export_dir", None, "Export version dir, or model dir (newest version).")
define_flag("string", "output", None, "The .tflite file (default: <model dir>/<version>"
            "[-<quantize>][-uint8].tflite, beside the version dir).")
define_flag("integer", "time_steps", None, "T of the TFLite input when the export's T is "
            "variable (default: the sidecar's test sampler).")
define_flag("integer", "batch_size", 1, "Fixed batch size of the TFLite input.")
define_flag("enum", "quantize", "none", "none: float32; dynamic: int8 weights (dynamic-range); "
            "float16: float16 weights; int8: int8 weights and activations calibrated on "
            "--representative_data (float input / output).",
            enum_values=["none", "dynamic", "float16", "int8"])
define_flag("enum", "optimize", "none", "Deprecated: default = --quantize=dynamic.",
            enum_values=["none", "default"])
define_flag("bool", "uint8_input", False, "TFLite input uint8 (B, T, S, S, C) on the 8-bit "
            "scale (sampled and cropped), normalised inside the model with the sidecar's "
            "preprocessing constants.")
define_flag("string", "representative_data", None, "Calibration clips for --quantize=int8: "
            "TFRecord shards or .list files (glob, comma-separated), read with build_dataset "
            "in test mode and the sidecar's sampler / preprocessing.")
define_flag("integer", "representative_samples", 100, "Clips taken from "
            "--representative_data.")
define_flag("string", "eval_data", None, "Labelled evaluation clips (TFRecords / .list, glob, "
            "comma-separated): logit difference, top-1 agreement and top-1 accuracy against "
            "the SavedModel. Default: --parity_samples random clips (no accuracy).")
define_flag("integer", "eval_samples", 0, "Clips taken from --eval_data (0 = all).")
define_flag("float", "max_top1_drop", 1.0, "dynamic / int8 with labelled --eval_data: fail "
            "when the TFLite top-1 accuracy is more than this many points below the "
            "SavedModel's.")
define_flag("string", "latency_threads", "1,2", "LiteRT thread counts to time (comma-"
            "separated; empty: no latency).")
define_flag("integer", "latency_runs", 20, "Timed runs per thread count (median reported).")
define_flag("integer", "parity_samples", 2, "Random clips compared against the SavedModel.")
define_flag("float", "atol", 1e-4, "Largest allowed |tflite - SavedModel| output difference "
            "(float32 only; float32 and float16 must also agree on every top-1).")


# The library functions of this job (tfvid.export.tflite_report), under their old names too.
convert = tflite_report.convert
default_output = tflite_report.default_output
load_clips = tflite_report.load_clips
sidecar_time_steps = tflite_report.sidecar_time_steps
sidecar_time_steps_rule = tflite_report.sidecar_time_steps_rule


def _threads(text) -> list[int]:
    if not text:
        return []
    try:
        out = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--latency_threads must be comma-separated integers, got "
                         f"{text!r}") from None
    if any(t < 1 for t in out):
        raise ValueError(f"--latency_threads must be >= 1, got {text!r}")
    return out


def main(argv):
    check_args(argv, "export_dir")
    try:   # flag_value: this job's default even when train defined --batch_size first
        report = convert(FLAGS.export_dir, output=FLAGS.output, time_steps=FLAGS.time_steps,
                         batch_size=flag_value("batch_size", 1), optimize=FLAGS.optimize,
                         parity_samples=FLAGS.parity_samples, atol=FLAGS.atol,
                         quantize=(None if FLAGS.quantize == "none" else FLAGS.quantize),
                         uint8_input=FLAGS.uint8_input,
                         representative_data=FLAGS.representative_data,
                         representative_samples=FLAGS.representative_samples,
                         eval_data=FLAGS.eval_data, eval_samples=FLAGS.eval_samples,
                         max_top1_drop=FLAGS.max_top1_drop,
                         latency_threads=_threads(FLAGS.latency_threads),
                         latency_runs=FLAGS.latency_runs)
    except (OSError, ValueError, TFLiteConversionError, ParityError) as e:
        # user mistakes (no export, bad sidecar, bad flag, unwritable --output): one line, no
        # traceback, exit status 1
        raise job_error("convert_tflite", e) from None
    parity = report["parity"]
    print(f"wrote {report['tflite']} ({report['size_bytes']} bytes, {report['quantize']}"
          f"{', uint8 input' if report['input_dtype'] == 'uint8' else ''}), input "
          f"{report['input_shape']}")
    print(f"parity: max |tflite - SavedModel| = {parity['max_abs_diff']:.3g}"
          + (f" (atol {parity['atol']:g})" if parity.get("atol") is not None else "")
          + f"; top-1 agreement {100 * parity['top1_agreement']:.1f}% over {parity['clips']} "
          f"{parity['source']}")
    if "accuracy_tflite" in parity:
        print(f"top-1 accuracy: tflite {100 * parity['accuracy_tflite']:.2f}%, SavedModel "
              f"{100 * parity['accuracy_savedmodel']:.2f}%")
    if report["latency_ms"]:
        print("latency per clip: " + ", ".join(
            f"{k.replace('_threads_ms', '')} thread(s) {v:.2f} ms"
            for k, v in report["latency_ms"].items()))
    print(f"ops ({len(report['ops'])}, builtin only): {', '.join(report['ops'])}")


def run():
    """Console-script entry point (tfvid-convert-tflite)."""
    run_job(main)


if __name__ == "__main__":
    run()
