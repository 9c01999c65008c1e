"""Long (untrimmed) videos: streamed decoding, snippets at a fixed rate, M-TWI aggregation and a
timeline (pipelines.predict --untrimmed).

    from tfvid.eval import predict, untrimmed
    serving, sidecar = predict.load("saved_models/tsn_rgb")
    result = untrimmed.predict_untrimmed(serving, sidecar, "match.mp4")   # 1 snippet / s
    untrimmed.write_timeline(result, "out/match.timeline.json", "out/match.timeline.png")

The video is decoded frame by frame (PyAV, `stream_frames`), never whole: only the frames of
the snippet window still open are kept (at most about window x fps + 1 frames, the
`max_buffered_frames` of the result), and of those only the positions the model's sampler
picks are converted to RGB and resized. A snippet k starts at k / rate seconds (rate =
snippets per second, 1 by default as the TSN paper's M-TWI, docs/tsn.md) and covers the frames
of [k / rate, k / rate + window) (window = 1 / rate by default): it is one clip of the model,
its T positions chosen by the export's test sampler from those frames (a TSN export of K
segments: K frames of that second, averaged by its consensus; a 1-frame window gives the
paper's single-frame snippet). Snippets go through the float32 clip signature `batch_size` at
a time; each snippet's score is the max over its crops (num_crops 1 by default).

Video level: tfvid.eval.protocol.mtwi_scores over the snippet logits (windows of 1, 2, 4, 8,
16 s), softmax at the end. Timeline: per snippet its time, the softmax of its score, the top
class; a PNG draws the probabilities of the video's top classes over time.
"""
from __future__ import annotations

import collections
import logging
import math
import os
from typing import Iterator

import av
import numpy as np

from tfvid.eval import predict as local
from tfvid.eval.protocol import mtwi_scores

log = logging.getLogger(__name__)

TIMELINE_CLASSES = 5        # classes drawn in the PNG (the video's top classes)


def stream_frames(path: str, *, fps: float | None = None,
                  status: dict | None = None) -> Iterator[tuple[float, av.VideoFrame]]:
    """(seconds from the first frame, decoded frame) of the first video stream, one at a time.

    fps: resample as read_video does (for each tick k / fps the nearest decoded frame; frames
    repeat when fps exceeds the source rate). status (a dict) receives "rotation",
    "expected_seconds" (the container's duration, or None) and, when decoding stops at damage
    after some frames, "partial" (the reason). VideoError naming the file when nothing decodes.
    """
    from tfvid.prep.video import VideoError, frame_rotation, open_video_stream
    path = os.fspath(path)
    status = {} if status is None else status
    if not os.path.isfile(path):
        raise VideoError(path, "file not found" if not os.path.exists(path) else
                         "not a video file (a folder: --untrimmed takes video files)")
    container, stream, src = open_video_stream(path)
    src = src or 25.0
    try:
        duration = (float(stream.duration * stream.time_base) if stream.duration and
                    stream.time_base else (container.duration / 1e6 if container.duration
                                           else None))
        status["expected_seconds"] = duration
        t0, prev, k, count = None, None, 0, 0
        try:
            for i, frame in enumerate(container.decode(stream)):
                count += 1
                t = float(frame.time) if frame.time is not None else i / src
                if t0 is None:
                    t0 = t
                    status["rotation"] = frame_rotation(frame, stream)
                t -= t0
                if fps is None:
                    yield t, frame
                    continue
                while k / fps <= t + 1e-9:
                    tick = k / fps
                    use_prev = prev is not None and (tick - prev[0]) < (t - tick)
                    yield tick, (prev[1] if use_prev else frame)
                    k += 1
                prev = (t, frame)
        except (av.FFmpegError, ValueError, RuntimeError) as e:
            if count == 0:
                raise VideoError(path, f"no decodable frame ({type(e).__name__}: {e})") from e
            status["partial"] = (f"decoding stopped after {count} frames at a damaged packet "
                                 f"({type(e).__name__}: {e})")
            log.warning("%s: %s; scoring the frames before it", path, status["partial"])
        if count == 0:
            raise VideoError(path, "zero decodable video frames")
        if fps is not None and prev is not None:
            while k / fps <= prev[0] + 0.5 / src + 1e-9:
                yield k / fps, prev[1]
                k += 1
        expected = int(stream.frames or 0)
        if expected and count < expected and not status.get("partial"):
            status["partial"] = f"{count} of {expected} frames decoded (damaged or truncated file)"
            log.warning("%s: %s; scoring those", path, status["partial"])
    finally:
        container.close()


