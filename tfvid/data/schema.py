"""TFRecord schema: one tf.train.SequenceExample per video (docs/records.md).

Compatible with TF Model Garden and MediaSequence readers:

context
    example/id            bytes      video id (unique within a split)
    clip/label/index      int64[1]   class index (absent for unlabeled test videos)
    clip/label/string     bytes[1]   class name
    clip/data_path        bytes      source video path (optional)
    image/format          bytes      b"JPEG"
    image/height, image/width        int64, size of the stored frames
    image/frame_rate      float      frames per second of the stored frames
    FORWARD_FLOW/format   bytes      b"JPEG"
    FORWARD_FLOW/layout   bytes      b"xy_gray": x and y as two grayscale JPEG lists
    FORWARD_FLOW/bound    float      clip bound (20: 8-bit value round(127.5 + 6.375 v))
    FORWARD_FLOW/method   bytes      b"tvl1", b"dis" or b"farneback"
    FEATURE/<name>/dimension int64   D of cached per-frame features
    FEATURE/<name>/<field>           how they were made (extract_features: model, source,
                                     checkpoint, backbone, modality, new_length, input_size,
                                     density, crops, rate; see docs/records.md)

feature lists
    image/encoded                    n JPEG frames in temporal order
    image/timestamp                  n int64 microseconds
    FORWARD_FLOW/x/image/encoded     n-1 grayscale JPEGs (flow k: frame k -> k+1)
    FORWARD_FLOW/y/image/encoded     n-1 grayscale JPEGs
    FEATURE/<name>/floats            m float vectors of length D (one per position)
    FEATURE/<name>/frame_index       m int64: the stored frame each row was computed at
    FEATURE/<name>/timestamp         m int64 microseconds of those frames

A feature record (pipelines/extract_features.py) may hold no image/encoded frames at all:
parse_feature_example reads it (m rows, not n frames).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

ID = "example/id"
LABEL_INDEX = "clip/label/index"
LABEL_STRING = "clip/label/string"
DATA_PATH = "clip/data_path"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
FRAME_RATE = "image/frame_rate"
FRAMES = "image/encoded"
TIMESTAMPS = "image/timestamp"
FLOW_FORMAT = "FORWARD_FLOW/format"
FLOW_LAYOUT = "FORWARD_FLOW/layout"
FLOW_BOUND = "FORWARD_FLOW/bound"
FLOW_METHOD = "FORWARD_FLOW/method"
FLOW_X = "FORWARD_FLOW/x/image/encoded"
FLOW_Y = "FORWARD_FLOW/y/image/encoded"
FLOW_LAYOUT_XY_GRAY = b"xy_gray"
NO_LABEL = -1


def feature_key(name: str) -> str:
    """Feature-list key of cached per-frame features called `name`."""
    return f"FEATURE/{name}/floats"


def feature_dim_key(name: str) -> str:
    return f"FEATURE/{name}/dimension"


def feature_frame_index_key(name: str) -> str:
    """Feature-list key of the frame index (0-based, int64) of each feature row."""
    return f"FEATURE/{name}/frame_index"


def feature_timestamp_key(name: str) -> str:
    """Feature-list key of the timestamp (microseconds, int64) of each feature row."""
    return f"FEATURE/{name}/timestamp"


def feature_context_key(name: str, field: str) -> str:
    """Context key FEATURE/<name>/<field> describing the features (model, density, crops...)."""
    return f"FEATURE/{name}/{field}"


def feature_prefix(name: str) -> str:
    """Every key of the features called `name` starts with this."""
    return f"FEATURE/{name}/"


def set_features(example: tf.train.SequenceExample, name: str, vectors, *,
                 frame_indices: Sequence[int] | None = None,
                 timestamps_us: Sequence[int] | None = None,
                 context: dict | None = None) -> tf.train.SequenceExample:
    """Writes per-position features `name` into `example` (in place; returned too), replacing
    any earlier features of that name: FEATURE/<name>/floats (one FloatList of D values per
    row of `vectors`, an (m, D) array), /dimension, optionally /frame_index and /timestamp
    feature lists (m values each) and the `context` fields as FEATURE/<name>/<field>
    (str/bytes -> bytes, bool/int -> int64, float -> float; lists of one kind too).

    ValueError when vectors is not 2-D with m >= 1 rows or a list has another length.
    """
    import numpy as np
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or vectors.shape[0] < 1:
        raise ValueError(f"features {name!r}: need an (m, D) array with m >= 1, got shape "
                         f"{vectors.shape}")
    m = vectors.shape[0]
    ctx, lists = example.context.feature, example.feature_lists.feature_list
    prefix = feature_prefix(name)
    for key in [k for k in ctx if k.startswith(prefix)]:
        del ctx[key]
    for key in [k for k in lists if k.startswith(prefix)]:
        del lists[key]
    ctx[feature_dim_key(name)].CopyFrom(_ints([vectors.shape[1]]))
    floats = lists[feature_key(name)].feature
    for row in vectors:
        floats.add().float_list.value.extend(row.tolist())
    for key, values in ((feature_frame_index_key(name), frame_indices),
                        (feature_timestamp_key(name), timestamps_us)):
        if values is None:
            continue
        if len(values) != m:
            raise ValueError(f"features {name!r}: {len(values)} values for {key} but {m} rows")
        out = lists[key].feature
        for v in values:
            out.add().int64_list.value.append(int(v))
    for field, value in (context or {}).items():
        ctx[feature_context_key(name, field)].CopyFrom(_context_feature(value))
    return example


def _context_feature(value) -> tf.train.Feature:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(v, (str, bytes)) for v in values):
        return _bytes([v.encode() if isinstance(v, str) else v for v in values])
    if all(isinstance(v, (bool, int)) for v in values):
        return _ints(values)
    if all(isinstance(v, (bool, int, float)) for v in values):
        return _floats(values)
    raise ValueError(f"context value {value!r}: expected str, bytes, int or float (or a list)")


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def make_example(video_id: str, frames: Sequence[bytes], *, height: int, width: int,
                 frame_rate: float, timestamps_us: Sequence[int] | None = None,
                 label_index: int | None = None, label_string: str | None = None,
                 data_path: str | None = None, flow_x: Sequence[bytes] | None = None,
                 flow_y: Sequence[bytes] | None = None, flow_bound: float = 20.0,
                 flow_method: str = "tvl1",
                 features: dict[str, "Sequence[Sequence[float]]"] | None = None
                 ) -> tf.train.SequenceExample:
    """Builds the SequenceExample of one video.

    frames: n JPEG strings. flow_x/flow_y: n-1 grayscale JPEG strings each, or None.
    features: optional {name: n vectors of length D}.
    Raises ValueError naming the video when counts disagree.
    """
    n = len(frames)
    if n == 0:
        raise ValueError(f"video {video_id!r}: no frames")
    if timestamps_us is None:
        timestamps_us = [round(i * 1e6 / frame_rate) for i in range(n)]
    if len(timestamps_us) != n:
        raise ValueError(f"video {video_id!r}: {len(timestamps_us)} timestamps for {n} frames")
    ctx = {
        ID: _bytes([video_id.encode()]),
        IMAGE_FORMAT: _bytes([b"JPEG"]),
        IMAGE_HEIGHT: _ints([height]),
        IMAGE_WIDTH: _ints([width]),
        FRAME_RATE: _floats([frame_rate]),
    }
    if label_index is not None:
        ctx[LABEL_INDEX] = _ints([label_index])
    if label_string is not None:
        ctx[LABEL_STRING] = _bytes([label_string.encode()])
    if data_path is not None:
        ctx[DATA_PATH] = _bytes([str(data_path).encode()])
    lists = {
        FRAMES: tf.train.FeatureList(feature=[_bytes([f]) for f in frames]),
        TIMESTAMPS: tf.train.FeatureList(feature=[_ints([t]) for t in timestamps_us]),
    }
    if (flow_x is None) != (flow_y is None):
        raise ValueError(f"video {video_id!r}: flow needs both x and y")
    if flow_x is not None:
        if not (len(flow_x) == len(flow_y) == n - 1):
            raise ValueError(f"video {video_id!r}: RGB/flow frame-count mismatch: {n} RGB frames "
                             f"need {n - 1} flow frames, got x={len(flow_x)} y={len(flow_y)}")
        ctx.update({FLOW_FORMAT: _bytes([b"JPEG"]), FLOW_LAYOUT: _bytes([FLOW_LAYOUT_XY_GRAY]),
                    FLOW_BOUND: _floats([flow_bound]), FLOW_METHOD: _bytes([flow_method.encode()])})
        lists[FLOW_X] = tf.train.FeatureList(feature=[_bytes([f]) for f in flow_x])
        lists[FLOW_Y] = tf.train.FeatureList(feature=[_bytes([f]) for f in flow_y])
    for name, vectors in (features or {}).items():
        if len(vectors) != n:
            raise ValueError(f"video {video_id!r}: {len(vectors)} '{name}' features for {n} frames")
        ctx[feature_dim_key(name)] = _ints([len(vectors[0])])
        lists[feature_key(name)] = tf.train.FeatureList(feature=[_floats(v) for v in vectors])
    return tf.train.SequenceExample(context=tf.train.Features(feature=ctx),
                                    feature_lists=tf.train.FeatureLists(feature_list=lists))


def parse_example(serialized: tf.Tensor, *, with_flow: bool = False,
                  feature_name: str | None = None) -> dict[str, tf.Tensor]:
    """Parses one serialized SequenceExample inside tf.data.

    Returns a dict of tensors:
      id (string scalar), label (int32 scalar, NO_LABEL when absent), label_string (string),
      height, width (int32), frame_rate (float32),
      frames (string (n,)), num_frames (int32),
      with_flow: flow_x, flow_y (string (n-1,)), flow_bound (float32), num_flow (int32),
      feature_name: features (float32 (n, D)).
    Frames stay encoded: callers gather the sampled ones before decoding.
    """
    ctx_spec = {
        ID: tf.io.FixedLenFeature([], tf.string),
        LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
        LABEL_STRING: tf.io.VarLenFeature(tf.string),
        IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        FRAME_RATE: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    }
    seq_spec = {FRAMES: tf.io.FixedLenSequenceFeature([], tf.string)}
    if with_flow:
        ctx_spec[FLOW_BOUND] = tf.io.FixedLenFeature([], tf.float32, default_value=0.0)
        seq_spec[FLOW_X] = tf.io.FixedLenSequenceFeature([], tf.string)
        seq_spec[FLOW_Y] = tf.io.FixedLenSequenceFeature([], tf.string)
    if feature_name:
        seq_spec[feature_key(feature_name)] = tf.io.VarLenFeature(tf.float32)
    ctx, seq = tf.io.parse_single_sequence_example(serialized, ctx_spec, seq_spec)
    labels = tf.sparse.to_dense(ctx[LABEL_INDEX])
    names = tf.sparse.to_dense(ctx[LABEL_STRING], default_value="")
    out = {
        "id": ctx[ID],
        "label": tf.cond(tf.size(labels) > 0, lambda: tf.cast(labels[0], tf.int32),
                         lambda: tf.constant(NO_LABEL, tf.int32)),
        "label_string": tf.cond(tf.size(names) > 0, lambda: names[0], lambda: tf.constant("")),
        "height": tf.cast(ctx[IMAGE_HEIGHT], tf.int32),
        "width": tf.cast(ctx[IMAGE_WIDTH], tf.int32),
        "frame_rate": ctx[FRAME_RATE],
        "frames": seq[FRAMES],
        "num_frames": tf.shape(seq[FRAMES], out_type=tf.int32)[0],
    }
    if with_flow:
        out.update(flow_x=seq[FLOW_X], flow_y=seq[FLOW_Y], flow_bound=ctx[FLOW_BOUND],
                   num_flow=tf.shape(seq[FLOW_X], out_type=tf.int32)[0])
    if feature_name:
        out["features"] = tf.sparse.to_dense(seq[feature_key(feature_name)])
    return out


def parse_label(serialized: tf.Tensor) -> tf.Tensor:
    """The int64 label (NO_LABEL when absent) of any tfvid record, frames or cached features:
    only the context's LABEL_INDEX is parsed."""
    context = {LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64, default_value=NO_LABEL)}
    return tf.io.parse_single_sequence_example(serialized, context_features=context)[0][
        LABEL_INDEX]


