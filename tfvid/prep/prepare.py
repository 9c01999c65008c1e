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
"""
from __future__ import annotations

import errno as errnolib
import json
import os
import random
import shutil
import stat
import time
from typing import Sequence

from tfvid.progress import progress_bar

from tfvid.atomic import atomic_path
from tfvid.prep.indexes import VideoEntry
from tfvid.prep.prepare_worker import OrderedResults, WriteError, count_frame_files, write_error
from tfvid.lock import folder_lock

LAYOUTS = ("tfrecord", "frames", "both")
FLOW_METHODS = ("none", "tvl1", "dis", "farneback")
MANIFEST_VERSION = 1


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def shard_paths(output_dir: str, split: str) -> list[str]:
    """Final shard files of a split, sorted (temporary files are never matched)."""
    pre = f"{split}-"
    return sorted(os.path.join(output_dir, f) for f in os.listdir(output_dir)
                  if f.startswith(pre) and f.endswith(".tfrecord") and "-of-" in f[len(pre):])


def assign_shards(sizes: Sequence[int], num_shards: int) -> list[list[int]]:
    """Splits items into num_shards lists of indices with balanced counts and byte sizes.

    Items are taken largest first and dealt in a snake order (0..S-1, S-1..0, ...): counts
    differ by at most one and sizes stay close. Each index appears exactly once; each shard
    keeps its items in ascending index order.
    """
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    shards: list[list[int]] = [[] for _ in range(num_shards)]
    for rank, i in enumerate(order):
        r, pos = divmod(rank, num_shards)
        shards[pos if r % 2 == 0 else num_shards - 1 - pos].append(i)
    return [sorted(s) for s in shards]


def count_records(path: str) -> int:
    """Number of records in a TFRecord file; ValueError naming the file if it is truncated/corrupt."""
    import tensorflow as tf
    try:
        return sum(1 for _ in tf.data.TFRecordDataset(path))
    except tf.errors.DataLossError as e:
        first = (e.message or str(e)).strip().splitlines()[0]
        raise ValueError(f"{path}: truncated or corrupt TFRecord shard ({first}); delete it and "
                         "rerun prepare_data to rewrite it") from None


# ---------------------------------------------------------------- small file helpers

def _atomic_write(path: str, text: str) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise write_error(path, e, "file") from e


def _file_sig(path: str) -> list[int] | None:
    """[size, mtime_ns, ctime_ns] of a file, None if it cannot be stat'ed. A folder (of frame
    images): total size of its files and the latest mtime/ctime of the folder and its files."""
    try:
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        size, mtime, ctime = 0, st.st_mtime_ns, st.st_ctime_ns
        with os.scandir(path) as it:
            for d in it:
                s = d.stat()
                size, mtime, ctime = (size + s.st_size, max(mtime, s.st_mtime_ns),
                                      max(ctime, s.st_ctime_ns))
        return [size, mtime, ctime]
    except OSError:
        return None


def _source_bytes(path: str) -> int:
    """Bytes of a video file or of the files of a frame folder (0 if missing); shard balance."""
    sig = _file_sig(path)
    return sig[0] if sig else 0


# Rejects whose cause lies outside the video file: always retried on a rerun.
RETRY_ALWAYS = ("worker process died", "Input/output error", "I/O error")
# Rejects of an old progress log without file signatures that are retried.
_RETRY_UNSIGNED = RETRY_ALWAYS + ("not found", "empty file", "Permission denied")


def should_retry(reject: Sequence) -> bool:
    """Whether a recorded reject [path, video_id, reason(, signature)] is retried on a rerun:
    its cause lies outside the file, or the file changed since it was rejected."""
    path, reason = reject[0], reject[2]
    if any(t in reason for t in RETRY_ALWAYS):
        return True
    if len(reject) < 4:
        return any(t in reason for t in _RETRY_UNSIGNED)
    return _file_sig(path) != reject[3]


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


def _write_classes(output_dir: str, class_names: Sequence[str]) -> None:
    path = os.path.join(output_dir, "classes.txt")
    text = "".join(f"{c}\n" for c in class_names)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() != text:
                raise ValueError(f"{path} lists other classes than this dataset index; "
                                 "use a fresh output_dir or delete the old outputs")
        return
    _atomic_write(path, text)


def _remove_stale_temps(output_dir: str, split: str, frames_root: str) -> None:
    """Deletes temporary files of crashed runs (they are never read as results)."""
    for f in os.listdir(output_dir):
        if f.startswith((f".{split}-", f".{split}.")) and ".tmp-" in f:   # see atomic_path
            os.remove(os.path.join(output_dir, f))
    if os.path.isdir(frames_root):
        for f in os.listdir(frames_root):
            if f.startswith(".tmp-"):
                shutil.rmtree(os.path.join(frames_root, f), ignore_errors=True)


# ---------------------------------------------------------------- the preparation job

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
    _check_other_splits(output_dir, split, entries)
    _write_classes(output_dir, class_names)
    write_records, write_frames = layout in ("tfrecord", "both"), layout in ("frames", "both")
    frames_root = os.path.join(output_dir, "frames", split)
    if write_frames:
        os.makedirs(frames_root, exist_ok=True)
    _remove_stale_temps(output_dir, split, frames_root)

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

    manifest_path = os.path.join(output_dir, f"{split}-manifest.json")
    progress_path = os.path.join(output_dir, f"{split}-progress.jsonl")
    partial_path = os.path.join(output_dir, f"{split}-partial.tsv")
    if not os.path.exists(manifest_path) and os.path.exists(progress_path):
        os.remove(progress_path)  # a progress log without its manifest belongs to nothing
    manifest = _load_manifest(manifest_path, options)
    if write_records:
        _plan_shards(manifest, manifest_path, entries, num_shards, split, options["shuffle_seed"])
    manifest["video_ids"] = [e.video_id for e in entries]
    _atomic_write(manifest_path, json.dumps(manifest, indent=1))

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

    # Tasks of unfinished shards first (in shard order, as _write_shard consumes them), then
    # frame folders still missing for videos of finished shards (or of the frames layout).
    # A finished shard keeps the rejects recorded when it was written, unless one of them is
    # retried (should_retry): the shard is then written again.
    tasks, todo_shards, frame_only, rejects, partial = [], [], [], {}, {}
    done = load_progress(progress_path) if write_records else {}
    if write_records:
        for shard in manifest["shards"]:
            info = done.get(shard["name"])
            path = os.path.join(output_dir, shard["name"])
            if (info and os.path.isfile(path) and os.path.getsize(path) == info["bytes"]
                    and not any(should_retry(r) for r in info["rejects"])):
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
        old = _read_partial(partial_path)  # folders finished earlier keep their notes
        partial.update({e.video_id: old[e.path] for e in entries if e.path in old})
    for e in frame_only:
        t = task(e, False)
        if t is not None and e.video_id in pre_rejects:
            rejects[e.video_id] = pre_rejects[e.video_id]
        elif t is not None:
            tasks.append(t)
            partial.pop(e.video_id, None)
    skipped = len(done)
    results = OrderedResults(tasks, workers)  # workers start while TensorFlow is imported
    bar = None
    try:
        if todo_shards:
            import tensorflow  # noqa: F401 (used by _write_shard; imported before the timer starts)
        bar = progress_bar(total=len(tasks), unit="video", desc=f"prepare {split}",
                   disable=not progress, dynamic_ncols=True)
        if write_records:
            for shard in todo_shards:
                done[shard["name"]] = _write_shard(shard, options, output_dir, progress_path,
                                                   results, by_id, pre_rejects, rejects,
                                                   partial, bar)
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

    return _finish(entries, rejects, partial, manifest, done, output_dir, split, layout,
                   frames_root, skipped, start)


def _remove_temp_folders(frames_root: str) -> None:
    """Temporary frame folders left by a failed write or a dead worker (the split is locked,
    so no other run writes here)."""
    if os.path.isdir(frames_root):
        for f in os.listdir(frames_root):
            if f.startswith(".tmp-"):
                shutil.rmtree(os.path.join(frames_root, f), ignore_errors=True)


def _read_partial(path: str) -> dict[str, str]:
    out = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in list(f)[1:]:
                parts = line.rstrip("\n").split("\t", 1)
                if len(parts) == 2:
                    out[parts[0]] = parts[1]
    return out


def _check_other_splits(output_dir: str, split: str, entries: list[VideoEntry]) -> None:
    """Refuses video ids that another split's manifest in output_dir lists."""
    ids = {e.video_id for e in entries}
    own = f"{split}-manifest.json"
    for name in sorted(os.listdir(output_dir)):
        if not name.endswith("-manifest.json") or name == own or name.startswith("."):
            continue
        path = os.path.join(output_dir, name)
        try:
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
            other_ids = manifest.get("video_ids") or [
                i for s in manifest.get("shards", []) for i in s["video_ids"]]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue  # not a prepare_data manifest
        both = [i for i in other_ids if i in ids]
        if both:
            other = name[: -len("-manifest.json")]
            shown = ", ".join(repr(i) for i in both[:5]) + (
                f" and {len(both) - 5} more" if len(both) > 5 else "")
            raise ValueError(
                f"video id {shown} would be in split {split!r} and in split {other!r} "
                f"({path}): a video must not be in two splits of one output folder; check the "
                "index and --split (folder/csv indexes: give split information or held-out "
                "fractions), or use another output_dir")


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


