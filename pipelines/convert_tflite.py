"""Converts a SavedModel export to TFLite (builtin ops only) and checks it against the export.

    python -m pipelines.convert_tflite --export_dir=saved_models/stnet
    tfvid-convert-tflite --export_dir=saved_models/stnet/3 --time_steps=7

--export_dir is a version dir (saved_models/<name>/<version>) or a model dir (its newest
version). The .tflite goes beside the version dir by default, as saved_models/<name>/
<version>.tflite: TF Serving only loads integer-named folders, so it ignores the file, and the
served version stays untouched. A <output>.json report sits next to it (source export, input
shape, ops, parity, class names from the export's sidecar, for on-device clients).

TFLite gets a fixed input shape (--batch_size, default 1; T from the signature, else
--time_steps, else the T of the sidecar's test sampler, see `sidecar_time_steps`). After
conversion the .tflite runs --parity_samples random clips through ai_edge_litert and the
SavedModel's serving_default; above --atol the file is removed and the job fails. A model
needing non-builtin ops (Select TF ops or custom ops) fails with a message naming the export.

T from the sidecar's sampler (variable-T exports without --time_steps):
  * a sampler with a fixed test T (TSN, dense, uniform, SDI, StNet): that T (TSN / StNet: its
    test_segments);
  * StNet with the short-video rule (min_segments): test_segments, the most super-images a
    test video gets;
  * multiple dynamic images (MDI, the dynamic image networks): the number of windows depends on
    the video (one every `stride` frames), so T = the sampler's max_windows, the most windows
    a training clip keeps. A client runs a video with more windows through the .tflite in
    groups of max_windows windows (the last group repeats its windows to fill up) and averages
    the logits; a shorter video repeats its windows up to max_windows. Give --time_steps for
    another count.
The report records the T and where it came from ("time_steps_source").

The export must have its sidecar (assets.extra/tfvid.json), consistent with the signature: a
missing, corrupt or contradicting sidecar fails with a one-line error naming the file and the
field (tfvid.export.read_sidecar).
"""
from __future__ import annotations

import json
import logging
import os

from absl import flags

from pipelines.common import check_args, define_flag, flag_value, program_name, run_job

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


def sidecar_time_steps_rule(sidecar: dict) -> tuple[int | None, str]:
    """(T, where it comes from) of the sidecar's test sampler by the module docstring's rule:
    its fixed test T, else its test_segments (StNet's short-video rule) or max_windows (MDI);
    (None, reason) without a sampler."""
    from tfvid.data import sampling

    config = sidecar.get("sampling")
    if not config:
        return None, "the sidecar has no 'sampling'"
    sampler = sampling.get_sampler(**config)
    steps = sampler.num_steps("test")
    if steps is not None:
        return int(steps), f"the test T of the sidecar's {sampler.name!r} sampler"
    for key in ("test_segments", "max_windows"):
        if getattr(sampler, key, None):
            return (int(getattr(sampler, key)),
                    f"{key} of the sidecar's {sampler.name!r} sampler (its test T depends on "
                    f"the video length)")
    return None, f"the sidecar's {sampler.name!r} sampler has no fixed T"


def sidecar_time_steps(sidecar: dict) -> int | None:
    """T of the sidecar's test sampler (`sidecar_time_steps_rule`), None without one."""
    return sidecar_time_steps_rule(sidecar)[0]


def _check_options(batch_size, time_steps, parity_samples, atol, optimize) -> None:
    if int(batch_size) < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    if time_steps is not None and int(time_steps) < 1:
        raise ValueError(f"--time_steps must be >= 1, got {time_steps}")
    if int(parity_samples) < 1:
        raise ValueError(f"--parity_samples must be >= 1 (the .tflite is always checked), got "
                         f"{parity_samples}")
    if not float(atol) >= 0:
        raise ValueError(f"--atol must be >= 0, got {atol}")
    if optimize not in ("none", "default"):
        raise ValueError(f"--optimize must be none or default, got {optimize!r}")


