"""Classifies video files with an exported model (pipelines.export).

    python -m pipelines.predict --export_dir=saved_models/tsn_rgb --video=a.mp4,b.avi --top_k=5

Each video is decoded as the training data was (the sidecar's decoding options: frame size,
fps), sampled and preprocessed with the evaluation transforms of the sidecar's sampler and
normalisation (tfvid.data.pipeline.preprocess_video, mode "test"), and its views (--num_crops:
1 centre, 3 or 10 crops) go through the float32 `clip` signature as one batch. Logits are
averaged over views before the softmax (TSN test protocol). Flow models compute optical flow
on the fly with the sidecar's method (TV-L1 is slow: about 1 s per frame pair on 2 cores).

With --server=HOST:PORT the videos go to a running TF Serving over gRPC instead
(tensorflow_serving.apis.prediction_service_pb2_grpc.PredictionServiceStub):

    python -m pipelines.predict --server=localhost:8500 --export_dir=saved_models/tsn_rgb \\
        --video=a.mp4 [--signature=encoded_frames] [--model_name=tsn_rgb]

--signature=encoded_frames (default) sends each decoded frame as a JPEG (flow runs: the x/y
JPEGs of each flow field), so a request stays far below gRPC's 4 MB default message size;
serving_default sends uint8 frames, sequence_example one tfvid record, clip float32 views.
The server runs the test protocol in the graph (tfvid.export.signatures). --export_dir (a local
copy of the export) supplies the sidecar (decoding options, class names, model name); without
it, give --model_name: frames are then sent at their source size (the graph resizes them).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import flags

from pipelines.common import check_args, define_flag, flag_value, job_error, run_job

FLAGS = flags.FLAGS

define_flag("string", "export_dir", None, "An export version dir "
            "(saved_models/<name>/<version>) or a model dir (saved_models/<name>: the newest "
            "version).")
define_flag("list", "video", None, "Video file(s) to classify, comma-separated (mp4, avi, "
            "webm...).")
define_flag("integer", "num_crops", 1, "Views per clip: 1 (centre), 3 or 10 (corners + centre, "
            "flipped).")
define_flag("integer", "top_k", 5, "How many classes to print per video.")
define_flag("string", "json", None, "Optional path of a JSON file for the predictions.")
define_flag("string", "server", None, "HOST:PORT of a running TF Serving gRPC endpoint: send "
            "the videos there (PredictionService.Predict) instead of loading --export_dir "
            "(which, when given, still supplies the sidecar: decoding options, class names, "
            "model name).")
define_flag("enum", "signature", "encoded_frames", "With --server: the signature to call. "
            "encoded_frames (JPEG frames, the smallest request: gRPC's default limit is 4 MB), "
            "serving_default (uint8 frames), sequence_example (one tfvid record per video) or "
            "clip (float32 views preprocessed here).",
            enum_values=["encoded_frames", "serving_default", "sequence_example", "clip"])
define_flag("string", "model_name", None, "With --server: TF Serving's model name (default: "
            "the sidecar's 'name').")
define_flag("float", "server_timeout", 60.0, "With --server: seconds to wait for each reply.")


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def decode(path: str, sidecar: dict):
    """Decodes `path` with the sidecar's decoding options -> tfvid.prep.video.Video."""
    from tfvid.prep.video import read_video

    dec = sidecar.get("decoding", {})
    size = dec.get("frame_size", (340, 256))
    return read_video(path, frame_size=tuple(size) if size else None,
                      short_side=dec.get("short_side"), fps=dec.get("fps"))


def make_views(frames: np.ndarray, sidecar: dict, num_crops: int = 1) -> np.ndarray:
    """uint8 frames (n, H, W, 3) -> float32 views (V, T, S, S, C) as the export expects."""
    from tfvid.data import sampling
    from tfvid.data.pipeline import preprocess_video

    pre = sidecar["preprocessing"]
    sampler = sampling.get_sampler(**sidecar["sampling"])
    flow_x = flow_y = None
    if pre["modality"] == "flow":
        from tfvid.prep.flow import compute_flow, quantize

        dec = sidecar.get("decoding", {})
        flow = quantize(compute_flow(frames, dec.get("flow_method", "tvl1")),
                        dec.get("flow_bound", 20.0))
        flow_x, flow_y = flow[..., 0], flow[..., 1]
    views = preprocess_video(frames, sampler=sampler, modality=pre["modality"],
                             mode=pre.get("mode", "test"), input_size=pre["input_size"],
                             backbone=pre["backbone"], num_crops=num_crops,
                             flow_x=flow_x, flow_y=flow_y)
    return np.asarray(views, np.float32)


#: Sidecar fields predict needs besides those every export has (tfvid.export.read_sidecar).
REQUIRED_FIELDS = ("sampling", "preprocessing")
REQUIRED_PREPROCESSING = ("modality", "input_size", "backbone")


