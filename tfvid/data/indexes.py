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
    folder   index (default videos_dir) = one subfolder per class (sorted names = classes);
             every video inside belongs to the split the caller names.
    csv      index = CSV "path,label" (header optional); label = class name or integer index;
             path relative to videos_dir. Classes from classes_file, else sorted names / 0..max.

Labels are 0-based class indices. A video with no label (Kinetics/SSv2 test lists) gets
label None; `tfvid.data.prepare.prepare` rejects such entries unless the whole split is
unlabeled (a test split), in which case they are written without a label.

A listed video whose file is missing keeps its expected path: the preparation rejects it with
the reason "video file not found", so one missing file never stops a dataset.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")
FORMATS = ("ucf101", "hmdb51", "kinetics", "ssv2", "folder", "csv")


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One video of a split. path is absolute; label is a 0-based class index or None."""
    video_id: str
    path: str
    label: int | None
    label_name: str | None
    split: str


def load_index(format: str, *, videos_dir: str, index: str | None = None, split: str,
               classes_file: str | None = None) -> tuple[list[VideoEntry], list[str]]:
    """Reads a dataset index. Returns (entries in index order, class names in label order).

    Raises ValueError (unknown format/split, malformed line with file:line, unknown class)
    or FileNotFoundError (missing index/split file or videos_dir), each naming the file.
    """
    if format not in _LOADERS:
        raise ValueError(f"unknown dataset format {format!r}; valid formats: {', '.join(FORMATS)}")
    if not split:
        raise ValueError("split must be a non-empty name such as 'train1' or 'val'")
    if not os.path.isdir(videos_dir):
        raise FileNotFoundError(f"videos_dir {videos_dir!r} is not a folder")
    videos_dir = os.path.abspath(videos_dir)
    if index is None:
        if format != "folder":
            raise ValueError(f"format {format!r} needs an index path")
        index = videos_dir
    if not os.path.exists(index):
        raise FileNotFoundError(f"index {index!r} does not exist")
    index = os.path.abspath(index)
    classes = read_classes_file(classes_file) if classes_file else None
    return _LOADERS[format](videos_dir, index, split, classes)


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
    return entries, classes


# ---------------------------------------------------------------- folder per class / CSV

def _load_folder(videos_dir, index, split, classes):
    if not os.path.isdir(index):
        raise FileNotFoundError(f"folder index {index!r} must be a folder of class folders")
    names = sorted(d for d in os.listdir(index)
                   if os.path.isdir(os.path.join(index, d)) and not d.startswith("."))
    if not names:
        raise ValueError(f"folder index {index!r} has no class subfolders")
    classes = classes or names
    find = _class_lookup(classes)
    entries = []
    for name in names:
        label = find(name, index)
        for folder, dirs, files in os.walk(os.path.join(index, name)):
            dirs.sort()
            for f in sorted(files):
                if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS:
                    path = os.path.join(folder, f)
                    vid = os.path.splitext(os.path.relpath(path, index))[0].replace(os.sep, "/")
                    entries.append(VideoEntry(vid, path, label, classes[label], split))
    return entries, classes


def _load_csv(videos_dir, index, split, classes):
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
            if len(row) > 2 or not row[0]:
                raise ValueError(f"{index}:{n}: malformed line {row!r}; expected 'path,label'")
            rows.append((n, row[0], row[1] if len(row) == 2 and row[1] else None))
    given = classes is not None
    if not given:
        names = {lab for _, _, lab in rows if lab is not None and not lab.lstrip("-").isdigit()}
        ints = [int(lab) for _, _, lab in rows if lab is not None and lab.lstrip("-").isdigit()]
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
    return entries, classes


_LOADERS = {"ucf101": _load_ucf101, "hmdb51": _load_hmdb51, "kinetics": _load_kinetics,
            "ssv2": _load_ssv2, "folder": _load_folder, "csv": _load_csv}
