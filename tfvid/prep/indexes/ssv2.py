"""Something-Something v2 index: the labels JSON and the train / validation / test JSON lists
(see tfvid.prep.indexes)."""
from __future__ import annotations

import json
import os

from tfvid.prep.indexes.base import VideoEntry, class_lookup, nonempty


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


def load(videos_dir, index, split, classes):
    """(entries, class names) of `split` (tfvid.prep.indexes.load_index; classes: given names
    or None to read them from the index)."""
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
    find = class_lookup(classes)
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
    nonempty(entries, list_file, split)
    return entries, classes
