"""Shard files: names, the balanced assignment of videos to shards, the progress log of
finished shards (prepare_data, extract_flow, extract_features), record counts and atomic text
files. No TensorFlow import at module level.

    <split>-00000-of-00008.tfrecord ...     shard_name(split, 0, 8); shard_paths(folder, split)
    <job>-progress.jsonl                    one JSON line per finished shard (load_progress,
                                            append_progress), appended after its rename
"""
from __future__ import annotations

import json
import os
from typing import Sequence

from tfvid.atomic import atomic_path
from tfvid.prep.prepare_worker import write_error


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def shard_paths(output_dir: str, split: str) -> list[str]:
    """Final shard files of a split, sorted (temporary files are never matched)."""
    pre = f"{split}-"
    return sorted(os.path.join(output_dir, f) for f in os.listdir(output_dir)
                  if f.startswith(pre) and f.endswith(".tfrecord") and "-of-" in f[len(pre):])


def assign_shards(sizes: Sequence[int], num_shards: int) -> list[list[int]]:
    """Splits items into num_shards lists of indices with balanced counts and byte sizes.

    Items are taken largest first and dealt in a snake order (0..S-1, S-1..0, ...): counts
    differ by at most one and sizes stay close. Each index appears exactly once; each shard
    keeps its items in ascending index order.
    """
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    shards: list[list[int]] = [[] for _ in range(num_shards)]
    for rank, i in enumerate(order):
        r, pos = divmod(rank, num_shards)
        shards[pos if r % 2 == 0 else num_shards - 1 - pos].append(i)
    return [sorted(s) for s in shards]


def count_records(path: str) -> int:
    """Number of records in a TFRecord file; ValueError naming the file if it is truncated/corrupt."""
    import tensorflow as tf
    try:
        return sum(1 for _ in tf.data.TFRecordDataset(path))
    except tf.errors.DataLossError as e:
        first = (e.message or str(e)).strip().splitlines()[0]
        raise ValueError(f"{path}: truncated or corrupt TFRecord shard ({first}); delete it and "
                         "rerun prepare_data to rewrite it") from None


def atomic_write(path: str, text: str) -> None:
    """Writes a text file under a temporary name and renames it (WriteError naming it)."""
    try:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise write_error(path, e, "file") from e

def load_progress(path: str) -> dict[str, dict]:
    """Finished shards {name: {name, ...}} from a progress log (prepare_data: bytes, videos,
    frames, rejects; extract_flow: videos, flow_frames, copied, rejects).

    One JSON line is appended per finished shard; a line cut by a crash is ignored.
    """
    done, bad = {}, False
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    info = json.loads(line)
                    done[info["name"]] = info
                except (json.JSONDecodeError, KeyError, TypeError):
                    bad = True
    if bad:  # rewrite without the broken line, so the next append starts on a fresh line
        atomic_write(path, "".join(json.dumps(i) + "\n" for i in done.values()))
    return done


def append_progress(path: str, info: dict) -> None:
    """Appends one finished shard's record to a progress log (flushed and fsynced: a shard is
    finished once its line is on disk). WriteError naming the log when that fails."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(info) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise write_error(path, e, "progress log") from e
