"""Prediction on video files with an export (pipelines.predict): preprocessing, batched local
prediction, folder/glob expansion and the JSON + CSV of results.

    from tfvid.eval import predict
    serving, sidecar = predict.load("saved_models/tsn_rgb")
    paths, problems = predict.expand_inputs(["clips/", "more/*.mp4"])
    results = predict.predict_files(serving, sidecar, paths, batch_size=8)
    predict.write_results(results, "out/predictions", meta={"export_dir": serving.path})

Each video is decoded as the training data was (the sidecar's decoding options: frame size,
fps; tfvid.prep.video.read_video), sampled and preprocessed with the evaluation transforms of
the sidecar's sampler and normalisation (tfvid.data.pipeline.preprocess_video, mode "test"), and
its views (1 centre, 3 or 10 crops) go through the float32 `clip` signature; logits are averaged
over views before the softmax (TSN test protocol, docs/tsn.md). Flow models compute optical flow
on the fly with the sidecar's method. A video shorter than the model's snippets follows the
sampler's rules (TSN: positions repeat; StNet: its short-video rule): its result says so in
"note".

Results: one dict per input, {"video", "status", "num_frames", "views", "logits",
"probabilities", "top_k": [{"rank", "index", "label", "probability"}]}; status is "ok",
"partial" (a damaged or truncated file: the frames decoded before the damage are used, "reason"
says how many) or "error" (nothing predicted; "error" and "reason" name the file and why).
"""
from __future__ import annotations

import concurrent.futures
import csv
import glob
import json
import logging
import os
import sys
from typing import Iterable, Sequence

import numpy as np

from tfvid.eval.protocol import softmax

log = logging.getLogger(__name__)

#: File extensions taken as videos when a folder or a glob is expanded (an explicitly named
#: file is always tried, whatever its extension).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".3gp", ".ogv", ".ts", ".mts")
#: Sidecar fields predict needs besides those every export has (tfvid.export.read_sidecar).
REQUIRED_FIELDS = ("sampling", "preprocessing")
REQUIRED_PREPROCESSING = ("modality", "input_size", "backbone")
CROPS = (1, 3, 10)


def check_options(num_crops: int, top_k: int) -> None:
    if num_crops not in CROPS:
        raise ValueError(f"--num_crops must be 1, 3 or 10, got {num_crops}")
    if int(top_k) < 1:
        raise ValueError(f"--top_k must be >= 1, got {top_k}")


# ------------------------------------------------------------------------- preprocessing
def decoding_options(sidecar: dict | None) -> dict:
    """read_video keywords of the sidecar's decoding (frame_size, short_side, fps); without a
    sidecar the source size and rate."""
    if not sidecar:
        return {"frame_size": None, "short_side": None, "fps": None}
    dec = sidecar.get("decoding", {})
    size = dec.get("frame_size", (340, 256))
    return {"frame_size": tuple(size) if size else None, "short_side": dec.get("short_side"),
            "fps": dec.get("fps")}


def decode(path: str, sidecar: dict | None):
    """Decodes `path` with the sidecar's decoding options -> tfvid.prep.video.Video."""
    from tfvid.prep.video import read_video
    return read_video(path, **decoding_options(sidecar))


def flow_fields(frames: np.ndarray, sidecar: dict) -> np.ndarray:
    """uint8 (n-1, H, W, 2): the 8-bit x/y flow of prepare_data (the sidecar's method/bound)."""
    from tfvid.prep.flow import compute_flow, quantize

    dec = (sidecar or {}).get("decoding", {})
    return np.asarray(quantize(compute_flow(frames, dec.get("flow_method", "tvl1")),
                               dec.get("flow_bound", 20.0)), np.uint8)


def sampler_of(sidecar: dict):
    """The export's test sampler (tfvid.data.sampling) from the sidecar's "sampling"."""
    from tfvid.data import sampling
    return sampling.get_sampler(**sidecar["sampling"])