# Options added after manifests were first written: an older manifest without one had the default.
_OPTION_DEFAULTS = {"frame_folder_fps": 12.0}


def _load_manifest(path: str, options: dict) -> dict:
    if not os.path.exists(path):
        return {"version": MANIFEST_VERSION, "options": options}
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    old = {**_OPTION_DEFAULTS, **manifest.get("options", {})}
    diff = sorted(k for k in set(old) | set(options) if old.get(k) != options.get(k))
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {options.get(k)!r}" for k in diff if
                          k != "class_names") or "class_names differ"
        raise ValueError(f"{path}: this split was prepared with other options ({shown}); "
                         "rerun with the same options to resume, or use a fresh output_dir")
    return manifest


def load_progress(path: str) -> dict[str, dict]:
    """Finished shards {name: {name, ...}} from a progress log (prepare_data: bytes, videos,
    frames, rejects; extract_flow: videos, flow_frames, copied, rejects).

    One JSON line is appended per finished shard; a line cut by a crash is ignored.
    """
    done, bad = {}, False
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    info = json.loads(line)
                    done[info["name"]] = info
                except (json.JSONDecodeError, KeyError, TypeError):
                    bad = True
    if bad:  # rewrite without the broken line, so the next append starts on a fresh line
        _atomic_write(path, "".join(json.dumps(i) + "\n" for i in done.values()))
    return done


