"""Dataset preparation: videos -> sharded TFRecords of SequenceExamples and/or raw-frame folders.

`prepare(entries, class_names, output_dir=..., split=...)` writes, for one split:

    output_dir/classes.txt                          class names, one per line, index order
    output_dir/<split>-00000-of-00008.tfrecord ...  one SequenceExample per video (schema.py)
    output_dir/frames/<split>/<video_id>/img_00001.jpg, flow_x_00001.jpg, flow_y_00001.jpg
    output_dir/<split>.list                         "frames/<split>/<video_id> <num_frames> <label>"
    output_dir/<split>-rejects.tsv                  path <TAB> reason of every skipped video
    output_dir/<split>-partial.tsv                  path <TAB> note of videos kept with part of
                                                    their frames (truncated/damaged files)
    output_dir/<split>-summary.json                 videos, frames, rejects, partial, shards, ...
    output_dir/<split>-manifest.json                options, the split's video ids and each
                                                    shard's video ids
    output_dir/<split>-progress.jsonl               one line per finished shard (bytes, rejects)
    output_dir/.<split>.lock                        held while a prepare of the split runs

Frame folders: a video may be a folder of frame images (Jester / Something-Something v1,
--format=jester): its JPEG files are stored byte for byte when no resize is needed
(frame_size=None), else decoded, resized and encoded once; PNG frames are encoded to JPEG; the
records' frame rate is frame_folder_fps (12, Jester's). A missing folder is rejected as "frame
folder not found" (retried when it appears), an empty or unreadable one with the reason.

Shard plan: the videos are shuffled with `shuffle_seed` (recorded in the manifest options; None
keeps index order) before assign_shards balances them, so every shard (and a sequential read of
it) mixes the classes even for class-sorted indexes such as UCF101's.

Splits: one prepare of a split at a time (a second one raises tfvid.lock.LockedError naming
the holder), and a video id listed in another split's manifest in the same output_dir is
refused (a video must not be in two splits).

Reliability: shards and frame folders are written under temporary names and renamed only when
complete, so a crash never leaves a partial file under a final name. A rerun with the same
options skips finished shards (logged in the progress file with their byte size) and frame
folders and redoes the rest; a rerun with different options or a different video list is
refused. A video that is missing, empty, undecodable, has zero frames, has no label, or whose
flow and RGB frame counts disagree is skipped and listed in the rejects file; every other video
is written. Unlabeled entries are written (label absent) only when the whole split is unlabeled
(e.g. Kinetics or Something-Something test lists) or allow_unlabeled=True. A video that decodes
only in part (truncated) is written with its frames and listed in the partial file.

Rejects are retried: each reject records the file's size/mtime/ctime, and a rerun redoes a
finished shard when one of its rejected files changed since (it appeared, was replaced, its
permissions were fixed) or when the cause lies outside the file (a worker process died, an I/O
error). Permanent rejects (undecodable, zero frames, no video stream, no label, flow mismatch)
of an unchanged file stay rejected without decoding it again.

Work runs in `workers` processes (tfvid.prep.prepare_worker; spawned, they import PyAV/OpenCV,
not TensorFlow, and die with the main process); the main process writes the shards in a fixed
order, so the output is the same for any worker count. A worker that dies on a video (out of
memory, decoder crash) gets that video rejected ("worker process died (signal N) while
decoding") and the run goes on.

Write errors (disk full, ...) stop the run with a tfvid.prep.prepare_worker.WriteError (an
OSError) naming the shard or frame folder ("no space left on device"); the temporary file or
folder is removed and finished shards and folders are kept, so a rerun resumes.
Modules: tfvid.prep.prepare_manifest (the manifest, rejects retried, reports),
tfvid.prep.shards (shard names and plan, progress log), tfvid.prep.prepare_worker (per-video work).
"""
from __future__ import annotations

import errno as errnolib
import json
import os
import shutil
import time
from typing import Sequence

from tfvid.atomic import atomic_path
from tfvid.lock import folder_lock
from tfvid.prep import prepare_manifest as pm
from tfvid.prep.indexes import VideoEntry
from tfvid.prep.prepare_worker import OrderedResults, WriteError, write_error
from tfvid.prep.shards import (append_progress, assign_shards, atomic_write,  # noqa: F401
                               count_records, load_progress, shard_name, shard_paths)
from tfvid.progress import progress_bar

LAYOUTS = ("tfrecord", "frames", "both")
FLOW_METHODS = ("none", "tvl1", "dis", "farneback")