def load(export_dir: str):
    """(serving, sidecar) of an export predict can run: one "clip" input and a sidecar with
    the sampler and preprocessing (ValueError naming the sidecar file and the field)."""
    from tfvid.export import INPUT_NAME, SidecarError, load_export, sidecar_file

    serving, sidecar = load_export(export_dir, require=REQUIRED_FIELDS)
    file = sidecar_file(serving.path)
    missing = [k for k in REQUIRED_PREPROCESSING if sidecar["preprocessing"].get(k) is None]
    if missing:
        raise SidecarError(f"{file}: 'preprocessing' lacks {', '.join(map(repr, missing))}")
    inputs = sorted(serving.input_specs)
    if inputs != [INPUT_NAME]:
        raise ValueError(f"{serving.path}: the export takes inputs {inputs}; predict runs "
                         f"exports with one {INPUT_NAME!r} input (pipelines.export)")
    return serving, sidecar


def check_views(views: np.ndarray, sidecar: dict, path: str) -> None:
    """ValueError naming the video if the views do not fit the signature's input shape."""
    expected = list(sidecar["signature"]["inputs"]["clip"]["shape"])[1:]
    got = list(views.shape[1:])
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise ValueError(f"{path}: preprocessing gave clips of shape {got} but the export takes "
                         f"{expected}")


def predict_video(serving, sidecar: dict, path: str, *, num_crops: int = 1,
                  top_k: int = 5) -> dict:
    """Classifies one video file with a loaded export (`load`, or tfvid.export.load_export).

    Returns {"video", "num_frames", "views", "logits" (averaged over views),
    "probabilities", "top_k": [{"rank", "index", "label", "probability"}]}.
    Raises tfvid.prep.video.VideoError (naming the file) for unreadable videos.
    """
    video = decode(path, sidecar)
    views = make_views(video.frames, sidecar, num_crops)
    check_views(views, sidecar, path)
    logits = np.asarray(serving(views)["logits"], np.float64).mean(axis=0)   # (classes,)
    probs = softmax(logits)
    names = sidecar.get("class_names") or [f"class_{i}" for i in range(len(logits))]
    order = np.argsort(-probs, kind="stable")[:max(1, top_k)]
    return {
        "video": path,
        "num_frames": video.num_frames,
        "views": int(views.shape[0]),
        "logits": logits.tolist(),
        "probabilities": probs.tolist(),
        "top_k": [{"rank": r + 1, "index": int(i), "label": names[i],
                   "probability": float(probs[i])} for r, i in enumerate(order)],
    }


def predict(export_dir: str, videos, *, num_crops: int = 1, top_k: int = 5,
            json_path: str | None = None, out=None) -> list[dict]:
    """The job as a function: prints the top-k classes per video, returns the results.

    A video that cannot be read gives {"video", "error"} (printed to stderr) and the others
    still run.
    """
    from tfvid.atomic import atomic_path
    from tfvid.prep.video import VideoError

    if num_crops not in (1, 3, 10):
        raise ValueError(f"--num_crops must be 1, 3 or 10, got {num_crops}")
    if int(top_k) < 1:
        raise ValueError(f"--top_k must be >= 1, got {top_k}")
    if json_path and os.path.isdir(json_path):
        raise ValueError(f"--json={json_path} is a directory; give the JSON file's path")
    out = out or sys.stdout
    serving, sidecar = load(export_dir)
    results = []
    for path in videos:
        try:
            result = predict_video(serving, sidecar, path, num_crops=num_crops, top_k=top_k)
        except (VideoError, ValueError) as e:
            msg = str(e) if path in str(e) else f"{path}: {e}"
            print(f"error: {msg}", file=sys.stderr)
            results.append({"video": path, "error": msg})
            continue
        results.append(result)
        print(f"{path} ({result['num_frames']} frames, {result['views']} views):", file=out)
        for item in result["top_k"]:
            print(f"  {item['rank']}. {item['label']:<30s} {item['probability']:.4f}", file=out)
    if json_path:
        payload = {"export_dir": serving.path, "num_crops": num_crops, "results": results}
        with atomic_path(json_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1)
    return results


# ------------------------------------------------------------------- TF Serving over gRPC
#: gRPC's default maximum message size (a TF Serving built with defaults accepts no more).
GRPC_DEFAULT_MAX = 4 * 1024 * 1024
SERVER_SIGNATURES = ("encoded_frames", "serving_default", "sequence_example", "clip")


def _flow_fields(frames: np.ndarray, sidecar: dict) -> np.ndarray:
    """uint8 (n-1, H, W, 2): the 8-bit x/y flow of prepare_data (the sidecar's method/bound)."""
    from tfvid.prep.flow import compute_flow, quantize

    dec = sidecar.get("decoding", {})
    return np.asarray(quantize(compute_flow(frames, dec.get("flow_method", "tvl1")),
                               dec.get("flow_bound", 20.0)), np.uint8)


