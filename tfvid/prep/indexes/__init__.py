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

import os
from typing import Sequence

from tfvid.prep.indexes import folder, hmdb51, jester, kinetics, ssv2, ucf101
from tfvid.prep.indexes.base import (VIDEO_EXTENSIONS, VideoEntry, check_holdout,  # noqa: F401
                                     holdout_split, nonempty, read_classes_file)
from tfvid.prep.indexes.jester import JESTER_PREFIXES, jester_prefix  # noqa: F401
from tfvid.prep.indexes.ssv2 import ssv2_class_name  # noqa: F401

FORMATS = ("ucf101", "hmdb51", "kinetics", "ssv2", "jester", "folder", "csv")
_LOADERS = {"ucf101": ucf101.load, "hmdb51": hmdb51.load, "kinetics": kinetics.load,
            "ssv2": ssv2.load, "jester": jester.load, "folder": folder.load_folder,
            "csv": folder.load_csv}


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
    check_holdout(holdout)
    if holdout and index_has_splits(format, videos_dir=videos_dir, index=index):
        raise ValueError(f"{index} has its own splits; held-out fractions apply only to a "
                         "folder or CSV index without split information")
    classes = read_classes_file(classes_file) if classes_file else None
    if format in ("folder", "csv"):
        entries, classes = _LOADERS[format](videos_dir, index, split, classes, holdout,
                                            holdout_seed)
    else:
        entries, classes = _LOADERS[format](videos_dir, index, split, classes)
    nonempty(entries, index, split)
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


def index_has_splits(format: str, *, videos_dir: str, index: str | None = None) -> bool:
    """True if the index itself says which split each video belongs to (always for the public
    formats; folder: split folders; csv: a split column)."""
    videos_dir, index = _resolve(format, videos_dir, index)
    if format == "folder":
        return folder.folder_splits(index) is not None
    if format == "csv":
        return any(r[3] is not None for r in folder.csv_rows(index))
    return True


def check_splits(format: str, *, videos_dir: str, index: str | None, splits: Sequence[str],
                 holdout: dict[str, float] | None = None) -> None:
    """Refuses split requests that would write the same videos into two splits: several split
    names for a folder/csv index without split information and without held-out fractions,
    held-out fractions for an index with splits, or several splits that would all get the
    videos not held out."""
    check_holdout(holdout)
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