def convert(export_dir: str, *, output: str | None = None, time_steps: int | None = None,
            batch_size: int = 1, optimize: str = "none", parity_samples: int = 2,
            atol: float = 1e-4) -> dict:
    """Converts, checks parity and writes the report; returns the report dict.

    Raises FileNotFoundError (no export, no sidecar), ValueError (bad option; a sidecar that is
    corrupt or contradicts the signature, tfvid.export.SidecarError; no T for a variable-T
    export), tflite.TFLiteConversionError, tflite.ParityError.
    """
    from tfvid.atomic import atomic_path
    from tfvid.export import read_sidecar, resolve_export_dir
    from tfvid.export import tflite

    _check_options(batch_size, time_steps, parity_samples, atol, optimize)
    export_dir = resolve_export_dir(export_dir)
    loaded, signature = tflite.load_signature(export_dir)
    sidecar = read_sidecar(export_dir, signature)      # checked against the signature
    shape = tflite.signature_input_shape(signature)
    del loaded, signature
    source = "the signature" if shape[1] is not None else "--time_steps"
    if shape[1] is None and time_steps is None:
        time_steps, source = sidecar_time_steps_rule(sidecar)
        if time_steps is None:
            raise ValueError(f"the export's time axis T is variable and {source}: give "
                             f"--time_steps")
    if not sidecar.get("preprocessing"):
        logging.warning("%s: the sidecar has no 'preprocessing'; the report cannot tell clients "
                        "how to prepare clips", export_dir)
    output = output or default_output(export_dir)
    if os.path.isdir(output):
        raise ValueError(f"--output={output} is a directory; give the .tflite file's path")
    optimizations = None if optimize == "none" else [optimize]
    input_shape = tflite.fixed_input_shape(shape, batch_size=batch_size, time_steps=time_steps)
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
        "input_shape": input_shape,
        "time_steps_source": source,
        "optimizations": optimizations or [],
        "ops": tflite.tflite_ops(path),
        "parity": {"samples": int(parity_samples), "max_abs_diff": diff, "atol": atol},
        "size_bytes": os.path.getsize(path),
        "class_names": sidecar.get("class_names"),
        "preprocessing": sidecar.get("preprocessing"),
        "sampling": sidecar.get("sampling"),
        "decoding": sidecar.get("decoding"),
    }
    with atomic_path(path + ".json") as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report


def job_error(job: str, err: BaseException) -> SystemExit:
    """SystemExit printing '<prog>: error: <job> failed: <message>' on one line (exit status 1,
    no traceback): for errors that come from what the user gave (flags, files)."""
    text = " ".join(str(err).split()) or type(err).__name__
    if len(text) > 2000:   # converter / TF errors can be long
        text = text[:2000] + "..."
    return SystemExit(f"{program_name()}: error: {job} failed: {text}")


def main(argv):
    check_args(argv, "export_dir")
    from tfvid.export.tflite import ParityError, TFLiteConversionError
    try:   # flag_value: this job's default even when train defined --batch_size first
        report = convert(FLAGS.export_dir, output=FLAGS.output, time_steps=FLAGS.time_steps,
                         batch_size=flag_value("batch_size", 1), optimize=FLAGS.optimize,
                         parity_samples=FLAGS.parity_samples, atol=FLAGS.atol)
    except (OSError, ValueError, TFLiteConversionError, ParityError) as e:
        # user mistakes (no export, bad sidecar, bad flag, unwritable --output): one line, no
        # traceback, exit status 1
        raise job_error("convert_tflite", e) from None
    parity = report["parity"]
    print(f"wrote {report['tflite']} ({report['size_bytes']} bytes), input "
          f"{report['input_shape']}")
    print(f"parity: max |tflite - SavedModel| = {parity['max_abs_diff']:.3g} over "
          f"{parity['samples']} random clips (atol {parity['atol']:g})")
    print(f"ops ({len(report['ops'])}, builtin only): {', '.join(report['ops'])}")


def run():
    """Console-script entry point (tfvid-convert-tflite)."""
    run_job(main)


if __name__ == "__main__":
    run()