def make_views(frames: np.ndarray, sidecar: dict, num_crops: int = 1,
               sampler=None) -> np.ndarray:
    """uint8 frames (n, H, W, 3) -> float32 views (V, T, S, S, C) as the export expects
    (`sampler`: default the sidecar's)."""
    from tfvid.data.pipeline import preprocess_video

    pre = sidecar["preprocessing"]
    flow_x = flow_y = None
    if pre["modality"] == "flow":
        flow = flow_fields(frames, sidecar)
        flow_x, flow_y = flow[..., 0], flow[..., 1]
    views = preprocess_video(frames, sampler=sampler or sampler_of(sidecar),
                             modality=pre["modality"], mode=pre.get("mode", "test"),
                             input_size=pre["input_size"], backbone=pre["backbone"],
                             num_crops=num_crops, flow_x=flow_x, flow_y=flow_y)
    return np.asarray(views, np.float32)


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
    if len(serving.input_spec.shape) != 5:
        raise ValueError(f"{serving.path}: the export takes {serving.input_spec.shape} "
                         f"(cached features?); predict needs an export on frames (B, T, S, S, C)")
    return serving, sidecar


def check_views(views: np.ndarray, sidecar: dict, path: str) -> None:
    """ValueError naming the video if the views do not fit the signature's input shape."""
    expected = list(sidecar["signature"]["inputs"]["clip"]["shape"])[1:]
    got = list(views.shape[1:])
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise ValueError(f"{path}: preprocessing gave clips of shape {got} but the export takes "
                         f"{expected}")


def short_video_note(num_frames: int, sidecar: dict, steps: int) -> str | None:
    """Why a video gave repeated positions: None when it holds T snippets of L frames."""
    samp = sidecar["sampling"]
    length = int(samp.get("new_length") or samp.get("frames_per_segment") or 1)
    need = int(steps) * length
    if num_frames >= need:
        return None
    return (f"{num_frames} frames for {steps} snippets of {length} frame(s): positions repeat "
            f"as the '{samp.get('name')}' sampler's short-video rule gives them")


# ------------------------------------------------------------------------------- results
def make_result(path: str, num_frames: int, views: int, logits, names, top_k: int, *,
                status: str = "ok", reason: str | None = None, note: str | None = None) -> dict:
    """The result dict of one video from its view-averaged logits (classes,)."""
    logits = np.asarray(logits, np.float64)
    probs = softmax(logits)
    names = names or [f"class_{i}" for i in range(len(logits))]
    order = np.argsort(-probs, kind="stable")[:max(1, top_k)]
    out = {"video": path, "status": status, "num_frames": int(num_frames), "views": int(views),
           "logits": logits.tolist(), "probabilities": probs.tolist(),
           "top_k": [{"rank": r + 1, "index": int(i), "label": names[i],
                      "probability": float(probs[i])} for r, i in enumerate(order)]}
    if reason:
        out["reason"] = reason
    if note:
        out["note"] = note
    return out


def error_result(path: str, err) -> dict:
    """{"video", "status": "error", "error", "reason"}: the message names the file."""
    text = str(err)
    reason = getattr(err, "reason", None) or text
    return {"video": path, "status": "error", "error": text if path in text else f"{path}: {text}",
            "reason": reason}


def print_result(result: dict, out=None, err=None, extra: str = "") -> None:
    """The top-k lines of one result (stdout), or its error line (stderr)."""
    out, err = out or sys.stdout, err or sys.stderr
    if result["status"] == "error":
        print(f"error: {result['error']}", file=err)
        return
    tail = f", {result['status']}: {result['reason']}" if result.get("reason") else ""
    seen = (f"{result['num_snippets']} snippets, M-TWI" if "num_snippets" in result
            else f"{result['views']} views")
    print(f"{result['video']} ({result['num_frames']} frames, {seen}{extra}{tail}):", file=out)
    for item in result["top_k"]:
        print(f"  {item['rank']}. {item['label']:<30s} {item['probability']:.4f}", file=out)


# ---------------------------------------------------------------------------- prediction
def prepare_video(path: str, sidecar: dict, num_crops: int = 1) -> dict:
    """Decode + views of one video: {"path", "video", "views", "partial", "note"} or
    {"path", "error"}; never raises for a bad video."""
    from tfvid.prep.video import VideoError
    try:
        video = decode(path, sidecar)
        views = make_views(video.frames, sidecar, num_crops)
        check_views(views, sidecar, path)
    except (VideoError, ValueError, OSError) as e:
        return {"path": path, "error": e}
    return {"path": path, "num_frames": video.num_frames, "views": views,
            "partial": video.partial,
            "note": short_video_note(video.num_frames, sidecar, views.shape[1])}


