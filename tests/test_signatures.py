"""The in-graph protocol signatures (tfvid.export.signatures): serving_default (uint8 frames),
encoded_frames, sequence_example and clip in ONE SavedModel, called as TF Serving calls them
(a fresh process, PredictRequests through tf.make_tensor_proto / tf.make_ndarray, the warmup
records replayed, saved_model_cli), and the parity of sequence_example with pipelines.evaluate.
"""
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE, CROPS = 32, 10
SIGNATURES = ("clip", "encoded_frames", "sequence_example", "serving_default")
OUTPUTS = ["logits", "probabilities", "top_k_classes", "top_k_indices"]


def records_of(path):
    return list(tf.data.TFRecordDataset(path).as_numpy_iterator())


def decoded(raw, key="image/encoded", channels=3):
    ex = tf.train.SequenceExample.FromString(raw)
    return [f.bytes_list.value[0] for f in ex.feature_lists.feature_list[key].feature]


def video_id(raw):
    return tf.train.SequenceExample.FromString(raw).context.feature["example/id"] \
        .bytes_list.value[0].decode()


@pytest.fixture(scope="module")
def trained(tiny_records, tmp_path_factory):
    """(run dir, export dir, record file): a tiny TSN trained for 2 steps by the train job on
    tiny_records and exported by pipelines.export (25 snippets x 10 crops in the graph)."""
    from pipelines import export as job

    tmp = tmp_path_factory.mktemp("signatures")
    run = str(tmp / "run")
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.train", f"--train_data={tiny_records[0]}",
         f"--model_dir={run}", "--model=tsn", "--backbone=tiny", "--width=0.25",
         f"--input_size={SIZE}", "--num_segments=3", "--batch_size=2", "--steps=2",
         "--lr=0.5", "--noprogress", "--nopartial_bn"],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = job.export(run, export_base=str(tmp / "saved_models"), name="tsn",
                      protocol_crops=CROPS)
    return run, path, tiny_records[0]


def test_signatures_and_sidecar(trained):
    _, path, _ = trained
    from tfvid.export import read_sidecar

    loaded = tf.saved_model.load(path)
    assert sorted(loaded.signatures) == sorted(SIGNATURES)
    specs = {n: loaded.signatures[n].structured_input_signature[1] for n in SIGNATURES}
    assert {k: (v.dtype, v.shape.as_list()) for k, v in specs["serving_default"].items()} == \
        {"rgb": (tf.uint8, [None, None, None, None, 3])}
    assert {k: (v.dtype, v.shape.as_list()) for k, v in specs["encoded_frames"].items()} == \
        {"rgb": (tf.string, [None, None])}
    assert {k: (v.dtype, v.shape.as_list()) for k, v in specs["sequence_example"].items()} == \
        {"examples": (tf.string, [None])}
    assert specs["clip"]["clip"].shape.as_list() == [None, 3, SIZE, SIZE, 3]
    for name in SIGNATURES:
        outs = loaded.signatures[name].structured_outputs
        assert sorted(outs) == OUTPUTS
        assert outs["top_k_indices"].dtype == tf.int32 and outs["top_k_classes"].dtype == \
            tf.string
        assert outs["top_k_classes"].shape.as_list() == [None, 2]     # k = min(5, 2 classes)
    side = read_sidecar(path, loaded.signatures["serving_default"])   # any signature fits
    assert side["serving"]["num_crops"] == CROPS
    assert side["serving"]["inputs"]["rgb"]["sampling"]["test_segments"] == 25
    assert side["serving"]["inputs"]["rgb"]["frame_size"] == [48, 36]
    assert side["signature"]["name"] == "clip" and side["top_k"] == 2
    assert sorted(side["signatures"]) == sorted(SIGNATURES)
    assert side["signatures"]["encoded_frames"]["inputs"]["rgb"] == {"dtype": "string",
                                                                     "shape": [None, None]}