def snippet_windows(frames, *, rate: float = 1.0, window: float | None = None,
                    stats: dict | None = None) -> Iterator[tuple[int, float, list]]:
    """(k, start seconds, [frames of [k / rate, k / rate + window)]) for k = 0, 1, ... up to
    the last frame, from an iterator of (seconds, frame). Only the frames of the open window
    are kept; stats["max_buffered_frames"] records the most held at once. A window without a
    frame (a gap in the stream) reuses the last frame."""
    if rate <= 0:
        raise ValueError(f"snippets per second must be positive, got {rate}")
    window = 1.0 / rate if window is None else float(window)
    if window <= 0:
        raise ValueError(f"the snippet window must be positive seconds, got {window}")
    stats = {} if stats is None else stats
    stats.setdefault("max_buffered_frames", 0)
    buf: collections.deque = collections.deque()
    k, last, eps = 0, None, 1e-6

    def close():
        start = k / rate
        chosen = [f for t, f in buf if start - eps <= t < start + window - eps]
        return k, start, chosen or [last]

    for t, frame in frames:
        while t >= k / rate + window - eps:
            yield close()
            k += 1
            while buf and buf[0][0] < k / rate - eps:
                buf.popleft()
        if t >= k / rate - eps:
            buf.append((t, frame))
            stats["max_buffered_frames"] = max(stats["max_buffered_frames"], len(buf))
        last = frame
    if last is None:
        return
    end = buf[-1][0] if buf else -1.0
    while buf and k / rate <= end + eps:
        yield close()
        k += 1
        while buf and buf[0][0] < k / rate - eps:
            buf.popleft()


def snippet_sampler(sidecar: dict, segments: int | None = None):
    """The sampler of one snippet clip: the export's, with `segments` test steps when given;
    for a variable-time export (T None) whose sampler has test_segments, the trained
    num_segments (TSN: K frames per snippet, not 25)."""
    import dataclasses
    sampler = local.sampler_of(sidecar)
    shape = sidecar["signature"]["inputs"]["clip"]["shape"]
    if segments is None and shape[1] is None and hasattr(sampler, "num_segments"):
        segments = sampler.num_segments
    if segments is not None and hasattr(sampler, "test_segments"):
        sampler = dataclasses.replace(sampler, test_segments=int(segments))
    return sampler


def _rgb(frame: av.VideoFrame, size, rotation: int) -> np.ndarray:
    from tfvid.prep.video import RESIZE_INTERPOLATION, rotate_frame
    w, h = (size[1], size[0]) if rotation in (90, 270) else size
    image = (frame.to_ndarray(format="rgb24") if (frame.width, frame.height) == (w, h) else
             frame.to_ndarray(width=w, height=h, format="rgb24",
                              interpolation=RESIZE_INTERPOLATION))
    return rotate_frame(image, rotation) if rotation else image


def snippet_frames(frames: list, sidecar: dict, sampler, rotation: int = 0) -> np.ndarray:
    """uint8 (n, H, W, 3) of a window's frames where only the positions the sampler uses are
    converted (the others stay black; flow exports convert every frame)."""
    from tfvid.prep.video import output_size
    opts = local.decoding_options(sidecar)
    f0 = frames[0]
    upright = (f0.height, f0.width) if rotation in (90, 270) else (f0.width, f0.height)
    size = output_size(upright, opts["frame_size"], opts["short_side"])
    n = len(frames)
    if sidecar["preprocessing"]["modality"] == "flow":
        need = range(n)
    else:
        need = sorted(set(np.asarray(sampler(n, "test")).reshape(-1).tolist()))
    out = np.zeros((n, size[1], size[0], 3), np.uint8)
    for i in need:
        out[i] = _rgb(frames[i], size, rotation)
    return out


