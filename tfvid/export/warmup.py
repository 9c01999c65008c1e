"""TF Serving warmup requests of an export (assets.extra/tf_serving_warmup_requests).

One PredictionLog per request: zero clips for the float32 clip signature (batch sizes
WARMUP_BATCH_SIZES), and for the in-graph protocol signatures black uint8 frames
(serving_default), black JPEGs (encoded_frames) or a record of black frames
(sequence_example), batch sizes WARMUP_PROTOCOL_BATCHES. Tensors are stored compactly (one
value repeated over the shape, as TensorProto allows), so the file stays small whatever the
clip size. Needs tensorflow-serving-api.
"""
from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from tfvid.export.serving_protocol import (ENCODED_SIGNATURE, RECORD_SIGNATURE, RECORDS_INPUT,
                                           InputProtocol, Protocol)
from tfvid.export.layout import ASSETS_EXTRA, INPUT_NAME, SIGNATURE_NAME, WARMUP_FILE, \
    resolve_export_dir

#: Batch sizes of the warmup requests (one request each). TF Serving replays them at load time.
WARMUP_BATCH_SIZES = (1, 1, 2, 2, 4)
#: Time length used in warmup requests when the signature's T is variable.
WARMUP_VARIABLE_TIME = 8
#: TF Serving reads at most this many warmup records.
MAX_WARMUP_REQUESTS = 1000
#: Frames per warmup video (flow: one less).
WARMUP_FRAMES = 8
#: Batch sizes of the warmup requests of the in-graph signatures.
WARMUP_PROTOCOL_BATCHES = (1, 2)


def black_image(h: int, w: int, channels: int) -> bytes:
    return tf.io.encode_jpeg(tf.zeros([h, w, channels], tf.uint8)).numpy()


def warmup_size(proto: InputProtocol) -> tuple[int, int]:
    """(h, w) of the warmup frames: the stored size (64 x 48 without one)."""
    if proto.frame_size is not None:
        return int(proto.frame_size[1]), int(proto.frame_size[0])
    if proto.short_side is not None:
        s = int(proto.short_side)
        return s, (s * 4 // 3) // 2 * 2
    return 48, 64


def warmup_inputs(protocol: Protocol, signature: str, batch: int) -> dict:
    """{input name: TensorProto} of one warmup request (black frames, compactly stored where
    the proto allows)."""
    from tfvid.data import schema

    protos = protocol.by_raw()
    out = {}
    if signature == RECORD_SIGNATURE:
        p = next(iter(protos.values()))
        h, w = warmup_size(p)
        rgb = black_image(h, w, 3)
        gray = black_image(h, w, 1)
        flow = {} if "flow" not in protos else {
            "flow_x": [gray] * (WARMUP_FRAMES - 1), "flow_y": [gray] * (WARMUP_FRAMES - 1)}
        record = schema.make_example("warmup", [rgb] * WARMUP_FRAMES, height=h, width=w,
                                     frame_rate=25.0, **flow).SerializeToString()
        out[RECORDS_INPUT] = tf.make_tensor_proto([record] * batch, dtype=tf.string)
        return out
    for raw, p in protos.items():
        h, w = warmup_size(p)
        t = WARMUP_FRAMES - 1 if raw == "flow" else WARMUP_FRAMES
        if signature == ENCODED_SIGNATURE:
            image = black_image(h, w, 1 if raw == "flow" else 3)
            shape = [batch, t, 2] if raw == "flow" else [batch, t]
            out[raw] = tf.make_tensor_proto(image, dtype=tf.string, shape=shape)
        else:
            out[raw] = tf.make_tensor_proto(0, dtype=tf.uint8, shape=[batch, t, h, w, p.channels])
    return out


def write_warmup_requests(path: str, model_name: str, spec,
                          batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES, *,
                          signature_name: str = SIGNATURE_NAME, protocol=None,
                          protocol_signatures: Sequence[str] = ()) -> int:
    """Writes TF Serving warmup requests to `path`; returns how many.

    spec: the TensorSpec of the "clip" input, or a dict {input name: TensorSpec} (one zero
    tensor per input in every request), for the signature `signature_name` (one request per
    entry of `batch_sizes`). With `protocol` (tfvid.export.signatures.Protocol) also requests
    for each of `protocol_signatures` (serving_default: black uint8 frames; encoded_frames:
    black JPEGs; sequence_example: a record of black frames), batch sizes
    signatures.WARMUP_PROTOCOL_BATCHES. Each record is a PredictionLog with a PredictRequest.
    Tensors are stored compactly (one value repeated over the shape, as TensorProto allows),
    so the file stays small whatever the clip size. Raises ImportError without
    tensorflow-serving-api.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    specs = spec if isinstance(spec, dict) else {INPUT_NAME: spec}
    requests = []
    for b in batch_sizes:
        inputs = {}
        for key, one in specs.items():
            _, t, *rest = one.shape.as_list()          # (S, S, C) clips, (D,) features
            t = WARMUP_VARIABLE_TIME if t is None else t
            inputs[key] = tf.make_tensor_proto(0.0, dtype=tf.float32,
                                               shape=[int(b), t, *rest])
        requests.append((signature_name, inputs))
    for name in protocol_signatures if protocol is not None else ():
        for b in WARMUP_PROTOCOL_BATCHES:
            requests.append((name, warmup_inputs(protocol, name, int(b))))
    if len(requests) > MAX_WARMUP_REQUESTS:
        raise ValueError(f"{len(requests)} warmup requests; TF Serving replays at most "
                         f"{MAX_WARMUP_REQUESTS}")
    with tf.io.TFRecordWriter(path) as writer:
        for name, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=name))
            for key, proto in inputs.items():
                request.inputs[key].CopyFrom(proto)
            record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(record.SerializeToString())
    return len(requests)


def append_clip_warmup(path: str, model_name: str, specs: dict, names: Sequence[str]) -> None:
    """Adds one batch-1 request per name in `names` (float32 clip signatures) to the warmup
    file written by write_warmup_requests."""
    old = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    tmp = path + ".tmp"
    for sig_name in names:
        write_warmup_requests(tmp, model_name, specs, (1,), signature_name=sig_name)
        old += list(tf.data.TFRecordDataset(tmp).as_numpy_iterator())
    if os.path.exists(tmp):
        os.remove(tmp)
    with tf.io.TFRecordWriter(path) as writer:
        for raw in old:
            writer.write(raw)


def read_warmup_requests(path: str) -> list:
    """Parses an export's warmup file into PredictionLog protos (needs tensorflow-serving-api)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = resolve_export_dir(path) if os.path.isdir(path) else path
    if os.path.isdir(path):
        path = os.path.join(path, ASSETS_EXTRA, WARMUP_FILE)
    logs = []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        logs.append(prediction_log_pb2.PredictionLog.FromString(raw))
    return logs
