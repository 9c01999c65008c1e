"""Which videos are read, in which order, and the seed of each video's random choices
(docs/architecture.md).

    record_table(paths, ...) / list_table(paths, ...)   one row per video of this pipeline
    epochs(table, ...)       dataset of the rows with their 'epoch', in the read order
    gzip_records(paths, ...) GZIP shards (no random access), records with their 'epoch'
    video_seed(seed, video_id, epoch)   the stateless seed of one video in one epoch

Order: training reads every epoch e a fresh permutation of ALL rows of its pipeline: element
i of the stream is row index_shuffle(i mod n, fold_in(fold_in([seed, 1], pipeline), e)) of epoch
e = i // n. The source is `Dataset.range` followed by a map, so it is splittable (tf.data
service dynamic sharding) and its iterator state is one counter (exact resume); nothing is
buffered. Val/test read the rows in order.

Seeds: a video's random choices (frame offsets, crop, flip) in epoch e come from
`video_seed(seed, id, e)` = fold_in(fold_in([seed, 0], e), fingerprint64(id)): not from its
position in the stream, the pipeline that reads it, or the number of workers, so a video gets
the same clip in epoch e wherever it sits in the shuffled order.
"""
from __future__ import annotations

import logging

import tensorflow as tf

from tfvid.data.records import read_list, record_index
from tfvid.data.sampling import as_seed

log = logging.getLogger("tfvid.data")
_FOREVER = 2 ** 62


def video_seed(seed, video_id, epoch) -> tf.Tensor:
    """int64 (2,) stateless seed of video `video_id` (string scalar) in `epoch` (int scalar):
    fold_in(fold_in(as_seed(seed), epoch), to_hash_bucket_fast(video_id, 2^63 - 1)), i.e. the
    video id's 64-bit fingerprint. Split it into the sampling, crop and flip seeds."""
    base = tf.random.experimental.stateless_fold_in(
        tf.cast(as_seed(seed), tf.int64), tf.cast(epoch, tf.int64))
    key = tf.strings.to_hash_bucket_fast(video_id, 2 ** 63 - 1)
    return tf.random.experimental.stateless_fold_in(base, key)


def order_seed(seed: int, pipe_id: int = 0) -> tf.Tensor:
    """The seed of the per-epoch permutations of input pipeline `pipe_id`."""
    return tf.random.experimental.stateless_fold_in(tf.constant([int(seed), 1], tf.int64),
                                                    pipe_id)


def record_table(paths, *, bad_data, num_pipes=1, pipe_id=0, files=None) -> dict:
    """{'path', 'record', 'offset'} lists: every complete record of the uncompressed shards,
    every num_pipes-th from pipe_id. A truncated shard raises tf.errors.DataLossError naming
    it, or with bad_data='skip' is logged and read up to its last complete record."""
    table = {"path": [], "record": [], "offset": []}
    for path in paths:
        offsets, problem = record_index(path)
        if problem:
            if bad_data != "skip":
                raise tf.errors.DataLossError(None, None, problem)
            log.warning("%s: skipping the rest of this shard", problem)
        table["path"] += [path] * len(offsets)
        table["record"] += list(range(len(offsets)))
        table["offset"] += [int(o) for o in offsets]
    table = {k: v[pipe_id::num_pipes] for k, v in table.items()}
    if not table["path"]:
        raise ValueError(f"build_dataset: no records in {paths if len(paths) < 5 else files}"
                         + (f" for input pipeline {pipe_id} of {num_pipes}"
                            if num_pipes > 1 else ""))
    return table


def list_table(paths, *, num_pipes=1, pipe_id=0) -> dict:
    """{'dir', 'id', 'num_frames', 'label', 'where'} lists of the raw-frame list files' lines,
    every num_pipes-th from pipe_id ('where': "<list> line <k>")."""
    table = {"dir": [], "id": [], "num_frames": [], "label": [], "where": []}
    for path in paths:
        dirs, ids, counts, labels, lines = read_list(path)
        table["dir"] += dirs
        table["id"] += ids
        table["num_frames"] += counts
        table["label"] += labels
        table["where"] += [f"{path} line {n}" for n in lines]
    return {k: v[pipe_id::num_pipes] for k, v in table.items()}


def epochs(table, *, training, repeat, seed) -> tf.data.Dataset:
    """Dataset of the rows of `table` (dict of equal-length lists), each with 'epoch' int64,
    in the read order (module docstring); `seed` = `order_seed(...)`. repeat -> forever."""
    consts = {k: tf.constant(v, tf.int64 if k == "offset" else None) for k, v in table.items()}
    num = len(next(iter(table.values())))

    def row(index, epoch):
        return {**{k: tf.gather(c, index) for k, c in consts.items()}, "epoch": epoch}

    if not training:
        ds = tf.data.Dataset.range(num).map(lambda i: row(i, tf.constant(0, tf.int64)))
        return ds.repeat() if repeat else ds

    def pick(i):
        epoch = i // num
        s = tf.random.experimental.stateless_fold_in(seed, epoch)
        return row(tf.random.experimental.index_shuffle(i % num, s, num - 1), epoch)
    return tf.data.Dataset.range(_FOREVER if repeat else num).map(pick)


def gzip_records(paths, *, training, repeat, seed, num_pipes, pipe_id, shuffle_buffer,
                 num_parallel_calls) -> tf.data.Dataset:
    """GZIP shards (no random access): {'path', 'record', 'serialized', 'epoch'} read
    sequentially. Training: each epoch the shards in a new order (from (seed, epoch)),
    interleaved record by record, every num_pipes-th record from pipe_id, then shuffled in
    `shuffle_buffer` (across epoch boundaries)."""
    files = tf.constant(paths)

    def open_shard(path, epoch):
        records = tf.data.TFRecordDataset(path, compression_type="GZIP").enumerate()
        return records.map(lambda i, s: {"path": path, "record": i, "serialized": s,
                                          "epoch": epoch})

    def one_epoch(epoch):
        if training:
            s = tf.random.experimental.stateless_fold_in(order_seed(seed, pipe_id), epoch)
            order = tf.gather(files, tf.random.experimental.stateless_shuffle(
                tf.range(len(paths)), seed=s))
            cycle = len(paths)
        else:
            order, cycle = files, 1
        ds = tf.data.Dataset.from_tensor_slices(order).interleave(
            lambda p: open_shard(p, epoch), cycle_length=cycle, block_length=1,
            num_parallel_calls=num_parallel_calls if training else None, deterministic=True)
        return ds.shard(num_pipes, pipe_id) if num_pipes > 1 else ds

    ds = tf.data.Dataset.range(_FOREVER if repeat else 1).flat_map(one_epoch)
    if training and shuffle_buffer and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=int(seed), reshuffle_each_iteration=True)
    return ds