def _ensure_writable(output_dir: str) -> None:
    try:
        os.makedirs(output_dir, exist_ok=True)
        probe = os.path.join(output_dir, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise PermissionError(f"output_dir {output_dir!r} is not a writable folder "
                              f"({type(e).__name__}: {e.strerror or e})") from None


def _remove_stale_temps(output_dir: str, split: str, frames_root: str) -> None:
    """Deletes temporary files of crashed runs (they are never read as results)."""
    for f in os.listdir(output_dir):
        if f.startswith((f".{split}-", f".{split}.")) and ".tmp-" in f:   # see atomic_path
            os.remove(os.path.join(output_dir, f))
    if os.path.isdir(frames_root):
        for f in os.listdir(frames_root):
            if f.startswith(".tmp-"):
                shutil.rmtree(os.path.join(frames_root, f), ignore_errors=True)


def prepare(entries: Sequence[VideoEntry], class_names: Sequence[str], *, output_dir: str,
            split: str, num_shards: int = 8, frame_size: tuple[int, int] | None = (340, 256),
            short_side: int | None = None, fps: float | None = None, flow: str = "none",
            layout: str = "tfrecord", workers: int = 2, jpeg_quality: int = 90,
            flow_bound: float = 20.0, allow_unlabeled: bool | None = None,
            progress: bool = True, shuffle_seed: int | None = 0,
            frame_folder_fps: float = 12.0) -> dict:
    """Prepares one split (see the module docstring for the files). Returns the summary dict:

    split, layout, videos (written), frames (RGB frames written), rejects, partial, shards
    (count), shards_skipped (finished earlier), frame_folders, seconds, output_dir, files.
    frame_size is (width, height) (TSN: 340x256); short_side keeps the aspect ratio instead.
    allow_unlabeled: None = write unlabeled videos only if no entry of the split has a label.
    shuffle_seed: seed of the video order before sharding (None = index order).
    frame_folder_fps: frame rate of sources that are folders of frame images (Jester and
    Something-Something v1: 12), recorded as the records' image/frame_rate.
    Raises ValueError (bad arguments, no videos, options/video list differ from the earlier
    run, a video id in two splits), tfvid.lock.LockedError (the split is being prepared by
    another process) or WriteError (an output could not be written, e.g. disk full).
    """
    start = time.time()
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if flow not in FLOW_METHODS:
        raise ValueError(f"flow must be one of {', '.join(FLOW_METHODS)}, got {flow!r}")
    if num_shards < 1 or workers < 1 or not 1 <= jpeg_quality <= 100:
        raise ValueError(f"need num_shards >= 1, workers >= 1 and 1 <= jpeg_quality <= 100, got "
                         f"{num_shards}, {workers}, {jpeg_quality}")
    if not frame_folder_fps > 0:
        raise ValueError(f"frame_folder_fps must be positive, got {frame_folder_fps}")
    if not split or "/" in split or split.startswith("."):
        raise ValueError(f"bad split name {split!r}")
    entries = list(entries)
    if not entries:
        raise ValueError(f"no videos to prepare for split {split!r} (empty index?)")
    output_dir = os.path.abspath(output_dir)
    _ensure_writable(output_dir)
    _check_entries(entries, class_names)
    options = {"frame_size": list(frame_size) if frame_size else None, "short_side": short_side,
               "fps": fps, "flow": flow, "flow_bound": flow_bound, "jpeg_quality": jpeg_quality,
               "class_names": list(class_names), "shuffle_seed": shuffle_seed,
               "frame_folder_fps": float(frame_folder_fps)}
    lock = os.path.join(output_dir, f".{split}.lock")
    with folder_lock(lock, f"prepare_data of split {split!r}"):
        return _prepare_locked(entries, class_names, options, output_dir=output_dir, split=split,
                               num_shards=num_shards, layout=layout, workers=workers,
                               allow_unlabeled=allow_unlabeled, progress=progress, start=start)


def _prepare_locked(entries, class_names, options, *, output_dir, split, num_shards, layout,
                    workers, allow_unlabeled, progress, start) -> dict:
    pm.check_other_splits(output_dir, split, entries)
    pm.write_classes(output_dir, class_names)
    write_records, write_frames = layout in ("tfrecord", "both"), layout in ("frames", "both")
    frames_root = os.path.join(output_dir, "frames", split)
    if write_frames:
        os.makedirs(frames_root, exist_ok=True)
    _remove_stale_temps(output_dir, split, frames_root)
    pre_rejects = _pre_rejects(entries, allow_unlabeled)
    manifest = _load_plan(entries, options, output_dir, split, num_shards, write_records)
    progress_path = os.path.join(output_dir, f"{split}-progress.jsonl")
    work = _plan_work(entries, manifest, options, pre_rejects, frames_root, write_records,
                      write_frames, progress_path,
                      os.path.join(output_dir, f"{split}-partial.tsv"))
    tasks, todo_shards, rejects, partial, done = (work[k] for k in (
        "tasks", "todo_shards", "rejects", "partial", "done"))
    skipped = len(done)
    by_id = {e.video_id: e for e in entries}
    results = OrderedResults(tasks, workers)  # workers start while TensorFlow is imported
    bar = None
    try:
        if todo_shards:
            import tensorflow  # noqa: F401 (used by _write_shard; imported before the timer starts)
        bar = progress_bar(total=len(tasks), unit="video", desc=f"prepare {split}",
                           disable=not progress, dynamic_ncols=True)
        for shard in todo_shards:
            done[shard["name"]] = _write_shard(shard, options, output_dir, progress_path,
                                               results, by_id, pre_rejects, rejects, partial,
                                               bar)
        for result in results:  # frame folders of videos whose shards were already finished
            if "reject" in result:
                rejects[result["video_id"]] = result["reject"]
            elif "partial" in result:
                partial[result["video_id"]] = result["partial"]
            bar.update(1)
            bar.set_postfix(rejects=len(rejects))
    finally:
        results.close()
        if bar is not None:
            bar.close()
        _remove_temp_folders(frames_root)
    return pm.write_reports(entries, rejects, partial, manifest, done, output_dir, split, layout,
                            frames_root, skipped, start)


def _pre_rejects(entries: list[VideoEntry], allow_unlabeled: bool | None) -> dict[str, str]:
    """{video id: reason} of the videos rejected before decoding: no label (unless the split
    is unlabeled or allow_unlabeled), missing or empty file."""
    if allow_unlabeled is None:
        allow_unlabeled = all(e.label is None for e in entries)
    pre_rejects = {}
    for e in entries:
        if e.label is None and not allow_unlabeled:
            pre_rejects[e.video_id] = "no label"
        elif not os.path.exists(e.path):
            pre_rejects[e.video_id] = ("frame folder not found" if e.frame_folder
                                       else "video file not found")
        elif os.path.isdir(e.path):
            continue  # a folder of frame images: read (or rejected with the reason) by a worker
        elif not os.path.isfile(e.path):
            pre_rejects[e.video_id] = "video file not found"
        elif os.path.getsize(e.path) == 0:
            pre_rejects[e.video_id] = "empty file (0 bytes)"
    return pre_rejects


def _load_plan(entries, options, output_dir, split, num_shards, write_records) -> dict:
    """The split's manifest with its shard plan (checked against an earlier run's), written."""
    manifest_path = os.path.join(output_dir, f"{split}-manifest.json")
    progress_path = os.path.join(output_dir, f"{split}-progress.jsonl")
    if not os.path.exists(manifest_path) and os.path.exists(progress_path):
        os.remove(progress_path)  # a progress log without its manifest belongs to nothing
    manifest = pm.load_manifest(manifest_path, options)
    if write_records:
        pm.plan_shards(manifest, manifest_path, entries, num_shards, split,
                       options["shuffle_seed"])
    manifest["video_ids"] = [e.video_id for e in entries]
    atomic_write(manifest_path, json.dumps(manifest, indent=1))
    return manifest


def _plan_work(entries, manifest, options, pre_rejects, frames_root, write_records,
               write_frames, progress_path, partial_path) -> dict:
    """What this run does: {tasks (worker tasks: videos of unfinished shards in shard order,
    as _write_shard consumes them, then frame folders still missing), todo_shards, rejects and
    partial notes known so far, done (finished shards kept)}. A finished shard keeps the
    rejects recorded when it was written, unless one of them is retried (should_retry): the
    shard is then written again."""
    by_id = {e.video_id: e for e in entries}
    common = {"options": options, "frames_root": frames_root}

    def task(e: VideoEntry, want_example: bool) -> dict | None:
        frames_dir = None
        if write_frames and not os.path.isdir(os.path.join(frames_root, e.video_id)):
            frames_dir = os.path.join(frames_root, e.video_id)
        if not want_example and frames_dir is None:
            return None
        return {**common, "video_id": e.video_id, "path": e.path, "want_example": want_example,
                "frames_dir": frames_dir}

    tasks, todo_shards, frame_only, rejects, partial = [], [], [], {}, {}
    done = load_progress(progress_path) if write_records else {}
    if write_records:
        for shard in manifest["shards"]:
            info = done.get(shard["name"])
            path = os.path.join(os.path.dirname(progress_path), shard["name"])
            if (info and os.path.isfile(path) and os.path.getsize(path) == info["bytes"]
                    and not any(pm.should_retry(r) for r in info["rejects"])):
                shard_rejects = {r[1]: r[2] for r in info["rejects"]}
                rejects.update(shard_rejects)
                partial.update({r[1]: r[2] for r in info.get("partial", [])})
                frame_only += [by_id[i] for i in shard["video_ids"] if i not in shard_rejects]
            else:
                done.pop(shard["name"], None)
                todo_shards.append(shard)
                ids = shard["video_ids"]
                rejects.update({i: pre_rejects[i] for i in ids if i in pre_rejects})
                tasks += [task(by_id[i], True) for i in ids if i not in pre_rejects]
    else:
        frame_only = entries
        old = pm.read_partial(partial_path)  # folders finished earlier keep their notes
        partial.update({e.video_id: old[e.path] for e in entries if e.path in old})
    for e in frame_only:
        t = task(e, False)
        if t is not None and e.video_id in pre_rejects:
            rejects[e.video_id] = pre_rejects[e.video_id]
        elif t is not None:
            tasks.append(t)
            partial.pop(e.video_id, None)
    return {"tasks": tasks, "todo_shards": todo_shards, "rejects": rejects, "partial": partial,
            "done": done}


def _remove_temp_folders(frames_root: str) -> None:
    """Temporary frame folders left by a failed write or a dead worker (the split is locked,
    so no other run writes here)."""
    if os.path.isdir(frames_root):
        for f in os.listdir(frames_root):
            if f.startswith(".tmp-"):
                shutil.rmtree(os.path.join(frames_root, f), ignore_errors=True)


def _check_entries(entries: list[VideoEntry], class_names: Sequence[str]) -> None:
    seen = set()
    for e in entries:
        if e.video_id in seen:
            raise ValueError(f"duplicate video id {e.video_id!r} ({e.path}); ids must be unique "
                             "within a split")
        seen.add(e.video_id)
        parts = e.video_id.split("/")
        if not e.video_id or os.path.isabs(e.video_id) or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad video id {e.video_id!r} ({e.path}): must be a relative name")
        if e.label is not None and not 0 <= e.label < len(class_names):
            raise ValueError(f"video {e.video_id!r}: label {e.label} is outside "
                             f"0..{len(class_names) - 1}")


def _write_shard(shard, options, output_dir, progress_path, results, by_id, pre_rejects,
                 rejects, partial, bar) -> dict:
    """Consumes this shard's results in order, writes a temp file, renames it when complete,
    then appends the shard's record to the progress log and returns it. A write error removes
    the temp file and raises WriteError naming the shard."""
    import tensorflow as tf
    from tfvid.data import schema
    final = os.path.join(output_dir, shard["name"])
    videos = frames = 0
    shard_rejects = [[by_id[i].path, i, pre_rejects[i], pm.file_sig(by_id[i].path)]
                     for i in shard["video_ids"] if i in pre_rejects]
    shard_partial = []
    try:
        with atomic_path(final) as tmp:
            with tf.io.TFRecordWriter(tmp) as writer:
                for vid in shard["video_ids"]:
                    if vid in pre_rejects:
                        continue
                    r = next(results)
                    if r["video_id"] != vid:
                        raise RuntimeError(f"internal error: result for {r['video_id']!r} while "
                                           f"writing {vid!r} of {shard['name']}")
                    bar.update(1)
                    if "reject" in r:
                        rejects[vid] = r["reject"]
                        shard_rejects.append([r["path"], vid, r["reject"], pm.file_sig(r["path"])])
                    else:
                        e = by_id[vid]
                        ex = schema.make_example(
                            vid, r["frames"], height=r["height"], width=r["width"],
                            frame_rate=r["frame_rate"], timestamps_us=r["timestamps"],
                            label_index=e.label, label_string=e.label_name, data_path=e.path,
                            flow_x=r["flow_x"], flow_y=r["flow_y"],
                            flow_bound=options["flow_bound"], flow_method=options["flow"])
                        writer.write(ex.SerializeToString())
                        videos += 1
                        frames += r["num_frames"]
                        if "partial" in r:
                            partial[vid] = r["partial"]
                            shard_partial.append([r["path"], vid, r["partial"]])
                    bar.set_postfix(rejects=len(rejects))
    except WriteError:
        raise  # a frame folder (layout "both") could not be written: already names its path
    except (OSError, tf.errors.OpError) as e:
        if isinstance(e, tf.errors.OpError):  # TF reports ENOSPC as ResourceExhaustedError
            text = (e.message or str(e)).strip()
            code = errnolib.ENOSPC if "no space left" in text.lower() else errnolib.EIO
            e = OSError(code, text)
        raise write_error(final, e, "TFRecord shard") from None
    info = {"name": shard["name"], "bytes": os.path.getsize(final), "videos": videos,
            "frames": frames, "rejects": shard_rejects, "partial": shard_partial}
    append_progress(progress_path, info)
    return info
