"""Kinetics index: CSV (or a folder of CSVs) label,youtube_id,time_start,time_end,split;
videos found by name under videos_dir (see tfvid.prep.indexes)."""
from __future__ import annotations

import csv
import os

from tfvid.prep.indexes.base import VIDEO_EXTENSIONS, VideoEntry, class_lookup


_KINETICS_SPLITS = {"train": "train", "val": "val", "valid": "val", "validate": "val",
                    "validation": "val", "test": "test"}


def _walk_videos(root: str) -> dict[str, list[str]]:
    """Maps each video file stem under root to its paths (one walk, sorted for determinism)."""
    found: dict[str, list[str]] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext.lower() in VIDEO_EXTENSIONS:
                found.setdefault(stem, []).append(os.path.join(folder, f))
    return found


def load(videos_dir, index, split, classes):
    """(entries, class names) of `split` (tfvid.prep.indexes.load_index; classes: given names
    or None to read them from the index)."""
    want = _KINETICS_SPLITS.get(split)
    if want is None:
        raise ValueError(f"kinetics split must be train, val or test, got {split!r}")
    files = ([os.path.join(index, f) for f in sorted(os.listdir(index)) if f.endswith(".csv")]
             if os.path.isdir(index) else [index])
    if not files:
        raise FileNotFoundError(f"no .csv files in kinetics index folder {index!r}")
    rows = []
    for path in files:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"youtube_id", "time_start", "time_end"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: missing CSV column(s) {sorted(missing)}; expected "
                                 "header label,youtube_id,time_start,time_end,split")
            for n, row in enumerate(reader, 2):
                try:
                    start, end = int(float(row["time_start"])), int(float(row["time_end"]))
                except (TypeError, ValueError):
                    raise ValueError(f"{path}:{n}: malformed time_start/time_end in {row}") from None
                row_split = _KINETICS_SPLITS.get((row.get("split") or want).strip(), None)
                if row_split is None:
                    raise ValueError(f"{path}:{n}: unknown split value {row.get('split')!r}")
                label = (row.get("label") or "").strip() or None
                rows.append((path, n, label, row["youtube_id"].strip(), start, end, row_split))
    if classes is None:
        train = {r[2] for r in rows if r[6] == "train" and r[2]}
        classes = sorted(train or {r[2] for r in rows if r[2]})
    find = class_lookup(classes)
    lookup = _walk_videos(videos_dir)
    by_id: dict[str, list[str]] = {}
    for stem, paths in lookup.items():
        by_id.setdefault(stem[:11], []).extend(paths)
    entries = []
    for path, n, label_name, yid, start, end, row_split in rows:
        if row_split != want:
            continue
        label = find(label_name, f"{path}:{n}") if label_name else None
        stem = f"{yid}_{start:06d}_{end:06d}"
        candidates = lookup.get(stem) or lookup.get(yid) or by_id.get(yid) or []
        preferred = [p for p in candidates if label_name and
                     os.path.basename(os.path.dirname(p)) in (label_name, label_name.replace(" ", "_"))]
        video = (preferred or candidates or
                 [os.path.join(videos_dir, label_name or "", stem + ".mp4")])[0]
        entries.append(VideoEntry(stem, video, label,
                                  classes[label] if label is not None else None, split))
    return entries, classes
