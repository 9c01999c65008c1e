"""Indexes of one's own: a folder per class (optionally under split folders) or a CSV
'path,label[,split]'; without split information, held-out splits by a seeded hash
(tfvid.prep.indexes.base.holdout_split). See tfvid.prep.indexes."""
from __future__ import annotations

import csv
import os
import re

from tfvid.prep.indexes.base import VIDEO_EXTENSIONS, VideoEntry, class_lookup, select_split


_SPLIT_NAME = re.compile(r"(train|training|val|valid|validation|dev|test|testing|eval|holdout)"
                         r"[-_]?\d*", re.IGNORECASE)


def _subfolders(folder: str) -> list[str]:
    return sorted(d for d in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))


def folder_splits(index: str) -> list[str] | None:
    """Split folder names if index is laid out <split>/<class>/..., else None."""
    if not os.path.isdir(index):
        return None
    names = _subfolders(index)
    split_like = [n for n in names if _SPLIT_NAME.fullmatch(n)]
    if not split_like:
        return None
    for n in split_like:
        inside = os.listdir(os.path.join(index, n))
        if not _subfolders(os.path.join(index, n)) or any(
                os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS for f in inside):
            return None  # a class folder that happens to have a split-like name
    return names


def load_folder(videos_dir, index, split, classes, holdout=None, seed=0):
    """(entries, class names) of `split` from class folders (tfvid.prep.indexes.load_index)."""
    if not os.path.isdir(index):
        raise FileNotFoundError(f"folder index {index!r} must be a folder of class folders")
    splits = folder_splits(index)
    root = index
    if splits is not None:
        if split not in splits:
            raise ValueError(f"folder index {index!r} has split folders ({', '.join(splits)}) "
                             f"but no folder for split {split!r}")
        root = os.path.join(index, split)
        names = _subfolders(root)
        all_names = sorted({c for sp in splits for c in _subfolders(os.path.join(index, sp))})
    else:
        names = all_names = _subfolders(index)
    if not all_names:
        raise ValueError(f"folder index {index!r} has no class subfolders")
    classes = classes or all_names
    find = class_lookup(classes)
    entries = []
    for name in names:
        label = find(name, root)
        for folder, dirs, files in os.walk(os.path.join(root, name)):
            dirs.sort()
            for f in sorted(files):
                if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS:
                    path = os.path.join(folder, f)
                    vid = os.path.splitext(os.path.relpath(path, root))[0].replace(os.sep, "/")
                    entries.append(VideoEntry(vid, path, label, classes[label], split))
    return select_split(entries, split, holdout, seed), classes


def csv_rows(index: str) -> list[tuple[int, str, str | None, str | None]]:
    """(line, path, label or None, split or None) of a path,label[,split] CSV."""
    if not os.path.isfile(index):
        raise FileNotFoundError(f"csv index {index!r} not found")
    rows = []
    with open(index, encoding="utf-8-sig", newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            row = [c.strip() for c in row]
            if not row or not any(row):
                continue
            if n == 1 and row[0].lower() == "path":
                continue
            if len(row) > 3 or not row[0]:
                raise ValueError(f"{index}:{n}: malformed line {row!r}; expected "
                                 "'path,label[,split]'")
            row += [""] * (3 - len(row))
            rows.append((n, row[0], row[1] or None, row[2] or None))
    with_split = [r for r in rows if r[3] is not None]
    if with_split and len(with_split) != len(rows):
        n = next(r[0] for r in rows if r[3] is None)
        raise ValueError(f"{index}:{n}: no split value, but other rows have one; give every "
                         "row a split (path,label,split)")
    return rows


def load_csv(videos_dir, index, split, classes, holdout=None, seed=0):
    """(entries, class names) of `split` from a path,label[,split] CSV (load_index)."""
    all_rows = csv_rows(index)
    has_split = any(r[3] is not None for r in all_rows)
    if has_split and split not in {r[3] for r in all_rows}:
        raise ValueError(f"{index}: no row has split {split!r}; its split column holds "
                         f"{', '.join(sorted({r[3] for r in all_rows}))}")
    rows = [r[:3] for r in all_rows if not has_split or r[3] == split]
    given = classes is not None
    if not given:
        names = {r[2] for r in all_rows if r[2] is not None and not r[2].lstrip("-").isdigit()}
        ints = [int(r[2]) for r in all_rows if r[2] is not None and r[2].lstrip("-").isdigit()]
        if names and ints:
            raise ValueError(f"{index}: labels mix class names and integers; pass a classes file")
        classes = sorted(names) if names else [str(i) for i in range(max(ints, default=-1) + 1)]
    find = class_lookup(classes)
    entries = []
    for n, rel, lab in rows:
        where = f"{index}:{n}"
        label = None
        if lab is not None:
            if lab.lstrip("-").isdigit() and (not given or lab not in classes):
                label = int(lab)
                if not 0 <= label < len(classes):
                    raise ValueError(f"{where}: label {label} is not in 0..{len(classes) - 1}")
            else:
                label = find(lab, where)
        path = os.path.normpath(os.path.join(videos_dir, rel))
        vid = os.path.splitext(os.path.normpath(rel))[0].replace(os.sep, "/")
        if vid.startswith("..") or os.path.isabs(vid):
            vid = os.path.splitext(os.path.basename(rel))[0]
        entries.append(VideoEntry(vid, path, label,
                                  classes[label] if label is not None else None, split))
    return select_split(entries, split, holdout, seed), classes