def parse_feature_example(serialized: tf.Tensor, name: str) -> dict[str, tf.Tensor]:
    """Parses one serialized feature record (pipelines/extract_features.py) inside tf.data or
    eagerly; frames need not be stored.

    Returns: features float32 (m, D), num_frames int32 (m: the feature rows), frame_index and
    timestamp int64 (m,) (zeros when the record lacks them), dimension int32 (D), id (string),
    label (int32, NO_LABEL when absent), label_string, frame_rate (float32).
    """
    ctx_spec = {
        ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
        LABEL_STRING: tf.io.VarLenFeature(tf.string),
        FRAME_RATE: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        feature_dim_key(name): tf.io.FixedLenFeature([], tf.int64, default_value=0),
    }
    seq_spec = {feature_key(name): tf.io.VarLenFeature(tf.float32),
                feature_frame_index_key(name): tf.io.VarLenFeature(tf.int64),
                feature_timestamp_key(name): tf.io.VarLenFeature(tf.int64)}
    ctx, seq = tf.io.parse_single_sequence_example(serialized, ctx_spec, seq_spec)
    labels = tf.sparse.to_dense(ctx[LABEL_INDEX])
    names = tf.sparse.to_dense(ctx[LABEL_STRING], default_value="")
    dim = tf.cast(ctx[feature_dim_key(name)], tf.int32)
    floats = tf.sparse.to_dense(seq[feature_key(name)])            # (m, D), D from the data
    m = tf.shape(floats, out_type=tf.int32)[0]
    dim = tf.where(dim > 0, dim, tf.shape(floats, out_type=tf.int32)[1])
    features = tf.reshape(floats, tf.stack([m, dim]))

    def per_row(key):
        values = tf.reshape(tf.sparse.to_dense(seq[key]), [-1])
        return tf.cond(tf.size(values) == m, lambda: values, lambda: tf.zeros([m], tf.int64))

    return {
        "features": features,
        "num_frames": m,
        "dimension": dim,
        "frame_index": per_row(feature_frame_index_key(name)),
        "timestamp": per_row(feature_timestamp_key(name)),
        "id": ctx[ID],
        "label": tf.cond(tf.size(labels) > 0, lambda: tf.cast(labels[0], tf.int32),
                         lambda: tf.constant(NO_LABEL, tf.int32)),
        "label_string": tf.cond(tf.size(names) > 0, lambda: names[0], lambda: tf.constant("")),
        "frame_rate": ctx[FRAME_RATE],
    }
