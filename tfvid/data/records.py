"""Where the input lives: file lists, raw-frame list files, TFRecord record offsets, frame files
(docs/architecture.md).

    resolve_files(files)          -> ('tfrecord' | 'list', sorted paths)
    read_list_file(path)          a raw-frames list file -> (dirs, ids, num_frames, labels)
    record_index(path)            byte offsets of the records of an uncompressed shard
    read_record(path, offset)     the serialized record at a byte offset (inside tf.data)
    frame_names / read_files      raw-frame file names of sampled indices, and their bytes
    verify_records(files)         reads every record: {path: count}, DataLossError naming a shard

Raw-frame layout (TSN/mmaction2): `*.list` files of lines `<video_dir> <num_frames> <label>`,
video_dir relative to the list's folder, holding img_00001.jpg ... (1-based, `RGB_TEMPLATE`) and
n-1 grayscale flow_x_00001.jpg / flow_y_00001.jpg (`FLOW_TEMPLATES`).
"""
from __future__ import annotations

import os
import struct

import tensorflow as tf

RGB_TEMPLATE = "img_"          # raw layout: img_00001.jpg
FLOW_TEMPLATES = ("flow_x_", "flow_y_")


def resolve_files(files):
    """-> ('tfrecord' | 'list', sorted paths). ValueError naming an unmatched pattern."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    files = [os.fspath(f) for f in files]
    if not files:
        raise ValueError("build_dataset: no files given")
    paths = []
    for pattern in files:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise ValueError(f"build_dataset: no files matched {pattern!r}")
        paths += matched
    is_list = [p.endswith(".list") for p in paths]
    if any(is_list) and not all(is_list):
        raise ValueError(f"build_dataset: mix of .list files and TFRecord shards in {files}")
    return ("list" if all(is_list) else "tfrecord"), paths


def read_list(path):
    """-> (dirs, ids, num_frames, labels, line numbers) of a raw-frames list file."""
    root = os.path.dirname(os.path.abspath(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    prefix = f"frames/{stem}/"          # prepare_data: <out>/<split>.list, frames/<split>/<id>
    dirs, ids, counts, labels, lines = [], [], [], [], []
    with tf.io.gfile.GFile(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.strip().rsplit(maxsplit=2)
            try:
                video, count, label = parts[0], int(parts[1]), int(parts[2])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{line_no}: expected '<video_dir> <num_frames> "
                                 f"<label>', got {line.strip()!r}") from None
            dirs.append(os.path.join(root, video))
            norm = video.replace(os.sep, "/")
            ids.append(norm[len(prefix):] if norm.startswith(prefix) and len(norm) > len(prefix)
                       else video)
            counts.append(count)
            labels.append(label)
            lines.append(line_no)
    if not ids:
        raise ValueError(f"list file {path!r} is empty")
    return dirs, ids, counts, labels, lines


def read_list_file(path):
    """Parses a raw-frames list file -> (dirs, ids, num_frames, labels) Python lists.

    Lines: `<video_dir> <num_frames> <label>` (the directory may contain spaces); dirs are
    joined to the list file's folder. The id is video_dir without a leading `frames/<split>/`
    when <split> is the list file's stem (prepare_data writes `<out>/<split>.list` with lines
    `frames/<split>/<id> n label`), so that a video has the same id in both layouts.
    """
    return read_list(path)[:4]


# TFRecord framing: uint64 length, uint32 masked crc of the length, data, uint32 crc of data.
_HEADER, _FOOTER = 12, 4
_INDEX_CACHE: dict = {}


def record_index(path):
    """Byte offsets of the records of an uncompressed TFRecord shard, found by reading the
    12-byte record headers only -> (offsets list, None) or (offsets of the complete records,
    problem text) when the shard is truncated (the last record runs past the end of the file).
    Cached per (path, size, mtime)."""
    stat = tf.io.gfile.stat(path)
    key = (path, stat.length, stat.mtime_nsec)
    if key in _INDEX_CACHE:
        return _INDEX_CACHE[key]
    size, offsets, problem, pos = stat.length, [], None, 0
    with tf.io.gfile.GFile(path, "rb") as f:
        while pos < size:
            if pos + _HEADER > size:
                problem = "truncated"
                break
            f.seek(pos)
            header = f.read(8)
            if len(header) < 8:
                problem = "truncated"
                break
            length = struct.unpack("<Q", header)[0]
            if pos + _HEADER + length + _FOOTER > size:
                problem = "truncated"
                break
            offsets.append(pos)
            pos += _HEADER + length + _FOOTER
    if problem:
        problem = (f"{path}: truncated TFRecord shard: record {len(offsets)} (at byte {pos}) "
                   f"runs past the end of the file ({size} bytes); {len(offsets)} complete "
                   f"records before it")
    _INDEX_CACHE[key] = (offsets, problem)
    return offsets, problem


def read_record(path, offset):
    """The serialized record of an uncompressed TFRecord shard starting at byte `offset`."""
    variant = tf.raw_ops.TFRecordDatasetV2(
        filenames=tf.reshape(path, [1]), compression_type="",
        buffer_size=tf.constant(256 * 1024, tf.int64), byte_offsets=tf.reshape(offset, [1]))
    one = tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.string))
    return one.take(1).get_single_element()


def frame_names(video_dir, prefix, indices):
    """(T, L) 0-based indices -> file names <dir>/<prefix>%05d.jpg (1-based)."""
    numbers = tf.strings.as_string(indices + 1, width=5, fill="0")
    return tf.strings.join([video_dir + "/" + prefix, numbers, ".jpg"])


def read_files(names):
    """Reads files named by a string tensor -> their bytes, same shape (one op per file when
    the shape is static)."""
    if names.shape.is_fully_defined():
        flat = tf.stack([tf.io.read_file(n) for n in tf.unstack(tf.reshape(names, [-1]))])
    else:
        flat = tf.map_fn(tf.io.read_file, tf.reshape(names, [-1]),
                         fn_output_signature=tf.TensorSpec([], tf.string))
    return tf.reshape(flat, tf.shape(names))


def verify_records(files) -> dict:
    """Reads every record of every shard: {path: record count}.

    Raises tf.errors.DataLossError naming the first truncated or corrupt shard.
    """
    _, paths = resolve_files(files)
    counts = {}
    for path in paths:
        try:
            counts[path] = int(tf.data.TFRecordDataset(path).reduce(0, lambda c, _: c + 1))
        except tf.errors.DataLossError as e:
            raise tf.errors.DataLossError(None, None, f"{path}: {e.message}") from None
    return counts
