"""pipelines.predict --server: requests to TF Serving's gRPC PredictionService, tested against
an in-process gRPC server whose servicer serves the export with tf.saved_model.load (what
TF Serving does with the SavedModel; the server binary is not installable here)."""
import os
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

grpc = pytest.importorskip("grpc")
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from test_export import CLASSES, make_run_dir, tiny_tsn  # noqa: E402

W, H = 64, 48


class SavedModelServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict() of TF Serving over one SavedModel: inputs via tf.make_ndarray, the named
    signature, outputs via tf.make_tensor_proto."""

    def __init__(self, path, name):
        self.loaded = tf.saved_model.load(path)
        self.name = name
        self.requests = []

    def Predict(self, request, context):
        self.requests.append((request.model_spec.signature_name, request.ByteSize()))
        if request.model_spec.name != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"Servable not found for request: Latest({request.model_spec.name})")
        name = request.model_spec.signature_name or "serving_default"
        if name not in self.loaded.signatures:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"Serving signature name: \"{name}\" not found in signature def")
        sig = self.loaded.signatures[name]
        specs = sig.structured_input_signature[1]
        try:
            out = sig(**{k: tf.constant(tf.make_ndarray(v), dtype=specs[k].dtype)
                         for k, v in request.inputs.items()})
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e)[:2000])
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for k, v in out.items():
            response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
        return response


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(export path, video path, servicer, 'localhost:PORT') with the gRPC server running."""
    from pipelines import export as job
    from tfvid.prep.video import write_video

    tmp = tmp_path_factory.mktemp("grpc")
    model = tiny_tsn(seed=3)
    run = make_run_dir(tmp, model, frame_size=(W, H))
    path = job.export(run, export_base=str(tmp / "saved_models"), name="tiny",
                      protocol_crops=1, warmup=False)
    rng = np.random.default_rng(0)
    t = np.arange(30)[:, None, None, None]
    frames = (rng.integers(0, 256, (1, H, W, 3)) + 7 * t) % 256
    video = write_video(str(tmp / "clip.mp4"), frames.astype(np.uint8), fps=25)
    servicer = SavedModelServicer(path, "tiny")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    yield path, video, servicer, f"localhost:{port}"
    server.stop(None)


def local_protocol_logits(path, video):
    """The same video through the export loaded here (encoded_frames, as the server does)."""
    from tfvid.eval import predict
    from tfvid.export import load_export

    serving, sidecar = load_export(path)
    frames = predict.decode(video, sidecar).frames
    jpegs = [tf.io.encode_jpeg(f, quality=95).numpy() for f in frames]
    return serving.call("encoded_frames", rgb=[jpegs])["logits"].numpy()[0], frames


def test_predict_server_encoded_frames_default(served, tmp_path, capsys):
    from tfvid.eval import remote as predict

    path, video, servicer, address = served
    before = len(servicer.requests)
    results = predict.predict_remote(address, [video], export_dir=path, top_k=2,
                                     json_path=str(tmp_path / "p.json"))
    assert servicer.requests[before][0] == "encoded_frames"
    assert servicer.requests[before][1] < 4 * 1024 * 1024
    want, frames = local_protocol_logits(path, video)
    np.testing.assert_allclose(results[0]["logits"], want, atol=1e-5)
    assert results[0]["top_k"][0]["label"] == CLASSES[int(np.argmax(want))]
    assert results[0]["num_frames"] == 30 and len(results[0]["top_k"]) == 2
    assert "encoded_frames" in capsys.readouterr().out
    # one record of the same JPEGs (sequence_example) gives the same; the uint8 frames
    # (serving_default) what the export gives them here (JPEG is lossy: other pixels)
    from tfvid.export import load_export
    raw = load_export(path)[0].call("serving_default", rgb=frames[None])["logits"].numpy()[0]
    for signature, expected in (("sequence_example", want), ("serving_default", raw)):
        got = predict.predict_remote(address, [video], export_dir=path, signature=signature)
        assert servicer.requests[-1][0] == signature
        np.testing.assert_allclose(got[0]["logits"], expected, atol=1e-5)


def test_predict_server_clip_matches_local_predict(served):
    """--signature=clip: views preprocessed by the client, as the local route."""
    from tfvid.eval import predict
    from tfvid.eval.remote import predict_remote
    from tfvid.export import load_export

    path, video, _, address = served
    remote = predict_remote(address, [video], export_dir=path, signature="clip",
                                    num_crops=3)
    serving, sidecar = load_export(path)
    local = predict.predict_video(serving, sidecar, video, num_crops=3)
    np.testing.assert_allclose(remote[0]["logits"], local["logits"], atol=1e-5)
    assert remote[0]["views"] == 3


def test_predict_server_errors_and_main(served, tmp_path, capsys):
    from absl import flags
    from absl.testing import flagsaver
    from pipelines import predict as job
    from tfvid.eval import remote as predict

    path, video, _, address = served
    bad = predict.predict_remote(address, [video], model_name="nope")
    assert "error" in bad[0] and "Servable not found" in bad[0]["error"]
    missing = predict.predict_remote(address, [str(tmp_path / "gone.mp4")], export_dir=path)
    assert "gone.mp4" in missing[0]["error"]
    with pytest.raises(ValueError, match="--model_name"):
        predict.predict_remote(address, [video])
    with pytest.raises(ValueError, match="HOST:PORT"):
        predict.predict_remote("nowhere", [video], model_name="tiny")
    # without the export at hand: --model_name, frames at their source size
    alone = predict.predict_remote(address, [video], model_name="tiny")
    want, _ = local_protocol_logits(path, video)
    np.testing.assert_allclose(alone[0]["logits"], want, atol=1e-4)
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    capsys.readouterr()
    with flagsaver.flagsaver(server=address, export_dir=path, video=[video], top_k=1,
                             json=None, signature="encoded_frames", model_name=None):
        job.main(["predict"])
    assert "1. " in capsys.readouterr().out