def predict_video(serving, sidecar: dict, path: str, *, num_crops: int = 1,
                  top_k: int = 5) -> dict:
    """Classifies one video file with a loaded export (`load`, or tfvid.export.load_export).

    Returns the result dict (module docstring). Raises tfvid.prep.video.VideoError (naming the
    file) for unreadable videos.
    """
    item = prepare_video(path, sidecar, num_crops)
    if "error" in item:
        raise item["error"]
    return _score([item], serving, sidecar, top_k, strict=True)[0]


def _score(items: list[dict], serving, sidecar: dict, top_k: int,
           strict: bool = False) -> list[dict]:
    """Results of prepared videos, their views batched by shape through the clip signature.
    A batch the export refuses is retried video by video; a single video it refuses gets an
    error result (strict: raises)."""
    import tensorflow as tf
    names = sidecar.get("class_names")
    results: list = [None] * len(items)
    groups: dict[tuple, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item["views"].shape[1:], []).append(i)
    for rows in groups.values():
        try:
            out = np.asarray(serving(np.concatenate([items[i]["views"] for i in rows]))
                             ["logits"], np.float64)
        except tf.errors.InvalidArgumentError as e:
            if strict and len(rows) == 1:
                raise
            for i in rows:
                results[i] = (_score([items[i]], serving, sidecar, top_k)[0] if len(rows) > 1
                              else error_result(items[i]["path"],
                                                f"the export refused its clip ({e.message})"))
            continue
        start = 0
        for i in rows:
            item = items[i]
            v = item["views"].shape[0]
            results[i] = make_result(item["path"], item["num_frames"], v,
                                     out[start:start + v].mean(axis=0), names, top_k,
                                     note=item["note"], reason=item["partial"],
                                     status="partial" if item["partial"] else "ok")
            start += v
    return results


def predict_files(serving, sidecar: dict, paths: Sequence[str], *, num_crops: int = 1,
                  top_k: int = 5, batch_size: int = 8, workers: int = 2,
                  progress: bool = True, on_result=None) -> list[dict]:
    """Results of `paths` in order: batch_size videos per signature call, decoded and
    preprocessed by `workers` threads while the previous batch runs (at most two batches of
    views in memory). A bad video gives an error result; the others continue.
    on_result(result) is called for each result as it comes (printing)."""
    from tfvid.progress import progress_bar

    check_options(num_crops, top_k)
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers must be >= 1, got {batch_size}, {workers}")
    chunks = [list(paths[i:i + batch_size]) for i in range(0, len(paths), batch_size)]
    results: list[dict] = []
    bar = progress_bar(total=len(paths), unit="video", desc="predict", disable=not progress)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool, bar:
        def submit(chunk):
            return [pool.submit(prepare_video, p, sidecar, num_crops) for p in chunk]
        pending = submit(chunks[0]) if chunks else []
        for c in range(len(chunks)):
            items = [f.result() for f in pending]
            pending = submit(chunks[c + 1]) if c + 1 < len(chunks) else []
            scored = iter(_score([it for it in items if "error" not in it], serving, sidecar,
                                 top_k))
            for it in items:
                result = error_result(it["path"], it["error"]) if "error" in it else next(scored)
                if result["status"] == "partial":
                    log.warning("%s: %s", result["video"], result["reason"])
                results.append(result)
                if on_result:
                    on_result(result)
            bar.update(len(items))
    return results


# ------------------------------------------------------------------------------- inputs
def _is_video_name(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS)


def _frame_folder(files: Sequence[str], dirs: Sequence[str]) -> bool:
    from tfvid.prep.video import FRAME_EXTENSIONS
    return (not dirs and bool(files) and not any(_is_video_name(f) for f in files)
            and all(f.lower().endswith(FRAME_EXTENSIONS) for f in files))


