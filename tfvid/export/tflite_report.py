"""The convert_tflite job's work (pipelines/convert_tflite.py and the tflite benchmark call it):
convert an export, check the .tflite against it and write the report beside it.

    report = convert("saved_models/tsn/1", quantize="int8", representative_data=train_files,
                     eval_data=test_files)

T from the sidecar's sampler (variable-T exports without time_steps):
  * a sampler with a fixed test T (TSN, dense, uniform, SDI, StNet): that T (TSN / StNet: its
    test_segments);
  * StNet with the short-video rule (min_segments): test_segments, the most super-images a
    test video gets;
  * multiple dynamic images (MDI, the dynamic image networks): the number of windows depends on
    the video (one every `stride` frames), so T = the sampler's max_windows, the most windows
    a training clip keeps. A client runs a video with more windows through the .tflite in
    groups of max_windows windows (the last group repeats its windows to fill up) and averages
    the logits; a shorter video repeats its windows up to max_windows. Give time_steps for
    another count.
The report records the T and where it came from ("time_steps_source"). Clips for calibration
and evaluation are read with build_dataset in test mode (one centre crop) and the sidecar's
sampler and preprocessing (`load_clips`). The checks (tfvid.export.tflite: compare, check_parity,
check_top1) are looked up on that module, so a test may replace them there.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np

from tfvid.atomic import atomic_path
from tfvid.data import pipeline, sampling
from tfvid.export import tflite
from tfvid.export.layout import resolve_export_dir
from tfvid.export.sidecar import read_sidecar
from tfvid.export.tflite_convert import QUANTIZATIONS


def default_output(export_dir: str, quantize: str = "none", uint8_input: bool = False) -> str:
    """saved_models/<name>/<version> -> saved_models/<name>/<version>.tflite (float32), or
    <version>-<quantize>[-uint8].tflite for the other variants."""
    export_dir = os.path.normpath(export_dir)
    suffix = ("" if quantize in (None, "none") else f"-{quantize}") + ("-uint8" if uint8_input
                                                                        else "")
    return os.path.join(os.path.dirname(export_dir),
                        os.path.basename(export_dir) + suffix + ".tflite")


def sidecar_time_steps_rule(sidecar: dict) -> tuple[int | None, str]:
    """(T, where it comes from) of the sidecar's test sampler by the module docstring's rule:
    its fixed test T, else its test_segments (StNet's short-video rule) or max_windows (MDI);
    (None, reason) without a sampler."""
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


def check_options(batch_size, time_steps, parity_samples, atol, optimize, quantize="none",
                   representative_samples=1, max_top1_drop=1.0) -> None:
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
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got "
                         f"{quantize!r}")
    if int(representative_samples) < 1:
        raise ValueError(f"--representative_samples must be >= 1, got {representative_samples}")
    if not float(max_top1_drop) >= 0:
        raise ValueError(f"--max_top1_drop must be >= 0, got {max_top1_drop}")


def load_clips(files, sidecar: dict, input_shape, *, limit: int = 0, uint8: bool = False,
               batch_size: int = 1):
    """(samples, labels) from TFRecord shards / .list files read with build_dataset in test
    mode (one centre crop) and the export sidecar's sampler and preprocessing.

    samples: arrays of the TFLite `input_shape` (batch_size, T, S, S, C): float32 network
    input, or with `uint8` the clip on the 8-bit scale before normalisation rounded to uint8
    (input of a --uint8_input model; its C is the model's, 3L for rgbdiff is not supported).
    A video whose T differs from the input's (MDI windows) repeats its steps cyclically, or
    keeps the first T. labels: int (batch_size,) arrays (-1 without a label). Invalid records
    are skipped. limit: clips to take (0 = all).
    """
    pre = sidecar.get("preprocessing") or {}
    if not sidecar.get("sampling") or not pre.get("backbone"):
        raise ValueError("reading clips needs the export sidecar's 'sampling' and "
                         "'preprocessing' (backbone, modality); export with pipelines.export")
    modality = pre.get("modality", "rgb")
    if uint8 and modality == "rgbdiff":
        raise ValueError("uint8 clips from data are not supported for modality 'rgbdiff' (the "
                         "records give RGB differences, the uint8 model takes the frames)")
    sampler = sampling.get_sampler(**sidecar["sampling"])
    shape = [int(d) for d in input_shape]
    time_steps, size = shape[1], shape[2]

    # uint8: the clip on the 8-bit scale, before differences / normalisation
    ds = pipeline.build_dataset(files, sampler=sampler, mode="test", modality=modality,
                                batch_size=1, input_size=size, backbone=pre["backbone"],
                                num_crops=1, repeat=False, normalize=not uint8)
    samples, labels, pending, pending_labels = [], [], [], []
    for element in ds.as_numpy_iterator():
        if not bool(element["valid"][0]):
            continue
        clip = element["clip"][0, 0]                                  # (T', S, S, C)
        clip = clip[np.arange(time_steps) % clip.shape[0]]
        if uint8:
            clip = np.clip(np.rint(clip), 0, 255).astype(np.uint8)
        pending.append(clip)
        pending_labels.append(int(element["label"][0]))
        if len(pending) == shape[0]:
            samples.append(np.stack(pending))
            labels.append(np.asarray(pending_labels))
            pending, pending_labels = [], []
            if limit and len(samples) >= int(limit):
                break
    if not samples:
        raise ValueError(f"no valid clips in {files}")
    return samples, labels


def report_path(path: str) -> str:
    return path + ".json"


def convert(export_dir: str, *, output: str | None = None, time_steps: int | None = None,
            batch_size: int = 1, optimize: str = "none", parity_samples: int = 2,
            atol: float = 1e-4, quantize: str | None = None, uint8_input: bool = False,
            representative_data=None, representative_samples: int = 100, eval_data=None,
            eval_samples: int = 0, max_top1_drop: float = 1.0,
            latency_threads=(1, 2), latency_runs: int = 20) -> dict:
    """Converts, checks the .tflite against the export and writes the report (JSON beside the
    .tflite); returns the report dict.

    Checks: float32 (--quantize=none) within --atol on random clips; float32 and float16 the
    SavedModel's top-1 on every evaluation clip (--eval_data, else the random clips); dynamic
    and int8 with labelled eval data: top-1 accuracy at most --max_top1_drop points below the
    SavedModel's. A failed check removes the .tflite and raises ParityError. The report has
    the file size, LiteRT latency per clip for each of `latency_threads`, the max logit
    difference, top-1 agreement and (labels) accuracies.

    Raises FileNotFoundError (no export, no sidecar), ValueError (bad option; a sidecar that is
    corrupt or contradicts the signature, tfvid.export.SidecarError; no T for a variable-T
    export), tflite.TFLiteConversionError, tflite.ParityError.
    """
    if quantize is None:
        quantize = "dynamic" if optimize == "default" else "none"
    check_options(batch_size, time_steps, parity_samples, atol, optimize, quantize,
                   representative_samples, max_top1_drop)
    if quantize == "int8" and not representative_data:
        raise ValueError("--quantize=int8 needs --representative_data (calibration clips from "
                         "the training records)")
    export_dir = resolve_export_dir(export_dir)
    loaded, signature = tflite.load_signature(export_dir)
    sidecar = read_sidecar(export_dir, signature)      # checked against the signature
    specs = tflite.signature_input_specs(signature)
    shape = tflite.signature_input_shape(signature)
    del loaded, signature
    source = "the signature" if shape[1] is not None else "--time_steps"
    if shape[1] is None and time_steps is None:
        time_steps, source = sidecar_time_steps_rule(sidecar)
        if time_steps is None:
            raise ValueError(f"the export's time axis T is variable and {source}: give "
                             f"--time_steps")
    if not sidecar.get("preprocessing") and not sidecar.get("streams"):
        logging.warning("%s: the sidecar has no 'preprocessing'; the report cannot tell clients "
                        "how to prepare clips", export_dir)
    if (representative_data or eval_data) and len(specs) != 1:
        raise ValueError(f"--representative_data / --eval_data read one clip input; this export "
                         f"has the inputs {sorted(specs)}")
    output = output or default_output(export_dir, quantize, uint8_input)
    if os.path.isdir(output):
        raise ValueError(f"--output={output} is a directory; give the .tflite file's path")
    input_shape = tflite.fixed_input_shape(shape, batch_size=batch_size, time_steps=time_steps)
    normalizations = (tflite.sidecar_normalizations(sidecar, list(specs)) if uint8_input
                      else None)
    representative = None
    if representative_data:
        clips, _ = load_clips(representative_data, sidecar, input_shape,
                              limit=representative_samples, uint8=uint8_input,
                              batch_size=batch_size)
        representative = clips
    info = {}
    path = tflite.convert_to_tflite(export_dir, output, quantize=quantize,
                                    batch_size=batch_size, time_steps=time_steps,
                                    representative_data=representative,
                                    uint8_input=normalizations or False, info=info)
    try:
        checks = {}
        if quantize == "none":   # the old contract: random clips within --atol
            checks["random_max_abs_diff"] = tflite.check_parity(
                export_dir, path, num_samples=parity_samples, atol=atol,
                normalizations=normalizations)
        if eval_data:
            clips, labels = load_clips(eval_data, sidecar, input_shape, limit=eval_samples,
                                       uint8=uint8_input, batch_size=batch_size)
            has_labels = all((lab >= 0).all() for lab in labels)
            stats = tflite.compare(export_dir, path, clips, labels if has_labels else None,
                                   normalizations=normalizations)
            stats["source"] = "--eval_data"
        else:
            stats = tflite.compare(export_dir, path, None, normalizations=normalizations,
                                   num_random=parity_samples)
            stats["source"] = "random clips"
        if quantize in tflite.EXACT_QUANTIZATIONS:
            tflite.check_top1(stats, path)
        elif "accuracy_tflite" in stats:
            drop = 100.0 * (stats["accuracy_savedmodel"] - stats["accuracy_tflite"])
            stats["top1_drop_points"] = drop
            if drop > float(max_top1_drop):
                raise tflite.ParityError(
                    f"{path}: top-1 accuracy {100 * stats['accuracy_tflite']:.2f}% is "
                    f"{drop:.2f} points below the SavedModel's "
                    f"{100 * stats['accuracy_savedmodel']:.2f}% (--max_top1_drop="
                    f"{max_top1_drop:g})")
        elif not stats["finite"]:
            raise tflite.ParityError(f"{path}: an output is not finite")
    except Exception:   # ParityError or a failed check: leave no unchecked .tflite behind
        os.remove(path)
        raise
    latency = tflite.measure_latency(path, [int(t) for t in latency_threads or ()],
                                     runs=latency_runs) if latency_threads else {}
    parity = {"samples": int(parity_samples), "atol": atol if quantize == "none" else None,
              "max_abs_diff": checks.get("random_max_abs_diff", stats["max_abs_diff_all"]),
              **{k: v for k, v in stats.items() if k != "max_abs_diff_all"}}
    report = {
        "tflite": os.path.abspath(path),
        "export_dir": os.path.abspath(export_dir),
        "input_shape": input_shape,
        "input_shapes": info.get("input_shapes"),
        "input_dtype": info.get("input_dtype"),
        "normalization": normalizations,
        "time_steps_source": source,
        "quantize": quantize,
        "int8_ops": info.get("int8_ops"),
        "representative_samples": len(representative) if representative else 0,
        "optimizations": [] if quantize == "none" else [quantize],
        "ops": tflite.tflite_ops(path),
        "parity": parity,
        "size_bytes": os.path.getsize(path),
        "latency_ms": latency,
        "class_names": sidecar.get("class_names"),
        "preprocessing": sidecar.get("preprocessing"),
        "sampling": sidecar.get("sampling"),
        "decoding": sidecar.get("decoding"),
    }
    with atomic_path(report_path(path)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report