def test_sequence_example_matches_evaluate(trained, tmp_path, capsys):
    """A prepare_data record gives through sequence_example the scores of pipelines.evaluate
    (25 snippets x 10 crops, the default protocol)."""
    from pipelines.evaluate import evaluate_model_dir
    from tfvid.eval.metrics import load_scores

    run, path, records = trained
    evaluate_model_dir(run, records, num_crops=CROPS, output_dir=str(tmp_path / "eval"),
                       progress=False)
    scores = load_scores(str(tmp_path / "eval" / "scores.npz"))
    raw = records_of(records)
    sig = tf.saved_model.load(path).signatures["sequence_example"]
    out = sig(examples=tf.constant(raw))
    order = [[video_id(r) for r in raw].index(i) for i in scores.ids.tolist()]
    logits = out["logits"].numpy()[order]
    diff = float(np.abs(logits - scores.logits).max())
    with capsys.disabled():
        print(f"\nsequence_example vs evaluate: max |logit diff| = {diff:.3g} "
              f"(max |logit| {np.abs(scores.logits).max():.3g}, {len(raw)} records)")
    assert np.abs(scores.logits).max() > 1e-3
    assert diff < 1e-4
    np.testing.assert_array_equal(out["top_k_indices"].numpy()[order][:, 0],
                                  scores.logits.argmax(-1))


