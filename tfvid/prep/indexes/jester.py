"""Jester / Something-Something v1 index: <prefix>-labels.csv and 'id;label' CSV lists; each
video is a folder of frame images (see tfvid.prep.indexes and tfvid.prep.frame_folders)."""
from __future__ import annotations

import os

from tfvid.prep.indexes.base import VideoEntry, class_lookup, lines, nonempty


_JESTER_SPLITS = {"train": "train", "validation": "validation", "val": "validation",
                  "test": "test"}
JESTER_PREFIXES = ("jester-v1", "something-something-v1")


def jester_prefix(index: str) -> str:
    """The file prefix of a Jester-style index folder: jester-v1 or something-something-v1
    (or the one other '<prefix>-labels.csv' there). FileNotFoundError naming the folder if
    none."""
    if not os.path.isdir(index):
        raise FileNotFoundError(f"jester index {index!r} must be the folder holding "
                                "jester-v1-labels.csv / -train.csv / -validation.csv / "
                                "-test.csv (or the something-something-v1-* files)")
    present = set(os.listdir(index))
    for prefix in JESTER_PREFIXES:
        if f"{prefix}-labels.csv" in present:
            return prefix
    others = sorted(f[: -len("-labels.csv")] for f in present if f.endswith("-labels.csv"))
    if len(others) == 1:
        return others[0]
    raise FileNotFoundError(
        f"no jester-v1-labels.csv or something-something-v1-labels.csv in the index folder "
        f"{index!r}" + (f" (several other label files: {', '.join(others)})" if others else ""))


def load(videos_dir, index, split, classes):
    """(entries, class names) of `split` (tfvid.prep.indexes.load_index; classes: given names
    or None to read them from the index)."""
    which = _JESTER_SPLITS.get(split)
    if which is None:
        raise ValueError(f"jester split must be train, validation or test, got {split!r}")
    if os.path.isfile(index):  # one of the CSVs: its folder holds the others
        index = os.path.dirname(index)
    prefix = jester_prefix(index)
    if classes is None:
        label_file = os.path.join(index, f"{prefix}-labels.csv")
        classes = [line for _, line in lines(label_file)]
        if not classes:
            raise ValueError(f"{label_file}: no class names")
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        if repeated:
            raise ValueError(f"{label_file}: class name(s) listed twice: {repeated}")
    find = class_lookup(classes)
    list_file = os.path.join(index, f"{prefix}-{which}.csv")
    entries, seen = [], {}
    for n, line in lines(list_file):
        where = f"{list_file}:{n}"
        vid, _, name = (p.strip() for p in line.partition(";"))
        if not vid or "/" in vid or "\\" in vid or vid in (".", ".."):
            raise ValueError(f"{where}: malformed line {line!r}; expected 'id;label' "
                             "(test lists: 'id')")
        if vid in seen:
            raise ValueError(f"{where}: video id {vid!r} already listed on line {seen[vid]}")
        seen[vid] = n
        label = find(name, where) if name else None
        entries.append(VideoEntry(vid, os.path.join(videos_dir, vid), label,
                                  classes[label] if label is not None else None, split,
                                  frame_folder=True))
    nonempty(entries, list_file, split)
    return entries, classes