def predict_untrimmed(serving, sidecar: dict, path: str, *, rate: float = 1.0,
                      window: float | None = None, num_crops: int = 1, batch_size: int = 16,
                      top_k: int = 5, segments: int | None = None, progress: bool = False,
                      spans=(1, 2, 4, 8, 16)) -> dict:
    """Scores a long video snippet by snippet (module docstring).

    Returns {"video", "status" ("ok" | "partial"), "reason" (partial), "num_frames" (decoded),
    "num_snippets", "duration_s", "snippets_per_second", "window_s", "views", "class_names",
    "snippet_logits" float32 (S, classes) (max over crops), "top_k" of the M-TWI video score,
    "probabilities" (M-TWI, softmax), "max_buffered_frames"}. VideoError when nothing decodes.
    """
    from tfvid.progress import progress_bar
    local.check_options(num_crops, top_k)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sampler = snippet_sampler(sidecar, segments)
    status: dict = {}
    stats: dict = {"frames": 0}

    def counted(it):
        for item in it:
            stats["frames"] += 1
            stats["last_t"] = item[0]
            yield item

    frames = counted(stream_frames(path, fps=local.decoding_options(sidecar)["fps"],
                                   status=status))
    windows = snippet_windows(frames, rate=rate, window=window, stats=stats)
    logits, pending = [], []

    def flush():
        if pending:
            out = np.asarray(serving(np.concatenate(pending))["logits"], np.float32)
            logits.extend(out.reshape(len(pending), num_crops, -1).max(axis=1))
            pending.clear()

    bar = None                  # made at the first snippet, when the duration is known
    try:
        for k, _, window_frames in windows:
            if bar is None:
                seconds = status.get("expected_seconds")
                bar = progress_bar(total=int(math.ceil(seconds * rate)) if seconds else None,
                                   unit="s", desc=os.path.basename(path), disable=not progress)
            clip = snippet_frames(window_frames, sidecar, sampler, status.get("rotation", 0))
            views = local.make_views(clip, sidecar, num_crops, sampler=sampler)
            local.check_views(views, sidecar, path)
            pending.append(views)
            if len(pending) >= batch_size:
                flush()
            bar.update(1)
        flush()
    finally:
        if bar is not None:
            bar.close()
    snippet_logits = np.stack(logits)
    probs = mtwi_scores(snippet_logits, spans=spans, fps=rate, softmax=True)
    names = sidecar.get("class_names") or [f"class_{i}" for i in range(probs.shape[0])]
    video = local.make_result(path, stats["frames"], num_crops, np.log(probs + 1e-30), names,
                              top_k, status="partial" if status.get("partial") else "ok",
                              reason=status.get("partial"))
    video.pop("logits")
    video["probabilities"] = probs.tolist()
    video.update(num_snippets=len(snippet_logits), snippets_per_second=rate,
                 window_s=1.0 / rate if window is None else float(window),
                 duration_s=round(float(stats["last_t"]), 3),
                 class_names=list(names), snippet_logits=snippet_logits,
                 max_buffered_frames=stats["max_buffered_frames"], aggregation="M-TWI")
    return video


