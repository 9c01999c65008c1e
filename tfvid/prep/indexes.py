"""Dataset indexes: which videos belong to a split, and their labels.

`load_index(format, videos_dir=..., index=..., split=...)` reads the split files of the public
datasets in their published formats and returns `(entries, class_names)`:

    ucf101   index = the ucfTrainTestlist folder: classInd.txt ("1 ApplyEyeMakeup", 1-based),
             trainlist0N.txt ("Class/v_x.avi 1"), testlist0N.txt ("Class/v_x.avi", the label
             comes from the folder name). split "train1".."test3" ("train"/"test" = split 1).
    hmdb51   index = folder of "<class>_test_split<N>.txt" files, lines "video.avi 0|1|2"
             (1 train, 2 test, 0 unused); videos in videos_dir/<class>/<video>. Classes sorted.
    kinetics index = CSV (or a folder of CSVs) with header label,youtube_id,time_start,time_end,
             split; files videos_dir/[<split>/]<label>/<youtube_id>_<start:06d>_<end:06d>.mp4
             or any file under videos_dir whose name starts with the youtube id. Classes = sorted
             labels of the train rows (or classes_file). split "train", "val" or "test".
    ssv2     index = folder with something-something-v2-labels.json and -train.json /
             -validation.json / -test.json; class = template without brackets;
             videos_dir/<id>.webm. split "train", "validation" (or "val"), "test".
    folder   index (default videos_dir) = one subfolder per class (sorted names = classes), or
             split folders index/<split>/<class>/... (detected when a top-level folder has a
             split-like name -- train, val, validation, test, dev, ... with optional digits --
             and holds class folders only); then the requested split must exist as a folder
             and classes are the sorted class folders of all split folders.
    jester   (Jester, also Something-Something v1) index = folder with <prefix>-labels.csv (one
             class name per line, label order), <prefix>-train.csv / -validation.csv ("id;label"
             lines) and -test.csv ("id" lines, unlabeled); prefix jester-v1 or
             something-something-v1, detected from the files present. Each video is a folder of
             frame images videos_dir/<id>/00001.jpg ... (VideoEntry.frame_folder). split
             "train", "validation" (or "val"), "test".
    csv      index = CSV "path,label[,split]" (header optional); label = class name or integer
             index; path relative to videos_dir; the optional split column names each row's
             split. Classes (from all rows) from classes_file, else sorted names / 0..max.

Folder and CSV indexes without split information hold one set of videos: it can be loaded as
one split, or divided by `holdout={"val": 0.1, "test": 0.1}` (fractions per held-out split
name, assigned per video id by a seeded hash, so the same id always lands in the same split
for the same seed; every other requested split gets the videos not held out). `check_splits`
refuses requests that would put the same videos in two splits. An index that lists no video
for the split (empty or header-only file) is an error naming the file.

Labels are 0-based class indices. A video with no label (Kinetics/SSv2/Jester test lists) gets
label None; `tfvid.prep.prepare.prepare` rejects such entries unless the whole split is
unlabeled (a test split), in which case they are written without a label.

A listed video whose file is missing keeps its expected path: the preparation rejects it with
the reason "video file not found", so one missing file never stops a dataset.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
from typing import Sequence

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")
FORMATS = ("ucf101", "hmdb51", "kinetics", "ssv2", "jester", "folder", "csv")


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One video of a split. path is absolute; label is a 0-based class index or None.
    frame_folder: the video is a folder of frame images (Jester, Something-Something v1)."""
    video_id: str
    path: str
    label: int | None
    label_name: str | None
    split: str
    frame_folder: bool = False


