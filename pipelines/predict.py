"""Classifies video files with an exported model (pipelines.export).

    python -m pipelines.predict --export_dir=saved_models/tsn_rgb --video=a.mp4,b.avi --top_k=5

Each video is decoded as the training data was (the sidecar's decoding options: frame size,
fps), sampled and preprocessed with the evaluation transforms of the sidecar's sampler and
normalisation (tfvid.data.pipeline.preprocess_video, mode "test"), and its views (--num_crops:
1 centre, 3 or 10 crops) go through the `serving_default` signature as one batch. Logits are
averaged over views before the softmax (TSN test protocol). Flow models compute optical flow
on the fly with the sidecar's method (TV-L1 is slow: about 1 s per frame pair on 2 cores).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import flags

from pipelines.common import check_args, define_flag, flag_value, program_name, run_job

FLAGS = flags.FLAGS

define_flag("string", "export_dir", None, "An export version dir "
            "(saved_models/<name>/<version>) or a model dir (saved_models/<name>: the newest "
            "version).")
define_flag("list", "video", None, "Video file(s) to classify, comma-separated (mp4, avi, "
            "webm...).")
define_flag("integer", "num_crops", 1, "Views per clip: 1 (centre), 3 or 10 (corners + centre, "
            "flipped).")
define_flag("integer", "top_k", 5, "How many classes to print per video.")
define_flag("string", "json", None, "Optional path of a JSON file for the predictions.")


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def decode(path: str, sidecar: dict):
    """Decodes `path` with the sidecar's decoding options -> tfvid.data.video.Video."""
    from tfvid.data.video import read_video

    dec = sidecar.get("decoding", {})
    size = dec.get("frame_size", (340, 256))
    return read_video(path, frame_size=tuple(size) if size else None,
                      short_side=dec.get("short_side"), fps=dec.get("fps"))


def make_views(frames: np.ndarray, sidecar: dict, num_crops: int = 1) -> np.ndarray:
    """uint8 frames (n, H, W, 3) -> float32 views (V, T, S, S, C) as the export expects."""
    from tfvid.data import sampling
    from tfvid.data.pipeline import preprocess_video

    pre = sidecar["preprocessing"]
    sampler = sampling.get_sampler(**sidecar["sampling"])
    flow_x = flow_y = None
    if pre["modality"] == "flow":
        from tfvid.data.flow import compute_flow, quantize

        dec = sidecar.get("decoding", {})
        flow = quantize(compute_flow(frames, dec.get("flow_method", "tvl1")),
                        dec.get("flow_bound", 20.0))
        flow_x, flow_y = flow[..., 0], flow[..., 1]
    views = preprocess_video(frames, sampler=sampler, modality=pre["modality"],
                             mode=pre.get("mode", "test"), input_size=pre["input_size"],
                             backbone=pre["backbone"], num_crops=num_crops,
                             flow_x=flow_x, flow_y=flow_y)
    return np.asarray(views, np.float32)


#: Sidecar fields predict needs besides those every export has (tfvid.export.read_sidecar).
REQUIRED_FIELDS = ("sampling", "preprocessing")
REQUIRED_PREPROCESSING = ("modality", "input_size", "backbone")


def load(export_dir: str):
    """(serving, sidecar) of an export predict can run: one "clip" input and a sidecar with
    the sampler and preprocessing (ValueError naming the sidecar file and the field)."""
    from tfvid.export import INPUT_NAME, SidecarError, load_export, sidecar_file

    serving, sidecar = load_export(export_dir, require=REQUIRED_FIELDS)
    file = sidecar_file(serving.path)
    missing = [k for k in REQUIRED_PREPROCESSING if sidecar["preprocessing"].get(k) is None]
    if missing:
        raise SidecarError(f"{file}: 'preprocessing' lacks {', '.join(map(repr, missing))}")
    inputs = sorted(serving.input_specs)
    if inputs != [INPUT_NAME]:
        raise ValueError(f"{serving.path}: the export takes inputs {inputs}; predict runs "
                         f"exports with one {INPUT_NAME!r} input (pipelines.export)")
    return serving, sidecar