def timeline(result: dict, top_k: int = 3) -> list[dict]:
    """Per snippet {"t" (seconds), "top_class", "top_index", "top_probability",
    "top_k": [[label, probability], ...], "scores" (softmax over all classes)}."""
    probs = local.softmax(np.asarray(result["snippet_logits"], np.float64))
    names = result["class_names"]
    rate = result["snippets_per_second"]
    out = []
    for k, p in enumerate(probs):
        order = np.argsort(-p, kind="stable")[:top_k]
        out.append({"t": round(k / rate, 6), "top_class": names[order[0]],
                    "top_index": int(order[0]), "top_probability": round(float(p[order[0]]), 6),
                    "top_k": [[names[i], round(float(p[i]), 6)] for i in order],
                    "scores": [round(float(x), 6) for x in p]})
    return out


def write_timeline(result: dict, json_path: str | None, png_path: str | None, *,
                   classes: int = TIMELINE_CLASSES, title: str | None = None) -> dict:
    """The timeline JSON ({video, duration_s, snippets_per_second, window_s, aggregation,
    class_names, top_k (M-TWI), timeline}) and a PNG of the probabilities of the video's
    `classes` top classes over time (matplotlib Agg canvas). Returns the paths written."""
    written = {}
    if json_path:
        keys = ("video", "status", "reason", "num_frames", "num_snippets", "duration_s",
                "snippets_per_second", "window_s", "views", "aggregation", "top_k",
                "class_names")
        payload = {k: result[k] for k in keys if k in result}
        payload["timeline"] = timeline(result)
        written["timeline_json"] = local.write_json(payload, json_path)
    if png_path:
        written["timeline_png"] = save_timeline_png(result, png_path, classes=classes,
                                                    title=title)
    return written


def save_timeline_png(result: dict, path: str, *, classes: int = TIMELINE_CLASSES,
                      title: str | None = None) -> str:
    """Lines of the softmax probability of the video's top classes per snippet over time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tfvid.atomic import atomic_path
    probs = local.softmax(np.asarray(result["snippet_logits"], np.float64))
    t = np.arange(probs.shape[0]) / result["snippets_per_second"]
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for item in result["top_k"][:classes]:
        ax.plot(t, probs[:, item["index"]], marker="o" if len(t) <= 60 else None, markersize=3,
                label=f"{item['label']} (video {item['probability']:.2f})")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("snippet probability")
    ax.set_ylim(0, 1)
    ax.set_xlim(0, max(float(t[-1]), 1.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or f"{os.path.basename(result['video'])}: top classes over time "
                          f"({result['num_snippets']} snippets, M-TWI)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def timeline_paths(output: str | None, video: str, used: set) -> dict:
    """{"json", "png"} of a video's timeline: beside --output's JSON (its folder; a prefix adds
    itself, "<prefix>_<video stem>.timeline.json"), "./<stem>.timeline.json" without --output;
    a stem already used gets "-2", "-3"..."""
    paths = local.output_paths(output) if output else {"dir": ".", "prefix": "predictions"}
    prefix = "" if paths["prefix"] == "predictions" else paths["prefix"] + "_"
    stem = prefix + os.path.splitext(os.path.basename(video.rstrip("/" + os.sep)))[0]
    name, i = stem, 1
    while name in used:
        i += 1
        name = f"{stem}-{i}"
    used.add(name)
    base = os.path.join(paths["dir"], name + ".timeline")
    return {"json": base + ".json", "png": base + ".png"}


def predict_untrimmed_files(serving, sidecar: dict, paths, *, output: str | None = None,
                            on_result=None, progress: bool = False, **kwargs) -> list[dict]:
    """predict_untrimmed for each path (a bad video: an error result, the others continue),
    each timeline written (timeline_paths); results without the snippet scores, with
    "timeline_json" and "timeline_png"."""
    from tfvid.prep.video import VideoError
    used: set = set()
    results = []
    for path in paths:
        try:
            res = predict_untrimmed(serving, sidecar, path, progress=progress, **kwargs)
            files = timeline_paths(output, path, used)
            res.update(write_timeline(res, files["json"], files["png"]))
            res.pop("snippet_logits")
        except (VideoError, ValueError, OSError) as e:
            res = local.error_result(path, e)
        results.append(res)
        if on_result:
            on_result(res)
    return results