def _jpegs(images: np.ndarray) -> list[bytes]:
    import tensorflow as tf
    return [tf.io.encode_jpeg(img, quality=95).numpy() for img in images]


def raw_inputs(sidecar: dict) -> list[str]:
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
    flow = _flow_fields(frames, sidecar or {}) if "flow" in inputs else None
    if signature == "clip":
        if not sidecar:
            raise ValueError("--signature=clip needs --export_dir (the sidecar's preprocessing)")
        request.inputs["clip"].CopyFrom(tf.make_tensor_proto(
            make_views(frames, sidecar, num_crops), dtype=tf.float32))
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


def _result(path: str, num_frames: int, views: int, logits: np.ndarray, names, top_k: int):
    logits = np.asarray(logits, np.float64)
    probs = softmax(logits)
    names = names or [f"class_{i}" for i in range(len(logits))]
    order = np.argsort(-probs, kind="stable")[:max(1, top_k)]
    return {"video": path, "num_frames": int(num_frames), "views": int(views),
            "logits": logits.tolist(), "probabilities": probs.tolist(),
            "top_k": [{"rank": r + 1, "index": int(i), "label": names[i],
                       "probability": float(probs[i])} for r, i in enumerate(order)]}


def predict_remote_video(stub, path: str, *, sidecar: dict | None, model_name: str,
                         signature: str = "encoded_frames", num_crops: int = 1,
                         top_k: int = 5, timeout: float = 60.0) -> dict:
    """Classifies one video file through a TF Serving PredictionService stub; the result has
    predict_video's keys."""
    import tensorflow as tf

    if sidecar:
        video = decode(path, sidecar)
    else:
        from tfvid.prep.video import read_video
        video = read_video(path, frame_size=None)
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
    names = (sidecar or {}).get("class_names")
    return _result(path, video.num_frames, views, logits.mean(axis=0), names, top_k)


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
                   timeout: float = 60.0, out=None) -> list[dict]:
    """predict() through TF Serving's gRPC PredictionService at `server` (HOST:PORT)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from tfvid.atomic import atomic_path
    from tfvid.prep.video import VideoError

    if signature not in SERVER_SIGNATURES:
        raise ValueError(f"--signature must be one of {SERVER_SIGNATURES}, got {signature!r}")
    if num_crops not in (1, 3, 10):
        raise ValueError(f"--num_crops must be 1, 3 or 10, got {num_crops}")
    if int(top_k) < 1:
        raise ValueError(f"--top_k must be >= 1, got {top_k}")
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
    out = out or sys.stdout
    results = []
    with server_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for path in videos:
            try:
                result = predict_remote_video(stub, path, sidecar=sidecar,
                                              model_name=model_name, signature=signature,
                                              num_crops=num_crops, top_k=top_k,
                                              timeout=timeout)
            except (VideoError, ValueError, grpc.RpcError) as e:
                text = e.details() if isinstance(e, grpc.RpcError) else str(e)
                msg = text if path in text else f"{path}: {text}"
                print(f"error: {msg}", file=sys.stderr)
                results.append({"video": path, "error": msg})
                continue
            results.append(result)
            print(f"{path} ({result['num_frames']} frames, {result['views']} views, "
                  f"{server} {signature}):", file=out)
            for item in result["top_k"]:
                print(f"  {item['rank']}. {item['label']:<30s} {item['probability']:.4f}",
                      file=out)
    if json_path:
        payload = {"server": server, "model_name": model_name, "signature": signature,
                   "results": results}
        with atomic_path(json_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1)
    return results


def main(argv):
    server = flag_value("server", None)
    if server:
        check_args(argv, "video")
    else:
        check_args(argv, "export_dir", "video")
    try:   # flag_value: this job's default even when evaluate defined --num_crops first
        if server:
            results = predict_remote(server, FLAGS.video, export_dir=FLAGS.export_dir,
                                     model_name=flag_value("model_name", None),
                                     signature=flag_value("signature", "encoded_frames"),
                                     num_crops=int(flag_value("num_crops", 1)),
                                     top_k=FLAGS.top_k, json_path=FLAGS.json,
                                     timeout=float(flag_value("server_timeout", 60.0)))
        else:
            results = predict(FLAGS.export_dir, FLAGS.video,
                              num_crops=int(flag_value("num_crops", 1)), top_k=FLAGS.top_k,
                              json_path=FLAGS.json)
    except (OSError, ValueError) as e:
        # user mistakes (no export, bad sidecar, bad flag, unwritable --json): one line, no
        # traceback, exit status 1
        raise job_error("predict", e) from None
    failed = [r["video"] for r in results if "error" in r]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(results)} videos failed: {', '.join(failed)}")


def run():
    """Console-script entry point (tfvid-predict)."""
    run_job(main)


if __name__ == "__main__":
    run()