def load_index(format: str, *, videos_dir: str, index: str | None = None, split: str,
               classes_file: str | None = None, holdout: dict[str, float] | None = None,
               holdout_seed: int = 0) -> tuple[list[VideoEntry], list[str]]:
    """Reads a dataset index. Returns (entries in index order, class names in label order).

    holdout (folder/csv indexes without split information only): {split name: fraction} of
    held-out splits, see the module docstring.

    Raises ValueError (unknown format/split, malformed line with file:line, unknown class, no
    video in the split) or FileNotFoundError (missing index/split file or videos_dir), each
    naming the file.
    """
    videos_dir, index = _resolve(format, videos_dir, index)
    if not split:
        raise ValueError("split must be a non-empty name such as 'train1' or 'val'")
    _check_holdout(holdout)
    if holdout and index_has_splits(format, videos_dir=videos_dir, index=index):
        raise ValueError(f"{index} has its own splits; held-out fractions apply only to a "
                         "folder or CSV index without split information")
    classes = read_classes_file(classes_file) if classes_file else None
    if format in ("folder", "csv"):
        entries, classes = _LOADERS[format](videos_dir, index, split, classes, holdout,
                                            holdout_seed)
    else:
        entries, classes = _LOADERS[format](videos_dir, index, split, classes)
    _nonempty(entries, index, split)
    return entries, classes


def _resolve(format: str, videos_dir: str, index: str | None) -> tuple[str, str]:
    if format not in _LOADERS:
        raise ValueError(f"unknown dataset format {format!r}; valid formats: {', '.join(FORMATS)}")
    if not os.path.isdir(videos_dir):
        raise FileNotFoundError(f"videos_dir {videos_dir!r} is not a folder")
    videos_dir = os.path.abspath(videos_dir)
    if index is None:
        if format != "folder":
            raise ValueError(f"format {format!r} needs an index path")
        index = videos_dir
    if not os.path.exists(index):
        raise FileNotFoundError(f"index {index!r} does not exist")
    return videos_dir, os.path.abspath(index)


def _check_holdout(holdout: dict[str, float] | None) -> None:
    if not holdout:
        return
    if any(not 0.0 < f < 1.0 for f in holdout.values()) or sum(holdout.values()) >= 1.0:
        raise ValueError(f"held-out fractions must be in (0, 1) and sum to less than 1, got "
                         f"{holdout}")


def index_has_splits(format: str, *, videos_dir: str, index: str | None = None) -> bool:
    """True if the index itself says which split each video belongs to (always for the public
    formats; folder: split folders; csv: a split column)."""
    videos_dir, index = _resolve(format, videos_dir, index)
    if format == "folder":
        return _folder_splits(index) is not None
    if format == "csv":
        return any(r[3] is not None for r in _csv_rows(index))
    return True


def check_splits(format: str, *, videos_dir: str, index: str | None, splits: Sequence[str],
                 holdout: dict[str, float] | None = None) -> None:
    """Refuses split requests that would write the same videos into two splits: several split
    names for a folder/csv index without split information and without held-out fractions,
    held-out fractions for an index with splits, or several splits that would all get the
    videos not held out."""
    _check_holdout(holdout)
    if len(set(splits)) != len(splits):
        raise ValueError(f"split names repeat: {', '.join(splits)}")
    has = index_has_splits(format, videos_dir=videos_dir, index=index)
    if holdout and has:
        raise ValueError(f"{index or videos_dir} has its own splits; drop the held-out "
                         "fractions (--val_fraction/--test_fraction)")
    if has:
        return
    rest = [s for s in splits if s not in (holdout or {})]
    if len(rest) > 1:
        how = ("the videos not held out" if holdout else "every video")
        raise ValueError(
            f"{index or videos_dir} has no split information (no split folders / split "
            f"column), so splits {', '.join(rest)} would all get {how}: request one split, "
            "hold splits out with --val_fraction/--test_fraction, or give the index split "
            "folders (<split>/<class>/...) or a 'split' column")


