"""One record through extract_features: the frames (or flow frames) its positions need, decoded
in one graph call, and the output record the features are added to. A video that cannot be
used raises VideoReject with the reason (the job lists it in its rejects file)."""
from __future__ import annotations

import numpy as np

from tfvid.prep.frame_network import Density, FrameNetwork, window_indices


class VideoReject(Exception):
    """A video that cannot be used; the message is the reason."""


def _jpeg_complete(data: bytes) -> bool:
    return len(data) >= 4 and data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"


_DECODERS: dict = {}


def _decode(encoded: list, indices, channels: int, what: str):
    """JPEG strings (the frames `indices` of a stream) -> uint8 (k, H, W, channels), one graph
    call; VideoReject naming the frame."""
    import tensorflow as tf
    for k, data in zip(indices, encoded):
        if not _jpeg_complete(data):
            raise VideoReject(f"{what} {k} is not a complete JPEG")
    if channels not in _DECODERS:
        @tf.function(reduce_retracing=True)
        def decode(strings):
            return tf.map_fn(lambda s: tf.io.decode_jpeg(s, channels=channels), strings,
                             fn_output_signature=tf.TensorSpec([None, None, channels],
                                                               tf.uint8))
        _DECODERS[channels] = decode
    try:
        return _DECODERS[channels](tf.constant(encoded, tf.string))
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        raise VideoReject(f"{what}s not decodable: {' '.join(e.message.split())[:200]}") from None


def _bytes_list(ex, key) -> list:
    return [f.bytes_list.value[0] if f.bytes_list.value else b""
            for f in ex.feature_lists.feature_list[key].feature]


def video_id(ex) -> str:
    from tfvid.data import schema
    ids = ex.context.feature[schema.ID].bytes_list.value if schema.ID in ex.context.feature \
        else []
    return ids[0].decode("utf-8", "replace") if ids else ""


def prepare_video(ex, network: FrameNetwork, density: Density) -> dict:
    """One parsed SequenceExample -> the inputs of FrameNetwork.features: {streams, windows
    (unique positions), positions (m,), inverse (rows of the unique positions), timestamps}.
    Only the frames the windows use are decoded. Raises VideoReject with the reason."""
    from tfvid.data import schema
    ctx = ex.context.feature
    frames = _bytes_list(ex, schema.FRAMES)
    n = len(frames)
    if n == 0:
        raise VideoReject("no frames (image/encoded is empty)")
    rate = ctx[schema.FRAME_RATE].float_list.value[0] \
        if schema.FRAME_RATE in ctx and ctx[schema.FRAME_RATE].float_list.value else 0.0
    try:
        positions = density.positions(n, rate)
    except ValueError as e:
        raise VideoReject(str(e)) from None
    unique, inverse = np.unique(positions, return_inverse=True)
    stamps = [f.int64_list.value[0] if f.int64_list.value else 0
              for f in ex.feature_lists.feature_list[schema.TIMESTAMPS].feature]
    if len(stamps) != n:
        stamps = [round(i * 1e6 / rate) if rate > 0 else 0 for i in range(n)]
    if network.modality == "flow":
        fx, fy = _bytes_list(ex, schema.FLOW_X), _bytes_list(ex, schema.FLOW_Y)
        if not fx:
            raise VideoReject("no optical flow in the record (prepare_data --flow or extract_flow)")
        if len(fx) != len(fy) or len(fx) != n - 1:
            raise VideoReject(f"{n} frames need {n - 1} flow frames, got x={len(fx)} y={len(fy)}")
        count, sources, channels, what = len(fx), [fx, fy], 1, "flow frame"
    else:
        count, sources, channels, what = n, [frames], 3, "frame"
    windows = window_indices(unique, network.new_length, count)
    needed = np.unique(windows)
    streams = []
    for src in sources:
        decoded = _decode([src[i] for i in needed], needed.tolist(), channels, what)
        streams.append(decoded[..., 0] if channels == 1 else decoded)
    return {"streams": streams, "windows": np.searchsorted(needed, windows),
            "positions": positions, "inverse": inverse,
            "timestamps": [stamps[i] for i in positions]}


def output_example(ex, keep_frames: bool):
    """The record the features are added to: the input itself (keep_frames) or its context
    without image/format and FORWARD_FLOW/* keys plus any FEATURE/* lists it already holds."""
    import tensorflow as tf

    from tfvid.data import schema
    if keep_frames:
        out = tf.train.SequenceExample()
        out.CopyFrom(ex)
        return out
    out = tf.train.SequenceExample()
    for key, value in ex.context.feature.items():
        if key != schema.IMAGE_FORMAT and not key.startswith("FORWARD_FLOW/"):
            out.context.feature[key].CopyFrom(value)
    for key, value in ex.feature_lists.feature_list.items():
        if key.startswith("FEATURE/"):
            out.feature_lists.feature_list[key].CopyFrom(value)
    return out
