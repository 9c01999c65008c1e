"""HMDB51 index: one '<class>_test_split<N>.txt' file per class, lines 'video.avi 0|1|2'
(1 train, 2 test, 0 unused); see tfvid.prep.indexes."""
from __future__ import annotations

import os

from tfvid.prep.indexes.base import VideoEntry, class_lookup, lines, split_number


def load(videos_dir, index, split, classes):
    """(entries, class names) of `split` (tfvid.prep.indexes.load_index; classes: given names
    or None to read them from the index)."""
    kind, number = split_number(split, "hmdb51")
    wanted = "1" if kind == "train" else "2"
    suffix = f"_test_split{number}.txt"
    if not os.path.isdir(index):
        raise FileNotFoundError(f"hmdb51 index {index!r} must be the folder of split files")
    files = sorted(f for f in os.listdir(index) if f.endswith(suffix))
    if not files:
        raise FileNotFoundError(f"no '<class>{suffix}' split files in {index!r}")
    names = [f[: -len(suffix)] for f in files]
    classes = classes or sorted(names)
    find = class_lookup(classes)
    entries = []
    for fname, cname in zip(files, names):
        path = os.path.join(index, fname)
        label = find(cname, path)
        for n, line in lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}:{n}: malformed line {line!r}; expected 'video.avi 0|1|2'")
            if parts[1] == wanted:
                entries.append(VideoEntry(os.path.splitext(parts[0])[0],
                                          os.path.join(videos_dir, cname, parts[0]),
                                          label, classes[label], split))
    return entries, classes
