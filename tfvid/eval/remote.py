"""Prediction through a running TF Serving over gRPC (pipelines.predict --server=HOST:PORT).

    from tfvid.eval import remote
    results = remote.predict_remote("localhost:8500", ["a.mp4"], export_dir="saved_models/tsn")

Requests go to tensorflow_serving's PredictionService (prediction_service_pb2_grpc). The
signature `encoded_frames` (default) sends each decoded frame as a JPEG (flow exports: the x/y
JPEGs of each flow field), so a request stays far below gRPC's 4 MB default message size;
serving_default sends uint8 frames, sequence_example one tfvid record, clip float32 views
preprocessed here (tfvid.eval.predict.make_views). The server runs the test protocol in the
graph (tfvid.export.signatures). The export's sidecar (a local copy, --export_dir) supplies the
decoding options, class names and model name; without it frames go at their source size (the
graph resizes them) and the model name must be given.
"""
from __future__ import annotations

import sys

import numpy as np

from tfvid.eval import predict as local

#: gRPC's default maximum message size (a TF Serving built with defaults accepts no more).
GRPC_DEFAULT_MAX = 4 * 1024 * 1024
SERVER_SIGNATURES = ("encoded_frames", "serving_default", "sequence_example", "clip")


def _jpegs(images: np.ndarray) -> list[bytes]:
    import tensorflow as tf
    return [tf.io.encode_jpeg(img, quality=95).numpy() for img in images]


def raw_inputs(sidecar: dict | None) -> list[str]:
    """The raw inputs of an export's protocol signatures: ["rgb"], ["flow"] or both."""
    serving = (sidecar or {}).get("serving") or {}
    return sorted(serving.get("inputs") or {"rgb": None})


def build_request(signature: str, frames: np.ndarray, sidecar: dict | None, *,
                  model_name: str, num_crops: int = 1):
    """A tensorflow_serving PredictRequest for one decoded video (uint8 (n, H, W, 3)) on
    `signature`: encoded_frames (JPEG strings (1, n); flow (1, n-1, 2)), serving_default
    (uint8 (1, n, H, W, 3); flow (1, n-1, H, W, 2)), sequence_example (one serialized tfvid
    record) or clip (float32 views (V, T, S, S, C), preprocessed here: needs the sidecar)."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2

    if signature not in SERVER_SIGNATURES:
        raise ValueError(f"--signature must be one of {SERVER_SIGNATURES}, got {signature!r}")
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
    inputs = raw_inputs(sidecar)
    flow = local.flow_fields(frames, sidecar or {}) if "flow" in inputs else None
    if signature == "clip":
        if not sidecar:
            raise ValueError("--signature=clip needs --export_dir (the sidecar's preprocessing)")
        request.inputs["clip"].CopyFrom(tf.make_tensor_proto(
            local.make_views(frames, sidecar, num_crops), dtype=tf.float32))
    elif signature == "sequence_example":
        from tfvid.data import schema
        n, h, w = frames.shape[:3]
        extra = {} if flow is None else {"flow_x": _jpegs(flow[..., :1]),
                                         "flow_y": _jpegs(flow[..., 1:])}
        record = schema.make_example("request", _jpegs(frames), height=h, width=w,
                                     frame_rate=25.0, **extra)
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(
            [record.SerializeToString()], dtype=tf.string))
    else:
        for key in inputs:
            if signature == "encoded_frames":
                value = (np.array([_jpegs(frames)], dtype=object) if key == "rgb" else
                         np.array([list(zip(_jpegs(flow[..., :1]), _jpegs(flow[..., 1:])))],
                                  dtype=object))
                proto = tf.make_tensor_proto(value, dtype=tf.string)
            else:
                proto = tf.make_tensor_proto((frames if key == "rgb" else flow)[None],
                                             dtype=tf.uint8)
            request.inputs[key].CopyFrom(proto)
    return request


def predict_remote_video(stub, path: str, *, sidecar: dict | None, model_name: str,
                         signature: str = "encoded_frames", num_crops: int = 1,
                         top_k: int = 5, timeout: float = 60.0) -> dict:
    """Classifies one video file through a TF Serving PredictionService stub; the result has
    tfvid.eval.predict.predict_video's keys."""
    import tensorflow as tf

    video = local.decode(path, sidecar)
    request = build_request(signature, video.frames, sidecar, model_name=model_name,
                            num_crops=num_crops)
    size = request.ByteSize()
    if size > GRPC_DEFAULT_MAX:
        print(f"warning: {path}: the request is {size / 2**20:.1f} MB, above gRPC's 4 MB "
              f"default (start TF Serving with a larger --grpc_max_message_size... or use "
              f"--signature=encoded_frames)", file=sys.stderr)
    response = stub.Predict(request, timeout=timeout)
    logits = tf.make_ndarray(response.outputs["logits"])
    views = logits.shape[0] if signature == "clip" else (
        (sidecar or {}).get("serving", {}).get("num_crops", 1))
    return local.make_result(path, video.num_frames, views, logits.mean(axis=0),
                             (sidecar or {}).get("class_names"), top_k,
                             status="partial" if video.partial else "ok", reason=video.partial)


def server_channel(server: str):
    """An insecure gRPC channel to HOST:PORT accepting replies up to 64 MB."""
    import grpc

    if ":" not in server:
        raise ValueError(f"--server must be HOST:PORT, got {server!r}")
    return grpc.insecure_channel(server, options=[
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024)])


def predict_remote(server: str, videos, *, export_dir: str | None = None,
                   model_name: str | None = None, signature: str = "encoded_frames",
                   num_crops: int = 1, top_k: int = 5, json_path: str | None = None,
                   output: str | None = None, timeout: float = 60.0, progress: bool = False,
                   out=None) -> list[dict]:
    """pipelines.predict through TF Serving's gRPC PredictionService at `server` (HOST:PORT):
    videos (files, folders, globs: tfvid.eval.predict.expand_inputs) one request each; prints
    the top-k per video, writes --json / --output, returns the results (a failed video: an
    error result, the others continue)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from tfvid.prep.video import VideoError
    from tfvid.progress import progress_bar

    if signature not in SERVER_SIGNATURES:
        raise ValueError(f"--signature must be one of {SERVER_SIGNATURES}, got {signature!r}")
    local.check_options(num_crops, top_k)
    sidecar = None
    if export_dir:
        from tfvid.export import read_sidecar
        sidecar = read_sidecar(export_dir)
    model_name = model_name or (sidecar or {}).get("name")
    if not model_name:
        raise ValueError("--server needs --model_name (or --export_dir with its sidecar)")
    if sidecar and signature != "clip" and "serving" not in sidecar:
        raise ValueError(f"{export_dir}: the export has no in-graph protocol signatures "
                         f"(export it again with pipelines.export); use --signature=clip")
    paths, _ = local.expand_inputs(videos)
    results = []
    with server_channel(server) as channel, progress_bar(
            total=len(paths), unit="video", desc="predict", disable=not progress) as bar:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for path in paths:
            try:
                result = predict_remote_video(stub, path, sidecar=sidecar,
                                              model_name=model_name, signature=signature,
                                              num_crops=num_crops, top_k=top_k,
                                              timeout=timeout)
            except (VideoError, ValueError, OSError, grpc.RpcError) as e:
                text = e.details() if isinstance(e, grpc.RpcError) else str(e)
                result = local.error_result(path, text)
            results.append(result)
            local.print_result(result, out, extra=f", {server} {signature}")
            bar.update(1)
    local.write_results(results, output, json_path=json_path, top_k=top_k,
                        meta={"server": server, "model_name": model_name,
                              "signature": signature})
    return results
