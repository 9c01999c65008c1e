"""Optical flow for data that was prepared without it (pipelines/extract_flow.py).

    add_flow_to_records(shards, output_dir, method=...)   TFRecord shards -> new shards with flow
    add_flow_to_frames(list_file, method=...)             raw-frame folders: flow JPEGs added

Flow is computed from the stored RGB JPEGs (decoded with OpenCV) by tfvid.prep.flow, with the
quantisation and storage of prepare_data --flow: n frames give n-1 grayscale x and y JPEGs,
the bound and method recorded in the record context (TFRecords) or implied by the layout's
flow_x_/flow_y_ files (raw frames). TV-L1 costs about 1.3 s per frame pair here, which is why
preparing RGB first and adding flow later (or on another machine) is useful.

Reliability, as prepare_data: work runs over `workers` processes with a progress bar; an output
shard is written under a temporary name and renamed when complete, so a rerun skips finished
shards (and frame folders whose flow files are complete) and resumes; a video with fewer than 2
frames or undecodable frames is skipped and listed in a rejects file with its reason; a
truncated or corrupt input shard is reported by name, and no output is written for it.

`flow_task` runs in the worker processes and imports neither TensorFlow nor PyAV.
"""
from __future__ import annotations

import collections
import concurrent.futures as futures
import json
import multiprocessing
import os
import time

import numpy as np

from tfvid.atomic import atomic_path
from tfvid.prep.shards import load_progress


# ----------------------------------------------------------------------------- worker side
def flow_task(task: dict) -> dict:
    """{video_id, frames (JPEG bytes list), method, bound} -> {video_id, flow_x, flow_y} (JPEG
    lists of n-1 grayscale images) or {video_id, reject: reason}. Never raises."""
    import cv2

    from tfvid.prep import flow as flowlib
    out = {"video_id": task["video_id"]}
    try:
        frames = task["frames"]
        if len(frames) < 2:
            return {**out, "reject": f"{len(frames)} frame(s): optical flow needs at least 2"}
        decoded = []
        for k, data in enumerate(frames):
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                return {**out, "reject": f"frame {k} is not a decodable JPEG"}
            decoded.append(img[..., ::-1])                     # BGR -> RGB
        flow = flowlib.compute_flow(np.stack(decoded), task["method"])
        fx, fy = flowlib.encode_flow_jpegs(flow, bound=task["bound"])
        return {**out, "flow_x": fx, "flow_y": fy}
    except Exception as e:  # a bad video must not stop the job; the reason is reported
        return {**out, "reject": " ".join(f"{type(e).__name__}: {e}".split())}