def _plan_shards(manifest, manifest_path, entries, num_shards, split, seed) -> None:
    ids = [e.video_id for e in entries]
    if "shards" in manifest:
        old_ids = sorted(i for s in manifest["shards"] for i in s["video_ids"])
        if len(manifest["shards"]) != min(num_shards, max(len(ids), 1)) or old_ids != sorted(ids):
            raise ValueError(f"{manifest_path}: this split was sharded for another video list or "
                             "shard count; use the same index and --num_shards, or a fresh "
                             "output_dir")
        return
    n = min(num_shards, max(len(ids), 1))
    order = list(range(len(entries)))
    if seed is not None:  # mix the classes of class-sorted indexes within every shard
        random.Random(seed).shuffle(order)
    sizes = [_source_bytes(entries[i].path) for i in order]
    manifest["shards"] = [{"name": shard_name(split, k, n),
                           "video_ids": [ids[order[i]] for i in s]}
                          for k, s in enumerate(assign_shards(sizes, n))]


def _write_shard(shard, options, output_dir, progress_path, results, by_id, pre_rejects,
                 rejects, partial, bar) -> dict:
    """Consumes this shard's results in order, writes a temp file, renames it when complete,
    then appends the shard's record to the progress log and returns it. A write error removes
    the temp file and raises WriteError naming the shard."""
    import tensorflow as tf
    from tfvid.data import schema
    final = os.path.join(output_dir, shard["name"])
    videos = frames = 0
    shard_rejects = [[by_id[i].path, i, pre_rejects[i], _file_sig(by_id[i].path)]
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
                        shard_rejects.append([r["path"], vid, r["reject"], _file_sig(r["path"])])
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
    try:
        with open(progress_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(info) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise write_error(progress_path, e, "progress log") from e
    return info


def _finish(entries, rejects, partial, manifest, done, output_dir, split, layout, frames_root,
            skipped, start):
    files = {"rejects": os.path.join(output_dir, f"{split}-rejects.tsv"),
             "partial": os.path.join(output_dir, f"{split}-partial.tsv"),
             "summary": os.path.join(output_dir, f"{split}-summary.json"),
             "classes": os.path.join(output_dir, "classes.txt")}
    lines = ["path\treason\n"]
    lines += [f"{e.path}\t{rejects[e.video_id]}\n" for e in entries if e.video_id in rejects]
    _atomic_write(files["rejects"], "".join(lines))
    kept = [e for e in entries if e.video_id in partial and e.video_id not in rejects]
    _atomic_write(files["partial"], "path\tnote\n" + "".join(
        f"{e.path}\t{partial[e.video_id]}\n" for e in kept))
    videos = frames = folders = 0
    if layout in ("frames", "both"):
        rows = []
        for e in entries:
            folder = os.path.join(frames_root, e.video_id)
            if e.video_id not in rejects and os.path.isdir(folder):
                n = count_frame_files(folder)
                rel = os.path.relpath(folder, output_dir).replace(os.sep, "/")
                rows.append(f"{rel} {n} {e.label if e.label is not None else -1}\n")
                folders += 1
                videos, frames = videos + 1, frames + n
        files["list"] = os.path.join(output_dir, f"{split}.list")
        _atomic_write(files["list"], "".join(rows))
    shards = manifest.get("shards", []) if layout != "frames" else []
    if shards:
        infos = [done[s["name"]] for s in shards]
        videos, frames = sum(d["videos"] for d in infos), sum(d["frames"] for d in infos)
        files["shards"] = [os.path.join(output_dir, s["name"]) for s in shards]
    summary = {"split": split, "layout": layout, "videos": videos, "frames": frames,
               "rejects": len(rejects), "partial": len(kept), "shards": len(shards),
               "shards_skipped": skipped,
               "frame_folders": folders, "seconds": round(time.time() - start, 3),
               "output_dir": output_dir, "files": files}
    _atomic_write(files["summary"], json.dumps(summary, indent=1))
    return summary
