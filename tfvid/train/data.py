"""What the train job learns from its data before training: videos, classes, labels, shards.

    videos = count_videos(files)                       # for --epochs
    num_classes, names = resolve_num_classes(train_files, val_files, 0)
    warnings = check_shards_of({"train_data": train_files}, allow_incomplete=False)

`files` are resolved paths: TFRecord shards (records of tfvid.data.schema, docs/records.md)
or raw-frame .list files (tfvid.data.pipeline.read_list_file). Errors are ConfigError (a
ValueError) naming the flag and the file.
"""
from __future__ import annotations

import glob
import json
import logging
import os

import tensorflow as tf

from tfvid.data import kernels, schema
from tfvid.data.pipeline import feature_dimension, read_list_file, verify_records
from tfvid.prep.completeness import check_shards
from tfvid.prep.indexes import read_classes_file
from tfvid.prep.prepare import count_records

log = logging.getLogger("tfvid.train")


class ConfigError(ValueError):
    """A flag value or data set the run cannot use; the message names the flag (the train job
    shows it as a usage error)."""


def is_list(files) -> bool:
    return bool(files) and files[0].endswith(".list")


def count_videos(files: list[str]) -> int:
    """Videos in the data: .list lines, a matching <split>-summary.json, or counting records."""
    if is_list(files):
        total = 0
        for path in files:
            with open(path, encoding="utf-8") as f:
                total += sum(1 for ln in f if ln.strip())
        return total
    wanted = {os.path.abspath(f) for f in files}
    folder = os.path.dirname(os.path.abspath(files[0]))
    for summary in glob.glob(os.path.join(folder, "*-summary.json")):
        with open(summary, encoding="utf-8") as f:
            info = json.load(f)
        shards = {os.path.abspath(s) for s in (info.get("files") or {}).get("shards", [])}
        if shards and shards == wanted:
            return int(info["videos"])
    log.info("counting the records of %d shard(s) once (no matching summary json)", len(files))
    return sum(count_records(f) for f in files)


def sample_labels(files: list[str], limit: int = 64) -> list[int]:
    """Labels of a .list file (all) or of up to `limit` records (round robin over shards),
    read with tfvid.data.schema.parse_label (schema.NO_LABEL = -1 for an unlabeled video; frame
    and feature records alike)."""
    if is_list(files):
        return [lab for f in files for lab in read_list_file(f)[3]]
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=max(1, len(files))).take(limit)
    return [int(label) for label in ds.map(schema.parse_label)]


def read_class_names(train_files: list[str]) -> list[str] | None:
    """classes.txt beside the training data (tfvid.prep.indexes.read_classes_file), or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(train_files[0])), "classes.txt")
    return read_classes_file(path) if os.path.isfile(path) else None


def resolve_num_classes(train_files, val_files, num_classes: int) -> tuple[int, list[str] | None]:
    """`num_classes` (<= 0: the length of classes.txt beside the training data) and the class
    names; ConfigError when they disagree or when labels fall outside [0, num_classes)."""
    names = read_class_names(train_files)
    if num_classes <= 0:
        if names is None:
            raise ConfigError("--num_classes=0 needs classes.txt beside the training data "
                              f"({os.path.dirname(os.path.abspath(train_files[0]))}); "
                              "give --num_classes")
        num_classes = len(names)
    elif names is not None and len(names) != num_classes:
        raise ConfigError(f"--num_classes={num_classes} but classes.txt beside the training "
                          f"data lists {len(names)} classes")
    for flag, files in (("train_data", train_files), ("val_data", val_files)):
        if not files:
            continue
        labels = sample_labels(files)
        bad = sorted({lab for lab in labels if not 0 <= lab < num_classes})
        if bad:
            raise ConfigError(f"--{flag} holds labels {bad[:10]} outside [0, {num_classes}) "
                              f"(--num_classes={num_classes}); -1 means an unlabeled video")
    return num_classes, names


def check_shards_of(files_by_flag: dict, *, allow_incomplete: bool) -> list[str]:
    """tfvid.prep.completeness.check_shards on each flag's files: ConfigError naming missing
    or truncated shards unless allow_incomplete; returns (and logs) the warnings."""
    warnings = []
    for flag, files in files_by_flag.items():
        if not files:
            continue
        try:
            found = check_shards(files, allow_incomplete=allow_incomplete)
        except ValueError as e:
            raise ConfigError(f"--{flag}: {e}") from None
        for text in found or []:
            log.warning("--%s: %s", flag, text)
            warnings.append(f"--{flag}: {text}")
    return warnings


def kernels_status() -> dict:
    """Whether the fused input kernels run: tfvid.data.kernels.info()'s on, path and status."""
    info = kernels.info()
    return {k: info[k] for k in ("on", "path", "status")}


def cached_feature_dim(train_files, feature: str, given=None) -> int:
    """D of the cached features the head trains on: FEATURE/<feature>/dimension of the
    training records; ConfigError when there are none or when `given` (--feature_dim)
    contradicts it."""
    try:
        dim = feature_dimension(train_files, feature)
    except ValueError as e:
        raise ConfigError(f"--train_data / --feature={feature}: {e}") from None
    if given is not None and int(given) != dim:
        raise ConfigError(f"--feature_dim={given} but the training records hold "
                          f"{dim}-d features {feature!r}; drop --feature_dim")
    return dim


def name_data_loss(err, files_by_flag: dict):
    """Re-raises a DataLossError met while training naming the flag and the truncated or
    corrupt shard (found with verify_records)."""
    for flag, files in files_by_flag.items():
        if not files or is_list(files):
            continue
        try:
            verify_records(files)
        except tf.errors.DataLossError as named:
            raise tf.errors.DataLossError(None, None, f"--{flag}: {named.message}") from err
    raise err