def in_order(items, workers: int):
    """items: an iterator of (payload, task or None) -> (payload, flow_task(task) or None), in
    order, over `workers` spawned processes (1: inline) with at most 4*workers items held, so
    a shard of any size streams through in bounded memory."""
    if workers == 1:
        for payload, task in items:
            yield payload, (flow_task(task) if task is not None else None)
        return
    with futures.ProcessPoolExecutor(max_workers=workers,
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: collections.deque = collections.deque()

        def pop():
            payload, job = pending.popleft()
            try:
                return payload, (job.result() if job is not None else None)
            except futures.process.BrokenProcessPool as e:
                raise RuntimeError("a flow worker process died (out of memory?); finished "
                                   "shards are kept: rerun to resume") from e

        for payload, task in items:
            pending.append((payload, pool.submit(flow_task, task) if task is not None else None))
            if len(pending) > 4 * workers:
                yield pop()
        while pending:
            yield pop()


def _check(method: str, bound: float, workers: int) -> None:
    from tfvid.prep import flow as flowlib
    if method not in flowlib.METHODS:
        raise ValueError(f"unknown flow method {method!r}; choose one of {flowlib.METHODS}")
    if bound <= 0 or workers < 1:
        raise ValueError(f"need bound > 0 and workers >= 1, got {bound}, {workers}")


def _progress(total, progress, desc):
    from tfvid.progress import progress_bar
    return progress_bar(total=total, unit="video", desc=desc, disable=not progress, dynamic_ncols=True)


def _write_report(output_dir: str, name: str, rejects: list, summary: dict) -> dict:
    files = {"rejects": os.path.join(output_dir, f"{name}-rejects.tsv"),
             "summary": os.path.join(output_dir, f"{name}-summary.json")}
    with atomic_path(files["rejects"]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("source\tvideo\treason\n")
        f.writelines(f"{src}\t{vid}\t{reason}\n" for src, vid, reason in rejects)
    summary = {**summary, "rejects": len(rejects), "files": files}
    with atomic_path(files["summary"]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary


# ---------------------------------------------------------------------------- TFRecords
def _has_flow(ex) -> bool:
    from tfvid.data import schema
    return len(ex.feature_lists.feature_list[schema.FLOW_X].feature) > 0


def _set_flow(ex, flow_x, flow_y, bound: float, method: str) -> None:
    """Writes the flow lists and context of prepare_data (tfvid.data.schema) into `ex`."""
    from tfvid.data import schema
    ctx, lists = ex.context.feature, ex.feature_lists.feature_list
    ctx[schema.FLOW_FORMAT].bytes_list.value[:] = [b"JPEG"]
    ctx[schema.FLOW_LAYOUT].bytes_list.value[:] = [schema.FLOW_LAYOUT_XY_GRAY]
    ctx[schema.FLOW_BOUND].float_list.value[:] = [bound]
    ctx[schema.FLOW_METHOD].bytes_list.value[:] = [method.encode()]
    for key, images in ((schema.FLOW_X, flow_x), (schema.FLOW_Y, flow_y)):
        del lists[key].feature[:]
        for data in images:
            lists[key].feature.add().bytes_list.value.append(data)


def _read_shard(path: str):
    """The shard's records as SequenceExamples, streamed; DataLossError naming the shard when
    it is truncated or corrupt."""
    import tensorflow as tf
    try:
        for record in tf.data.TFRecordDataset(path):
            yield tf.train.SequenceExample.FromString(record.numpy())
    except tf.errors.DataLossError as e:
        raise tf.errors.DataLossError(None, None, f"{path}: {e.message}") from None


def add_flow_to_records(shards, output_dir: str, *, method: str = "tvl1",
                        bound: float = 20.0, workers: int = 2, overwrite: bool = False,
                        progress: bool = True) -> dict:
    """Writes each shard of `shards` (paths) to output_dir/<same name> with optical flow added.

    Records that already hold flow are copied unchanged unless `overwrite`. Finished output
    shards are skipped (resume); extract_flow-progress.jsonl keeps each finished shard's counts
    and rejects, so the summary covers them too. Returns the summary also written to
    output_dir/extract_flow-summary.json (shards written/skipped/failed, videos, flow frames,
    rejects), with the rejects in extract_flow-rejects.tsv; classes.txt beside the first input
    shard is copied when output_dir has none.
    """
    import tensorflow as tf

    from tfvid.data import schema
    _check(method, bound, workers)
    shards = [os.path.abspath(p) for p in shards]
    output_dir = os.path.abspath(output_dir)
    if any(os.path.dirname(p) == output_dir for p in shards):
        raise ValueError(f"output_dir {output_dir} holds the input shards; choose another "
                         "folder (shards are rewritten with flow, not changed in place)")
    os.makedirs(output_dir, exist_ok=True)
    classes = os.path.join(os.path.dirname(shards[0]), "classes.txt") if shards else ""
    if os.path.isfile(classes) and not os.path.exists(os.path.join(output_dir, "classes.txt")):
        with open(classes, "rb") as f, atomic_path(os.path.join(output_dir, "classes.txt")) as t:
            with open(t, "wb") as g:
                g.write(f.read())
    start, rejects, failed = time.time(), [], []
    counts = dict(written=0, skipped=0, videos=0, flow_frames=0, copied=0)
    log_path = os.path.join(output_dir, "extract_flow-progress.jsonl")
    finished = load_progress(log_path)       # shard name -> its counts and rejects

    def add(info):
        rejects.extend(tuple(r) for r in info["rejects"])
        for key in ("videos", "flow_frames", "copied"):
            counts[key] += info[key]

    def items(path):
        for ex in _read_shard(path):
            vid = ex.context.feature[schema.ID].bytes_list.value[0].decode()
            task = None
            if overwrite or not _has_flow(ex):
                frames = ex.feature_lists.feature_list[schema.FRAMES].feature
                task = {"video_id": vid, "method": method, "bound": bound,
                        "frames": [f.bytes_list.value[0] for f in frames]}
            yield (vid, ex), task

    bar = _progress(None, progress, "extract_flow")
    try:
        for path in shards:
            name = os.path.basename(path)
            final = os.path.join(output_dir, name)
            if os.path.exists(final):
                counts["skipped"] += 1
                if name in finished:
                    add(finished[name])
                continue
            done = dict(videos=0, flow_frames=0, copied=0)
            try:
                with atomic_path(final) as tmp, tf.io.TFRecordWriter(tmp) as writer:
                    shard_rejects = []
                    for (vid, ex), r in in_order(items(path), workers):
                        if r is None:
                            done["copied"] += 1
                        elif "reject" in r:
                            bar.update(1)
                            shard_rejects.append((path, vid, r["reject"]))
                            continue
                        else:
                            bar.update(1)
                            _set_flow(ex, r["flow_x"], r["flow_y"], bound, method)
                            done["flow_frames"] += len(r["flow_x"])
                        writer.write(ex.SerializeToString())
                        done["videos"] += 1
                        bar.set_postfix(rejects=len(rejects) + len(shard_rejects))
            except tf.errors.DataLossError as e:      # nothing of this shard is kept
                failed.append({"shard": path, "error": e.message})
                rejects.append((path, "", f"corrupt shard: {' '.join(e.message.split())}"))
                continue
            info = {"name": name, **done, "rejects": shard_rejects}
            with open(log_path, "a", encoding="utf-8") as f:   # after the rename: resumable
                f.write(json.dumps(info) + "\n")
                f.flush()
                os.fsync(f.fileno())
            counts["written"] += 1
            add(info)
    finally:
        bar.close()
    summary = {"layout": "tfrecord", "method": method, "bound": bound,
               "shards_written": counts["written"], "shards_skipped": counts["skipped"],
               "shards_failed": failed, "videos": counts["videos"],
               "videos_copied": counts["copied"], "flow_frames": counts["flow_frames"],
               "seconds": round(time.time() - start, 3), "output_dir": output_dir}
    return _write_report(output_dir, "extract_flow", rejects, summary)


# --------------------------------------------------------------------------- raw frames
def _complete(folder: str, num_flow: int) -> bool:
    from tfvid.data.pipeline import FLOW_TEMPLATES
    return all(os.path.isfile(os.path.join(folder, f"{p}{k:05d}.jpg"))
               for p in FLOW_TEMPLATES for k in range(1, num_flow + 1))


def _write_flow_files(folder: str, flow_x, flow_y) -> None:
    """flow_x_00001.jpg.. and flow_y_00001.jpg.. into `folder`, each written atomically."""
    from tfvid.data.pipeline import FLOW_TEMPLATES
    for prefix, images in zip(FLOW_TEMPLATES, (flow_x, flow_y)):
        for k, data in enumerate(images, 1):
            with atomic_path(os.path.join(folder, f"{prefix}{k:05d}.jpg")) as tmp:
                with open(tmp, "wb") as f:
                    f.write(data)


def add_flow_to_frames(list_file: str, *, method: str = "tvl1", bound: float = 20.0,
                       workers: int = 2, overwrite: bool = False, progress: bool = True) -> dict:
    """Adds flow_x_/flow_y_ JPEGs to every video folder of a raw-frames `.list` file.

    Folders whose n-1 flow files all exist are skipped unless `overwrite` (resume). Returns the
    summary also written beside the list file as <list name>-extract_flow-summary.json, with
    the rejects in <list name>-extract_flow-rejects.tsv.
    """
    from tfvid.data.pipeline import RGB_TEMPLATE, read_list_file
    _check(method, bound, workers)
    dirs, ids, counts, _ = read_list_file(list_file)
    start, rejects = time.time(), []
    todo = [k for k in range(len(dirs))
            if overwrite or not _complete(dirs[k], max(counts[k] - 1, 0)) or counts[k] < 2]

    def frames_of(k):
        data = []
        for i in range(1, counts[k] + 1):
            path = os.path.join(dirs[k], f"{RGB_TEMPLATE}{i:05d}.jpg")
            try:
                with open(path, "rb") as f:
                    data.append(f.read())
            except OSError:
                data.append(b"")                # reported by the worker as not decodable
        return data

    items = ((k, {"video_id": ids[k], "method": method, "bound": bound, "frames": frames_of(k)})
             for k in todo)
    bar = _progress(len(todo), progress, "extract_flow")
    flow_frames = 0
    try:
        for k, r in in_order(items, workers):
            bar.update(1)
            if "reject" in r:
                rejects.append((dirs[k], ids[k], r["reject"]))
            else:
                _write_flow_files(dirs[k], r["flow_x"], r["flow_y"])
                flow_frames += len(r["flow_x"])
            bar.set_postfix(rejects=len(rejects))
    finally:
        bar.close()
    name = os.path.splitext(os.path.basename(list_file))[0] + "-extract_flow"
    summary = {"layout": "frames", "method": method, "bound": bound, "list": list_file,
               "videos": len(dirs), "videos_done": len(todo) - len(rejects),
               "videos_skipped": len(dirs) - len(todo), "flow_frames": flow_frames,
               "seconds": round(time.time() - start, 3)}
    return _write_report(os.path.dirname(os.path.abspath(list_file)), name, rejects, summary)