def expand_inputs(specs: Iterable[str]) -> tuple[list[str], list[dict]]:
    """Video paths from files, folders (recursive: files with a VIDEO_EXTENSIONS extension, and
    folders holding only frame images, e.g. Jester's) and globs (`**` recursive), in order,
    without duplicates. Returns (paths, skipped): skipped = [{"path", "reason"}] for files a
    folder or glob held that are not videos by extension. A file named explicitly is kept
    whatever its name (decoding says whether it is a video); so is a missing path, which
    becomes a "file not found" result; a glob that matches nothing gives an error result."""
    paths, skipped, seen = [], [], set()

    def add(p):
        if p not in seen:
            seen.add(p)
            paths.append(p)

    def walk(folder):
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            files = sorted(f for f in files if not f.startswith("."))
            if root != folder and _frame_folder(files, dirs):
                add(root)
                continue
            for f in files:
                full = os.path.join(root, f)
                (add(full) if _is_video_name(f) else
                 skipped.append({"path": full, "reason": "not a video file (extension)"}))

    for spec in specs:
        spec = os.path.expanduser(str(spec))
        if glob.has_magic(spec):
            matched = sorted(glob.glob(spec, recursive=True))
            if not matched:
                add(spec)                      # predict reports it: no such file
            for m in matched:
                if os.path.isdir(m):
                    walk(m)
                elif _is_video_name(m):
                    add(m)
                else:
                    skipped.append({"path": m, "reason": "not a video file (extension)"})
        elif os.path.isdir(spec):
            files = sorted(os.listdir(spec))
            dirs = [f for f in files if os.path.isdir(os.path.join(spec, f))]
            if _frame_folder([f for f in files if f not in dirs], dirs):
                add(spec)
            else:
                walk(spec)
        else:
            add(spec)
    return paths, skipped


# ------------------------------------------------------------------------------- outputs
def output_paths(output: str) -> dict:
    """{"json", "csv", "dir", "prefix"} of --output: an existing folder or one ending in '/'
    gets predictions.json / predictions.csv inside; anything else is a prefix (PATH.json and
    PATH.csv; a .json or .csv suffix is dropped first)."""
    if output.endswith(("/", os.sep)) or os.path.isdir(output):
        folder, prefix = output.rstrip("/" + os.sep) or output, "predictions"
    else:
        base = output
        for ext in (".json", ".csv"):
            if base.endswith(ext):
                base = base[:-len(ext)]
        folder, prefix = os.path.dirname(base) or ".", os.path.basename(base)
    stem = os.path.join(folder, prefix)
    return {"json": stem + ".json", "csv": stem + ".csv", "dir": folder, "prefix": prefix}


def write_json(payload: dict, path: str) -> str:
    from tfvid.atomic import atomic_path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1)
    return path


def write_csv(results: Sequence[dict], path: str, top_k: int) -> str:
    """CSV: video, status, frames, class_1, probability_1, ..., class_k, probability_k,
    reason (the error, or why a file was partial)."""
    from tfvid.atomic import atomic_path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    header = ["video", "status", "frames"]
    for r in range(1, top_k + 1):
        header += [f"class_{r}", f"probability_{r}"]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header + ["reason"])
        for res in results:
            row = [res["video"], res["status"], res.get("num_frames", "")]
            items = res.get("top_k", [])
            for r in range(top_k):
                row += ([items[r]["label"], f"{items[r]['probability']:.6f}"]
                        if r < len(items) else ["", ""])
            writer.writerow(row + [" ".join(str(res.get("reason") or "").split())])
    return path


def write_results(results: Sequence[dict], output: str | None = None, *,
                  json_path: str | None = None, top_k: int = 5, meta: dict | None = None) -> dict:
    """Writes {**meta, "results"} as JSON and the CSV of `results` (output: a folder or a
    prefix, `output_paths`; json_path: one more JSON file). Returns the paths written."""
    payload = {**(meta or {}), "results": list(results)}
    written = {}
    if output:
        paths = output_paths(output)
        written["json"] = write_json(payload, paths["json"])
        written["csv"] = write_csv(results, paths["csv"], top_k)
    if json_path:
        if os.path.isdir(json_path):
            raise ValueError(f"--json={json_path} is a directory; give the JSON file's path")
        written["json_file"] = write_json(payload, json_path)
    return written
