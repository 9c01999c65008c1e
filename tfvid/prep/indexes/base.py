"""What every dataset index reader shares: the VideoEntry record, the classes file, line
reading, class lookup and the seeded held-out split of indexes without split information."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")


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


def check_holdout(holdout: dict[str, float] | None) -> None:
    """ValueError unless every held-out fraction is in (0, 1) and they sum to less than 1."""
    if not holdout:
        return
    if any(not 0.0 < f < 1.0 for f in holdout.values()) or sum(holdout.values()) >= 1.0:
        raise ValueError(f"held-out fractions must be in (0, 1) and sum to less than 1, got "
                         f"{holdout}")


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


def select_split(entries: list[VideoEntry], split: str, holdout, seed) -> list[VideoEntry]:
    """The entries of `split` under held-out fractions (all entries without them)."""
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


def lines(path: str):
    """Yields (line_number, stripped line) of the non-blank lines of a text file (any newline)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split file {path!r} not found")
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line:
                yield number, line


def nonempty(entries: list, path: str, split: str) -> None:
    if not entries:
        raise ValueError(f"{path}: no videos listed for split {split!r} (empty or header-only "
                         "index file?)")


def split_number(split: str, fmt: str) -> tuple[str, int]:
    m = re.fullmatch(r"(train|test)([1-3])?", split)
    if not m:
        raise ValueError(f"{fmt} split must be train1..train3 or test1..test3, got {split!r}")
    return m.group(1), int(m.group(2) or 1)


def class_lookup(classes: list[str]):
    exact = {c: i for i, c in enumerate(classes)}
    folded = {c.lower(): i for i, c in enumerate(classes)}

    def find(name: str, where: str) -> int:
        i = exact.get(name, folded.get(name.lower()))
        if i is None:
            raise ValueError(f"{where}: unknown class name {name!r}")
        return i
    return find
