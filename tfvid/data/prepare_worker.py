"""Per-video work of the preparation job, run in worker processes (tfvid.data.prepare).

Decode (PyAV) -> resize -> JPEG-encode frames -> optional flow -> optional frame folder.
This module imports PyAV and OpenCV but not TensorFlow, so spawned workers start quickly; the
main process builds the SequenceExamples and writes the shards.
"""
from __future__ import annotations

import collections
import concurrent.futures as futures
import itertools
import multiprocessing
import os
import shutil


def _clean(reason: str) -> str:
    return " ".join(str(reason).split())


def count_frame_files(folder: str) -> int:
    """Number of img_*.jpg RGB frames in a finished frame folder."""
    return sum(1 for f in os.listdir(folder) if f.startswith("img_") and f.endswith(".jpg"))


def write_frame_folder(final: str, frames_root: str, video_id: str, rgb, flow_x, flow_y) -> None:
    """Writes img_00001.jpg.. and flow_x/flow_y_00001.jpg.. into a temp folder, then renames it."""
    tmp = os.path.join(frames_root, f".tmp-{os.getpid()}-{video_id.replace('/', '__')}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for prefix, items in (("img", rgb), ("flow_x", flow_x or []), ("flow_y", flow_y or [])):
        for k, data in enumerate(items, 1):
            with open(os.path.join(tmp, f"{prefix}_{k:05d}.jpg"), "wb") as f:
                f.write(data)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError:  # finished meanwhile by another run: keep the existing folder
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(final):
            raise


def process_video(task: dict) -> dict:
    """Decodes one video and encodes its frames (and flow); writes its frame folder if asked.

    task: {video_id, path, want_example, frames_dir (None = no folder), frames_root, options
    {frame_size, short_side, fps, flow, flow_bound, jpeg_quality}}. Returns {video_id, path,
    num_frames, and with want_example: frames, flow_x, flow_y (JPEG lists), height, width,
    frame_rate, timestamps} or {video_id, path, reject: reason}. Never raises.
    """
    from tfvid.data import flow as flowlib
    from tfvid.data import video as videolib
    o = task["options"]
    out = {"video_id": task["video_id"], "path": task["path"]}
    try:
        v = videolib.read_video(task["path"], frame_size=o["frame_size"],
                                short_side=o["short_side"], fps=o["fps"])
        n = v.num_frames
        if n == 0:
            return {**out, "reject": "zero frames"}
        rgb = videolib.encode_jpegs(v.frames, quality=o["jpeg_quality"])
        fx = fy = None
        if o["flow"] != "none":
            if n < 2:
                return {**out, "reject": "only 1 frame: optical flow needs at least 2"}
            fx, fy = flowlib.encode_flow_jpegs(flowlib.compute_flow(v.frames, o["flow"]),
                                               bound=o["flow_bound"])
            if not len(fx) == len(fy) == n - 1:
                return {**out, "reject": f"RGB/flow frame-count mismatch: {n} RGB frames need "
                                         f"{n - 1} flow frames, got x={len(fx)} y={len(fy)}"}
        if len(rgb) != n:
            return {**out, "reject": f"encoded {len(rgb)} JPEGs for {n} decoded frames"}
        if task["frames_dir"]:
            write_frame_folder(task["frames_dir"], task["frames_root"], task["video_id"],
                                rgb, fx, fy)
        out["num_frames"] = n
        if task["want_example"]:
            out.update(frames=rgb, flow_x=fx, flow_y=fy, height=int(v.frames.shape[1]),
                       width=int(v.frames.shape[2]), frame_rate=float(v.frame_rate),
                       timestamps=[int(t) for t in v.timestamps_us])
        return out
    except videolib.VideoError as e:
        return {**out, "reject": _clean(e.reason)}
    except Exception as e:  # a bad video must not stop the dataset; the reason is reported
        return {**out, "reject": _clean(f"{type(e).__name__}: {e}")}


class OrderedResults:
    """Iterator of process_video results in task order; at most 4*workers tasks in flight.

    The worker processes start at construction, so they warm up while the caller imports
    TensorFlow. workers=1 runs inline. close() stops the pool.
    """

    def __init__(self, tasks: list[dict], workers: int):
        self._tasks, self._pool = iter(tasks), None
        self._pending: collections.deque = collections.deque()
        if workers > 1 and tasks:
            self._pool = futures.ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            for task in itertools.islice(self._tasks, 4 * workers):
                self._pending.append(self._pool.submit(process_video, task))

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._pool is None:
            return process_video(next(self._tasks))
        if not self._pending:
            raise StopIteration
        try:
            result = self._pending.popleft().result()
        except futures.process.BrokenProcessPool as e:
            raise RuntimeError("a preparation worker died (crash in a decoder or out of memory); "
                               "finished shards are kept: rerun to resume") from e
        task = next(self._tasks, None)
        if task is not None:
            self._pending.append(self._pool.submit(process_video, task))
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