def test_frames_and_encoded_frames_agree_with_records(trained):
    """The record's JPEGs through encoded_frames, their pixels through serving_default, and
    the record itself give the same scores; frames of another size are resized first."""
    _, path, records = trained
    sigs = tf.saved_model.load(path).signatures
    raw = records_of(records)[:2]
    jpegs = [decoded(r) for r in raw]
    t = min(len(j) for j in jpegs)              # all rows of a request share T
    jpegs = [j[:t] for j in jpegs]
    base = sigs["sequence_example"](examples=tf.constant([
        _truncated(r, t) for r in raw]))["logits"].numpy()
    enc = sigs["encoded_frames"](rgb=tf.constant(jpegs))
    np.testing.assert_allclose(enc["logits"].numpy(), base, atol=1e-5)
    frames = np.stack([[tf.io.decode_jpeg(f).numpy() for f in j] for j in jpegs])
    assert frames.shape[2:] == (36, 48, 3)
    dec = sigs["serving_default"](rgb=tf.constant(frames))
    np.testing.assert_allclose(dec["logits"].numpy(), base, atol=1e-5)
    np.testing.assert_allclose(dec["probabilities"].numpy().sum(-1), 1.0, atol=1e-6)
    # PNG frames decode to the same pixels
    png = [[tf.io.encode_png(f).numpy() for f in v] for v in frames]
    np.testing.assert_allclose(sigs["encoded_frames"](rgb=tf.constant(png))["logits"].numpy(),
                               base, atol=1e-5)
    # any frame size: resized to the stored 48x36 first (2x: area resize restores the pixels)
    big = np.repeat(np.repeat(frames, 2, axis=2), 2, axis=3)
    np.testing.assert_allclose(sigs["serving_default"](rgb=tf.constant(big))["logits"].numpy(),
                               base, atol=1e-5)
    # an empty batch and shape errors
    empty = sigs["serving_default"](rgb=tf.zeros((0, 4, 20, 20, 3), tf.uint8))
    assert empty["logits"].shape == (0, 2) and empty["top_k_classes"].shape == (0, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="input rgb must be a uint8"):
        sigs["serving_default"](rgb=tf.zeros((1, 0, 20, 20, 3), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError):
        sigs["encoded_frames"](rgb=tf.constant([[b"not an image"]]))


def _truncated(raw, t):
    """The record with only its first t frames (what a client sending t frames means)."""
    from tfvid.data import schema
    ex = tf.train.SequenceExample.FromString(raw)
    ctx = ex.context.feature
    return schema.make_example(
        "x", decoded(raw)[:t], height=int(ctx["image/height"].int64_list.value[0]),
        width=int(ctx["image/width"].int64_list.value[0]), frame_rate=25.0).SerializeToString()


# A fresh process calls each signature as TF Serving does: PredictRequest protos built with
# tf.make_tensor_proto, turned back into tensors with tf.make_ndarray; then replays every
# warmup record through its signature.
CLIENT = r'''
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

path, record_file = sys.argv[1], sys.argv[2]
loaded = tf.saved_model.load(path)
raw = [r for r in tf.data.TFRecordDataset(record_file).as_numpy_iterator()][:2]

def frames_of(r):
    ex = tf.train.SequenceExample.FromString(r)
    return [f.bytes_list.value[0] for f in ex.feature_lists.feature_list["image/encoded"].feature]

t = min(len(frames_of(r)) for r in raw)
jpegs = [frames_of(r)[:t] for r in raw]
pixels = np.stack([[tf.io.decode_jpeg(f).numpy() for f in j] for j in jpegs])
inputs = {
    "encoded_frames": {"rgb": np.array(jpegs, dtype=object)},
    "serving_default": {"rgb": pixels},
    "sequence_example": {"examples": np.array(raw, dtype=object)},
    "clip": {"clip": np.zeros((2, 3, 32, 32, 3), np.float32)},
}

def call(request):
    sig = loaded.signatures[request.model_spec.signature_name]
    specs = sig.structured_input_signature[1]
    feed = {k: tf.constant(tf.make_ndarray(v), dtype=specs[k].dtype)
            for k, v in request.inputs.items()}
    return {k: v.numpy() for k, v in sig(**feed).items()}

result = {"requests": {}, "warmup": []}
for name, values in inputs.items():
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
        name="tsn", signature_name=name))
    for k, v in values.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    out = call(request)
    result["requests"][name] = {k: (v.astype(str).tolist() if v.dtype == object else
                                    v.tolist()) for k, v in out.items()}
warm = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
for raw_log in tf.data.TFRecordDataset(warm).as_numpy_iterator():
    log = prediction_log_pb2.PredictionLog.FromString(raw_log)
    req = log.predict_log.request
    out = call(req)
    rows = {k: int(tf.make_ndarray(v).shape[0]) for k, v in req.inputs.items()}
    result["warmup"].append({"signature": req.model_spec.signature_name, "rows": rows,
                             "out_rows": int(out["logits"].shape[0]),
                             "finite": bool(np.isfinite(out["logits"]).all())})
print("RESULT " + json.dumps(result))
'''


def test_predict_requests_and_warmup_in_a_fresh_process(trained):
    _, path, records = trained
    proc = subprocess.run([sys.executable, "-c", CLIENT, path, records], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    req = result["requests"]
    assert sorted(req) == sorted(SIGNATURES)
    for name in ("encoded_frames", "serving_default"):
        np.testing.assert_allclose(req[name]["logits"], req["encoded_frames"]["logits"],
                                   atol=1e-5)
    for name in SIGNATURES:
        out = req[name]
        assert np.array(out["logits"]).shape == (2, 2)
        assert np.array(out["top_k_indices"]).shape == (2, 2)
        best = np.argmax(out["logits"], axis=-1)
        assert [row[0] for row in out["top_k_indices"]] == best.tolist()
        names = json.load(open(os.path.join(path, "assets.extra", "tfvid.json")))["class_names"]
        assert [row[0] for row in out["top_k_classes"]] == [names[i] for i in best]
    warm = result["warmup"]
    assert 0 < len(warm) <= 1000
    assert {w["signature"] for w in warm} == set(SIGNATURES)      # every signature warmed up
    for w in warm:
        assert w["finite"] and w["out_rows"] == next(iter(w["rows"].values())), w
    size = os.path.getsize(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
    assert size < 200_000


def test_saved_model_cli_lists_every_signature(trained):
    _, path, _ = trained
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    cmd = [cli] if os.path.exists(cli) else [sys.executable, "-m",
                                             "tensorflow.python.tools.saved_model_cli"]
    proc = subprocess.run([*cmd, "show", "--all", "--dir", path], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    blocks = {}
    for part in text.split("signature_def['")[1:]:
        blocks[part.split("'")[0]] = part
    for name in SIGNATURES:
        assert name in blocks, sorted(blocks)
        for out in OUTPUTS:
            assert f"outputs['{out}']" in blocks[name]
        assert "dtype: DT_INT32" in blocks[name] and "dtype: DT_STRING" in blocks[name]
    assert "inputs['rgb'] tensor_info:\n        dtype: DT_UINT8" in blocks["serving_default"]
    assert "inputs['rgb'] tensor_info:\n        dtype: DT_STRING" in blocks["encoded_frames"]
    assert "inputs['examples'] tensor_info:\n        dtype: DT_STRING" in \
        blocks["sequence_example"]
    assert "inputs['clip'] tensor_info:\n        dtype: DT_FLOAT" in blocks["clip"]


# --------------------------------------------------------------------------- a flow run
def flow_record(seed, n=9, h=36, w=48):
    from tfvid.data import schema
    rng = np.random.default_rng(seed)
    rgb = [tf.io.encode_jpeg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).numpy()
           for _ in range(n)]
    fx = [tf.io.encode_jpeg(rng.integers(0, 255, (h, w, 1), dtype=np.uint8)).numpy()
          for _ in range(n - 1)]
    fy = [tf.io.encode_jpeg(rng.integers(0, 255, (h, w, 1), dtype=np.uint8)).numpy()
          for _ in range(n - 1)]
    return schema.make_example(f"f{seed}", rgb, height=h, width=w, frame_rate=25.0,
                               label_index=0, flow_x=fx, flow_y=fy), fx, fy


def test_flow_run_takes_8bit_xy_flow(tmp_path):
    """A flow TSN: serving_default takes uint8 (B, T, H, W, 2) x/y flow, encoded_frames
    (B, T, 2) JPEG pairs; both agree with sequence_example on the record and with the Keras
    model on preprocess_video's views."""
    from pipelines import export as job
    from tfvid import models
    from tfvid.data import sampling
    from tfvid.data.pipeline import preprocess_video

    keras.utils.set_random_seed(0)
    model = models.build("tsn", 3, backbone="tiny", width=0.25, input_size=SIZE,
                         num_segments=3, modality="flow", new_length=2)
    fc = model.get_layer("fc")
    rng = np.random.default_rng(0)
    fc.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in fc.get_weights()])
    data = tmp_path / "data"
    data.mkdir()
    record, fx, fy = flow_record(1)
    train_file = str(data / "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(train_file) as wr:
        wr.write(record.SerializeToString())
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps({
        "model": "tsn", "backbone": "tiny", "modality": "flow", "width": 0.25,
        "input_size": SIZE, "num_segments": 3, "new_length": 2, "consensus": "avg",
        "num_classes": 3, "class_names": ["a", "b", "c"], "train_data": train_file}))
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(run), 1).save()
    path = job.export(str(run), export_base=str(tmp_path / "sm"), protocol_crops=1,
                      protocol_segments=4)
    sigs = tf.saved_model.load(path).signatures
    assert sigs["serving_default"].structured_input_signature[1]["flow"].shape.as_list() == \
        [None, None, None, None, 2]
    assert sigs["encoded_frames"].structured_input_signature[1]["flow"].shape.as_list() == \
        [None, None, 2]
    base = sigs["sequence_example"](examples=tf.constant([record.SerializeToString()]))
    pairs = np.array([list(zip(fx, fy))], dtype=object)
    enc = sigs["encoded_frames"](flow=tf.constant(pairs))
    x = np.stack([tf.io.decode_jpeg(f).numpy()[..., 0] for f in fx])
    y = np.stack([tf.io.decode_jpeg(f).numpy()[..., 0] for f in fy])
    dec = sigs["serving_default"](flow=tf.constant(np.stack([x, y], -1)[None]))
    sampler = sampling.get_sampler(name="tsn", num_segments=3, new_length=2, test_segments=4)
    views = preprocess_video(None, flow_x=x, flow_y=y, sampler=sampler, modality="flow",
                             input_size=SIZE, backbone="tiny", num_crops=1)
    variable = models.build("tsn", 3, backbone="tiny", width=0.25, input_size=SIZE,
                            num_segments=None, modality="flow", new_length=2)
    variable.set_weights(model.get_weights())
    want = keras.ops.convert_to_numpy(variable(views, training=False)).mean(0)
    for out in (base, enc, dec):
        np.testing.assert_allclose(out["logits"].numpy()[0], want, atol=1e-5)
    assert np.abs(want).max() > 1e-2
