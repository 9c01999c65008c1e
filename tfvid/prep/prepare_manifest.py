"""prepare_data's record of a split beside its shards: the manifest (options, the split's video
ids and each shard's video ids: the shard plan), the rejects that a rerun retries, the classes
file and the reports written at the end (rejects, partial, raw-frame list, summary).

    output_dir/<split>-manifest.json      load_manifest (options must match), plan_shards,
                                          check_other_splits (a video in one split only)
    output_dir/<split>-progress.jsonl     tfvid.prep.shards.load_progress; a reject in it is
                                          retried when should_retry (file changed, or a cause
                                          outside the file)
    output_dir/classes.txt                write_classes
    output_dir/<split>-rejects.tsv, -partial.tsv, .list, -summary.json   write_reports

See tfvid.prep.prepare for the job itself.
"""
from __future__ import annotations

import json
import os
import random
import stat
import time
from typing import Sequence

from tfvid.prep.indexes import VideoEntry
from tfvid.prep.prepare_worker import count_frame_files
from tfvid.prep.shards import assign_shards, atomic_write, shard_name

MANIFEST_VERSION = 1


def file_sig(path: str) -> list[int] | None:
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


def source_bytes(path: str) -> int:
    """Bytes of a video file or of the files of a frame folder (0 if missing); shard balance."""
    sig = file_sig(path)
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
    return file_sig(path) != reject[3]


def write_classes(output_dir: str, class_names: Sequence[str]) -> None:
    path = os.path.join(output_dir, "classes.txt")
    text = "".join(f"{c}\n" for c in class_names)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() != text:
                raise ValueError(f"{path} lists other classes than this dataset index; "
                                 "use a fresh output_dir or delete the old outputs")
        return
    atomic_write(path, text)


def read_partial(path: str) -> dict[str, str]:
    """{path: note} of a <split>-partial.tsv file ({} when there is none)."""
    out = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in list(f)[1:]:
                parts = line.rstrip("\n").split("\t", 1)
                if len(parts) == 2:
                    out[parts[0]] = parts[1]
    return out


def check_other_splits(output_dir: str, split: str, entries: list[VideoEntry]) -> None:
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


# Options added after manifests were first written: an older manifest without one had the default.
_OPTION_DEFAULTS = {"frame_folder_fps": 12.0}


def load_manifest(path: str, options: dict) -> dict:
    """The split's manifest (a new one when there is none); ValueError naming the options that
    differ from the earlier run's."""
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


def plan_shards(manifest, manifest_path, entries, num_shards, split, seed) -> None:
    """Sets manifest["shards"] (videos shuffled with `seed`, then balanced by assign_shards), or
    checks an existing plan: ValueError when the video list or the shard count changed."""
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
    sizes = [source_bytes(entries[i].path) for i in order]
    manifest["shards"] = [{"name": shard_name(split, k, n),
                           "video_ids": [ids[order[i]] for i in s]}
                          for k, s in enumerate(assign_shards(sizes, n))]


def write_reports(entries, rejects, partial, manifest, done, output_dir, split, layout,
                  frames_root, skipped, start) -> dict:
    """Writes the rejects and partial files, the raw-frame list (layouts frames / both) and the
    summary of a finished split; returns the summary (see tfvid.prep.prepare.prepare)."""
    files = {"rejects": os.path.join(output_dir, f"{split}-rejects.tsv"),
             "partial": os.path.join(output_dir, f"{split}-partial.tsv"),
             "summary": os.path.join(output_dir, f"{split}-summary.json"),
             "classes": os.path.join(output_dir, "classes.txt")}
    lines = ["path\treason\n"]
    lines += [f"{e.path}\t{rejects[e.video_id]}\n" for e in entries if e.video_id in rejects]
    atomic_write(files["rejects"], "".join(lines))
    kept = [e for e in entries if e.video_id in partial and e.video_id not in rejects]
    atomic_write(files["partial"], "path\tnote\n" + "".join(
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
        atomic_write(files["list"], "".join(rows))
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
    atomic_write(files["summary"], json.dumps(summary, indent=1))
    return summary