def holdout_split(video_id: str, holdout: dict[str, float], seed: int = 0) -> str | None:
    """The held-out split a video id falls into (seeded hash, stable across runs), or None."""
    digest = hashlib.sha256(f"{seed}:{video_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    edge = 0.0
    for name, fraction in sorted(holdout.items()):
        edge += fraction
        if u < edge:
            return name
    return None


def _select(entries: list[VideoEntry], split: str, holdout, seed) -> list[VideoEntry]:
    if not holdout:
        return entries
    want = split if split in holdout else None
    return [e for e in entries if holdout_split(e.video_id, holdout, seed) == want]


def read_classes_file(path: str) -> list[str]:
    """One class name per line (blank lines ignored); 'N name' lines (classInd style) also work."""
    names = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                parts = line.split(maxsplit=1)
                names.append(parts[1] if len(parts) == 2 and parts[0].isdigit() else line)
    if not names:
        raise ValueError(f"classes file {path!r} is empty")
    return names


def _lines(path: str):
    """Yields (line_number, stripped line) of the non-blank lines of a text file (any newline)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split file {path!r} not found")
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line:
                yield number, line


def _nonempty(entries: list, path: str, split: str) -> None:
    if not entries:
        raise ValueError(f"{path}: no videos listed for split {split!r} (empty or header-only "
                         "index file?)")


def _split_number(split: str, fmt: str) -> tuple[str, int]:
    m = re.fullmatch(r"(train|test)([1-3])?", split)
    if not m:
        raise ValueError(f"{fmt} split must be train1..train3 or test1..test3, got {split!r}")
    return m.group(1), int(m.group(2) or 1)


def _class_lookup(classes: list[str]):
    exact = {c: i for i, c in enumerate(classes)}
    folded = {c.lower(): i for i, c in enumerate(classes)}

    def find(name: str, where: str) -> int:
        i = exact.get(name, folded.get(name.lower()))
        if i is None:
            raise ValueError(f"{where}: unknown class name {name!r}")
        return i
    return find


# ---------------------------------------------------------------- UCF101

def _load_ucf101(videos_dir, index, split, classes):
    kind, number = _split_number(split, "ucf101")
    class_file = os.path.join(index, "classInd.txt")
    if classes is None:
        classes = []
        for n, line in _lines(class_file):
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
                raise ValueError(f"{class_file}:{n}: malformed line {line!r}; "
                                 f"expected '{len(classes) + 1} ClassName'")
            classes.append(parts[1])
    find = _class_lookup(classes)
    list_file = os.path.join(index, f"{kind}list{number:02d}.txt")
    entries = []
    for n, line in _lines(list_file):
        parts = line.split()
        where = f"{list_file}:{n}"
        if len(parts) not in (1, 2) or "/" not in parts[0]:
            raise ValueError(f"{where}: malformed line {line!r}; expected 'Class/v_x.avi [label]'")
        folder, name = parts[0].split("/", 1)
        label = find(folder, where)
        if len(parts) == 2:
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                raise ValueError(f"{where}: label {parts[1]!r} is not in 1..{len(classes)}")
            label = int(parts[1]) - 1
        path = os.path.join(videos_dir, folder, name)
        if not os.path.exists(path) and os.path.exists(os.path.join(videos_dir, name)):
            path = os.path.join(videos_dir, name)  # flat layout
        entries.append(VideoEntry(os.path.splitext(name)[0], path, label, classes[label], split))
    _nonempty(entries, list_file, split)
    return entries, classes


# ---------------------------------------------------------------- HMDB51

def _load_hmdb51(videos_dir, index, split, classes):
    kind, number = _split_number(split, "hmdb51")
    wanted = "1" if kind == "train" else "2"
    suffix = f"_test_split{number}.txt"
    if not os.path.isdir(index):
        raise FileNotFoundError(f"hmdb51 index {index!r} must be the folder of split files")
    files = sorted(f for f in os.listdir(index) if f.endswith(suffix))
    if not files:
        raise FileNotFoundError(f"no '<class>{suffix}' split files in {index!r}")
    names = [f[: -len(suffix)] for f in files]
    classes = classes or sorted(names)
    find = _class_lookup(classes)
    entries = []
    for fname, cname in zip(files, names):
        path = os.path.join(index, fname)
        label = find(cname, path)
        for n, line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}:{n}: malformed line {line!r}; expected 'video.avi 0|1|2'")
            if parts[1] == wanted:
                entries.append(VideoEntry(os.path.splitext(parts[0])[0],
                                          os.path.join(videos_dir, cname, parts[0]),
                                          label, classes[label], split))
    return entries, classes


# ---------------------------------------------------------------- Kinetics

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


def _load_kinetics(videos_dir, index, split, classes):
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
    find = _class_lookup(classes)
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


# ---------------------------------------------------------------- Something-Something v2

_SSV2_SPLITS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}


def ssv2_class_name(template: str) -> str:
    """'Putting [something] on [something]' -> 'Putting something on something'."""
    return template.replace("[", "").replace("]", "")


def _read_json(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split file {path!r} not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: malformed JSON ({e})") from None


def _load_ssv2(videos_dir, index, split, classes):
    which = _SSV2_SPLITS.get(split)
    if which is None:
        raise ValueError(f"ssv2 split must be train, validation or test, got {split!r}")
    if classes is None:
        label_file = os.path.join(index, "something-something-v2-labels.json")
        mapping = _read_json(label_file)
        try:
            order = sorted((int(v), k) for k, v in mapping.items())
        except (AttributeError, ValueError):
            raise ValueError(f"{label_file}: expected {{\"class name\": \"index\"}}") from None
        if [i for i, _ in order] != list(range(len(order))):
            raise ValueError(f"{label_file}: class indices are not 0..{len(order) - 1}")
        classes = [k for _, k in order]
    find = _class_lookup(classes)
    list_file = os.path.join(index, f"something-something-v2-{which}.json")
    items = _read_json(list_file)
    if not isinstance(items, list):
        raise ValueError(f"{list_file}: expected a JSON list of {{'id', 'template', ...}}")
    entries = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item:
            raise ValueError(f"{list_file}: item {i} has no 'id': {item!r}")
        label = None
        if item.get("template"):
            label = find(ssv2_class_name(item["template"]), f"{list_file} item {i}")
        vid = str(item["id"])
        entries.append(VideoEntry(vid, os.path.join(videos_dir, vid + ".webm"), label,
                                  classes[label] if label is not None else None, split))
    _nonempty(entries, list_file, split)
    return entries, classes


# ---------------------------------------------------------------- Jester / Something-Something v1

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


def _load_jester(videos_dir, index, split, classes):
    which = _JESTER_SPLITS.get(split)
    if which is None:
        raise ValueError(f"jester split must be train, validation or test, got {split!r}")
    if os.path.isfile(index):  # one of the CSVs: its folder holds the others
        index = os.path.dirname(index)
    prefix = jester_prefix(index)
    if classes is None:
        label_file = os.path.join(index, f"{prefix}-labels.csv")
        classes = [line for _, line in _lines(label_file)]
        if not classes:
            raise ValueError(f"{label_file}: no class names")
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        if repeated:
            raise ValueError(f"{label_file}: class name(s) listed twice: {repeated}")
    find = _class_lookup(classes)
    list_file = os.path.join(index, f"{prefix}-{which}.csv")
    entries, seen = [], {}
    for n, line in _lines(list_file):
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
    _nonempty(entries, list_file, split)
    return entries, classes


# ---------------------------------------------------------------- folder per class / CSV

_SPLIT_NAME = re.compile(r"(train|training|val|valid|validation|dev|test|testing|eval|holdout)"
                         r"[-_]?\d*", re.IGNORECASE)


def _subfolders(folder: str) -> list[str]:
    return sorted(d for d in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))


def _folder_splits(index: str) -> list[str] | None:
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


def _load_folder(videos_dir, index, split, classes, holdout=None, seed=0):
    if not os.path.isdir(index):
        raise FileNotFoundError(f"folder index {index!r} must be a folder of class folders")
    splits = _folder_splits(index)
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
    find = _class_lookup(classes)
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
    return _select(entries, split, holdout, seed), classes


def _csv_rows(index: str) -> list[tuple[int, str, str | None, str | None]]:
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


def _load_csv(videos_dir, index, split, classes, holdout=None, seed=0):
    all_rows = _csv_rows(index)
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
    find = _class_lookup(classes)
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
    return _select(entries, split, holdout, seed), classes


_LOADERS = {"ucf101": _load_ucf101, "hmdb51": _load_hmdb51, "kinetics": _load_kinetics,
            "ssv2": _load_ssv2, "jester": _load_jester, "folder": _load_folder,
            "csv": _load_csv}