def check_views(views: np.ndarray, sidecar: dict, path: str) -> None:
    """ValueError naming the video if the views do not fit the signature's input shape."""
    expected = list(sidecar["signature"]["inputs"]["clip"]["shape"])[1:]
    got = list(views.shape[1:])
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise ValueError(f"{path}: preprocessing gave clips of shape {got} but the export takes "
                         f"{expected}")


def predict_video(serving, sidecar: dict, path: str, *, num_crops: int = 1,
                  top_k: int = 5) -> dict:
    """Classifies one video file with a loaded export (`load`, or tfvid.export.load_export).

    Returns {"video", "num_frames", "views", "logits" (averaged over views),
    "probabilities", "top_k": [{"rank", "index", "label", "probability"}]}.
    Raises tfvid.data.video.VideoError (naming the file) for unreadable videos.
    """
    video = decode(path, sidecar)
    views = make_views(video.frames, sidecar, num_crops)
    check_views(views, sidecar, path)
    logits = np.asarray(serving(views)["logits"], np.float64).mean(axis=0)   # (classes,)
    probs = softmax(logits)
    names = sidecar.get("class_names") or [f"class_{i}" for i in range(len(logits))]
    order = np.argsort(-probs, kind="stable")[:max(1, top_k)]
    return {
        "video": path,
        "num_frames": video.num_frames,
        "views": int(views.shape[0]),
        "logits": logits.tolist(),
        "probabilities": probs.tolist(),
        "top_k": [{"rank": r + 1, "index": int(i), "label": names[i],
                   "probability": float(probs[i])} for r, i in enumerate(order)],
    }


def predict(export_dir: str, videos, *, num_crops: int = 1, top_k: int = 5,
            json_path: str | None = None, out=None) -> list[dict]:
    """The job as a function: prints the top-k classes per video, returns the results.

    A video that cannot be read gives {"video", "error"} (printed to stderr) and the others
    still run.
    """
    from tfvid.atomic import atomic_path
    from tfvid.data.video import VideoError

    if num_crops not in (1, 3, 10):
        raise ValueError(f"--num_crops must be 1, 3 or 10, got {num_crops}")
    if int(top_k) < 1:
        raise ValueError(f"--top_k must be >= 1, got {top_k}")
    if json_path and os.path.isdir(json_path):
        raise ValueError(f"--json={json_path} is a directory; give the JSON file's path")
    out = out or sys.stdout
    serving, sidecar = load(export_dir)
    results = []
    for path in videos:
        try:
            result = predict_video(serving, sidecar, path, num_crops=num_crops, top_k=top_k)
        except (VideoError, ValueError) as e:
            msg = str(e) if path in str(e) else f"{path}: {e}"
            print(f"error: {msg}", file=sys.stderr)
            results.append({"video": path, "error": msg})
            continue
        results.append(result)
        print(f"{path} ({result['num_frames']} frames, {result['views']} views):", file=out)
        for item in result["top_k"]:
            print(f"  {item['rank']}. {item['label']:<30s} {item['probability']:.4f}", file=out)
    if json_path:
        payload = {"export_dir": serving.path, "num_crops": num_crops, "results": results}
        with atomic_path(json_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1)
    return results


def job_error(job: str, err: BaseException) -> SystemExit:
    """SystemExit printing '<prog>: error: <job> failed: <message>' on one line (exit status 1,
    no traceback): for errors that come from what the user gave (flags, files)."""
    text = " ".join(str(err).split()) or type(err).__name__
    if len(text) > 2000:   # converter / TF errors can be long
        text = text[:2000] + "..."
    return SystemExit(f"{program_name()}: error: {job} failed: {text}")


def main(argv):
    check_args(argv, "export_dir", "video")
    try:   # flag_value: this job's default even when evaluate defined --num_crops first
        results = predict(FLAGS.export_dir, FLAGS.video,
                          num_crops=int(flag_value("num_crops", 1)), top_k=FLAGS.top_k,
                          json_path=FLAGS.json)
    except (OSError, ValueError) as e:
        # user mistakes (no export, bad sidecar, bad flag, unwritable --json): one line, no
        # traceback, exit status 1
        raise job_error("predict", e) from None
    failed = [r["video"] for r in results if "error" in r]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(results)} videos failed: {', '.join(failed)}")


def run():
    """Console-script entry point (tfvid-predict)."""
    run_job(main)


if __name__ == "__main__":
    run()
