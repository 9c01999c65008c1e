"""UCF101 index: classInd.txt and trainlist0N.txt / testlist0N.txt (see tfvid.prep.indexes)."""
from __future__ import annotations

import os

from tfvid.prep.indexes.base import VideoEntry, class_lookup, lines, nonempty, split_number


def load(videos_dir, index, split, classes):
    """(entries, class names) of `split` (tfvid.prep.indexes.load_index; classes: given names
    or None to read them from the index)."""
    kind, number = split_number(split, "ucf101")
    class_file = os.path.join(index, "classInd.txt")
    if classes is None:
        classes = []
        for n, line in lines(class_file):
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
                raise ValueError(f"{class_file}:{n}: malformed line {line!r}; "
                                 f"expected '{len(classes) + 1} ClassName'")
            classes.append(parts[1])
    find = class_lookup(classes)
    list_file = os.path.join(index, f"{kind}list{number:02d}.txt")
    entries = []
    for n, line in lines(list_file):
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
    nonempty(entries, list_file, split)
    return entries, classes
