"""Serving and sidecars as a user meets them: the export loaded in a fresh process and called
like TF Serving calls it (wrong shapes, empty batches, non-finite clips), the one sidecar
reader (tfvid.export.read_sidecar) in predict / convert_tflite, export permissions, TFLite T
from a dynamic-image export's sampler, and one-line usage errors of the command-line jobs."""
import json
import os
import re
import shutil
import stat
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from test_export import CLASSES, SIZE, make_run_dir, tiny_tsn  # noqa: E402
from tfvid.export import (SidecarError, export_saved_model, load_export,  # noqa: E402
                          read_sidecar)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXED = "(B, 3, 32, 32, 3)"

# Runs in a fresh process: loads the export with tf.saved_model.load and calls the signature
# (1) as a Python client does and (2) like TF Serving does: a TF1 session over the MetaGraph,
# feeding the signature's input tensor by name without any client-side shape check.
CLIENT = r'''
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import tensorflow as tf

path, cases = sys.argv[1], json.loads(sys.argv[2])

def make(case):
    x = np.zeros(case["shape"], np.float32)
    if case.get("fill") is not None and x.size:
        x.flat[0] = float(case["fill"])
    return x

def outcome(fn):
    try:
        return {"rows": list(fn())}
    except Exception as e:   # InvalidArgumentError from the in-graph checks
        return {"error": type(e).__name__, "message": str(e)}

sig = tf.saved_model.load(path).signatures["clip"]
eager = {c["id"]: outcome(lambda: sig(clip=tf.constant(make(c)))["probabilities"].shape)
         for c in cases}
session = {}
try:
    from tensorflow.python.client import pywrap_tf_session as tf_session
except ImportError:
    tf_session = None
if tf_session is not None:
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sd = meta.signature_def["clip"]
        inp = graph.get_tensor_by_name(sd.inputs["clip"].name)
        out = graph.get_tensor_by_name(sd.outputs["probabilities"].name)
        def run(c):
            return tf_session.TF_SessionRun_wrapper(
                sess._session, None, {inp._as_tf_output(): make(c)}, [out._as_tf_output()], [],
                None)[0].shape
        session = {c["id"]: outcome(lambda: run(c)) for c in cases}
print("RESULT " + json.dumps({"eager": eager, "session": session}))
'''

CASES = [
    {"id": "ok", "shape": [2, 3, SIZE, SIZE, 3]},
    {"id": "spatial_64", "shape": [2, 3, 64, 64, 3]},
    {"id": "rank4", "shape": [3, SIZE, SIZE, 3]},
    {"id": "rank6", "shape": [2, 2, 3, SIZE, SIZE, 3]},
    {"id": "rank6_trailing", "shape": [2, 3, SIZE, SIZE, 3, 1]},
    {"id": "wrong_t", "shape": [2, 5, SIZE, SIZE, 3]},
    {"id": "wrong_c", "shape": [2, 3, SIZE, SIZE, 4]},
    {"id": "empty", "shape": [0, 3, SIZE, SIZE, 3]},
    {"id": "inf", "shape": [1, 3, SIZE, SIZE, 3], "fill": "inf"},
    {"id": "nan", "shape": [2, 3, SIZE, SIZE, 3], "fill": "nan"},
]


def call_in_fresh_process(path, cases):
    proc = subprocess.run([sys.executable, "-c", CLIENT, path, json.dumps(cases)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def job_export(tmp_path_factory):
    """(model, export version dir) of a tiny TSN exported by pipelines.export (full sidecar)."""
    from pipelines import export as job

    tmp = tmp_path_factory.mktemp("serving")
    model = tiny_tsn()
    run = make_run_dir(tmp, model)
    return model, job.export(run, export_base=str(tmp / "saved_models"), name="tiny")


def copy_export(path, tmp_path, name="copy"):
    """A copy of an export version dir (saved_models/<name>/1) to break its sidecar."""
    target = tmp_path / name / "1"
    shutil.copytree(path, target)
    return str(target)


def write_sidecar(path, text):
    with open(os.path.join(path, "assets.extra", "tfvid.json"), "w", encoding="utf-8") as f:
        f.write(text)


def edit_sidecar(path, **changes):
    file = os.path.join(path, "assets.extra", "tfvid.json")
    data = json.load(open(file, encoding="utf-8"))
    data.update(changes)
    write_sidecar(path, json.dumps(data))
    return file


# ---------------------------------------------------------------- 1. signature input checks
def test_signature_rejects_wrong_shapes_in_a_fresh_process(job_export):
    """Before: a batch of 2 at 64x64 gave 8 rows, a rank-4 (3, 32, 32, 3) input 1 row, a rank-6
    (2, 2, 3, 32, 32, 3) input 4 rows; B=0 failed inside a batchnorm; Inf/NaN gave NaN
    probabilities."""
    _, path = job_export
    spec = tf.saved_model.load(path).signatures["clip"] \
        .structured_input_signature[1]["clip"]
    assert spec.shape.as_list() == [None, 3, SIZE, SIZE, 3]     # static T, S, S, C
    result = call_in_fresh_process(path, CASES)
    routes = {"eager": result["eager"]}
    if result["session"]:
        routes["session"] = result["session"]
    for route, got in routes.items():
        assert got["ok"] == {"rows": [2, 5]}, route
        assert got["empty"] == {"rows": [0, 5]}, route
        for case, shape in [("spatial_64", "[2 3 64 64 3]"), ("rank4", "[3 32 32 3]"),
                            ("rank6", "[2 2 3 32 32 3]"), ("rank6_trailing", "[2 3 32 32 3 1]"),
                            ("wrong_t", "[2 5 32 32 3]"), ("wrong_c", "[2 3 32 32 4]")]:
            assert "rows" not in got[case], (route, case, got[case])
            assert got[case]["error"] == "InvalidArgumentError", (route, case)
            message = got[case]["message"]
            assert f"input clip must be a float32 tensor of shape {FIXED}" in message, message
            assert f"got shape] {shape}" in message, (route, case, message)
        for case in ("inf", "nan"):
            assert got[case].get("error") == "InvalidArgumentError", (route, case, got[case])
            assert "input clip has non-finite values (Inf or NaN)" in got[case]["message"]


def test_variable_time_signature(tmp_path):
    model = tiny_tsn(num_segments=None)
    path = export_saved_model(model, str(tmp_path), "var", clip_shape=(None, SIZE, SIZE, 3),
                              sidecar={"class_names": CLASSES}, warmup=False)
    sig = tf.saved_model.load(path).signatures["serving_default"]
    assert sig.structured_input_signature[1]["clip"].shape.as_list() == [None, None, SIZE,
                                                                         SIZE, 3]
    assert sig(clip=tf.zeros((2, 5, SIZE, SIZE, 3)))["logits"].shape == (2, 5)
    assert sig(clip=tf.zeros((0, 4, SIZE, SIZE, 3)))["logits"].shape == (0, 5)
    for shape, text in [((2, 0, SIZE, SIZE, 3), "[2 0 32 32 3]"),
                        ((1, 4, 16, 16, 3), "[1 4 16 16 3]")]:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"shape \(B, T, 32, 32, 3\) \(B >= 0 clips of T >= 1 time "
                                 r"steps.*got shape\] " + re.escape(text)):
            sig(clip=tf.zeros(shape))


def test_loaded_export_rows_match_the_batch(job_export):
    """LoadedExport (pipelines.predict's route) returns one row per clip and rejects others."""
    model, path = job_export
    serving, _ = load_export(path)
    x = np.random.default_rng(0).normal(size=(3, 3, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(serving(x)["logits"].numpy(),
                               model(x, training=False).numpy(), atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(FIXED)):
        serving(np.zeros((2, 3, 64, 64, 3), np.float32))


# ------------------------------------------------------------------- 2. the sidecar reader
def test_read_sidecar_checks_fields_and_names_the_file(job_export, tmp_path):
    _, path = job_export
    serving, sidecar = load_export(path)
    assert read_sidecar(path, serving.signature) == sidecar
    copy = copy_export(path, tmp_path)
    file = os.path.join(copy, "assets.extra", "tfvid.json")
    good = open(file, encoding="utf-8").read()

    write_sidecar(copy, '{"class_names": ["a", ')                       # corrupt
    with pytest.raises(SidecarError, match=re.escape(file) + ".*not valid JSON"):
        read_sidecar(copy)
    write_sidecar(copy, "{}")
    with pytest.raises(SidecarError, match=re.escape(file) + ".*missing fields 'format', "
                                           "'num_classes', 'signature'"):
        read_sidecar(copy)
    write_sidecar(copy, "[1, 2]")
    with pytest.raises(SidecarError, match="expected a JSON object"):
        read_sidecar(copy)

    contradictions = [
        ({"input_shape": [None, 3, 64, 64, 3]}, "'input_shape' .*contradicts the signature"),
        ({"class_names": CLASSES[:3]}, "'class_names' has 3 class names but 'num_classes' is 5"),
        ({"sampling": {"name": "tsn", "num_segments": 3, "new_length": 1,
                       "test_segments": 25}}, "'sampling' .*T=25 .*signature's input has T=3"),
        ({"sampling": {"name": "nope"}}, "'sampling' .*does not describe a sampler"),
        ({"preprocessing": {"modality": "rgb", "input_size": 224, "backbone": "tiny"}},
         "'preprocessing'.input_size 224 contradicts .*S=32"),
        ({"format": 99}, "'format' 99"),
    ]
    for change, pattern in contradictions:
        write_sidecar(copy, good)
        edit_sidecar(copy, **change)
        with pytest.raises(SidecarError, match=re.escape(file) + ": " + pattern):
            read_sidecar(copy)
    # contradicting the loaded signature: the sidecar's signature and num_classes
    write_sidecar(copy, good)
    data = json.loads(good)
    data["num_classes"] = 4
    data["class_names"] = CLASSES[:4]
    for key in ("logits", "probabilities"):
        data["signature"]["outputs"][key]["shape"] = [None, 4]
    write_sidecar(copy, json.dumps(data))
    read_sidecar(copy)                                       # consistent in itself
    with pytest.raises(SidecarError, match="'num_classes' 4 contradicts the signature.* 5 "):
        load_export(copy)
    data = json.loads(good)
    data["signature"]["inputs"]["clip"]["shape"] = [None, 3, 64, 64, 3]
    data["input_shape"] = [None, 3, 64, 64, 3]
    write_sidecar(copy, json.dumps(data))
    with pytest.raises(SidecarError, match="'signature.inputs.clip'.shape .*contradicts"):
        load_export(copy)
    os.remove(file)
    with pytest.raises(FileNotFoundError, match=re.escape(file)):
        read_sidecar(copy)


def test_export_refuses_a_contradicting_sidecar(tmp_path):
    model = tiny_tsn()
    with pytest.raises(SidecarError, match="'input_shape' .*contradicts"):
        export_saved_model(model, str(tmp_path), "m", clip_shape=(3, SIZE, SIZE, 3),
                           sidecar={"input_shape": [None, 5, SIZE, SIZE, 3]}, warmup=False)
    with pytest.raises(SidecarError, match="'sampling'"):
        export_saved_model(model, str(tmp_path), "m", clip_shape=(3, SIZE, SIZE, 3),
                           sidecar={"sampling": {"name": "uniform", "num_frames": 8}},
                           warmup=False)
    assert not os.path.exists(tmp_path / "m") or os.listdir(tmp_path / "m") == []


def test_predict_with_a_bad_sidecar_names_the_file(job_export, tmp_path):
    """Before: predict with {} as sidecar raised KeyError."""
    from pipelines import predict

    _, path = job_export
    copy = copy_export(path, tmp_path)
    file = os.path.join(copy, "assets.extra", "tfvid.json")
    write_sidecar(copy, "{}")
    with pytest.raises(ValueError, match=re.escape(file) + ".*missing fields"):
        predict.predict(copy, ["any.mp4"])
    data = json.loads(open(os.path.join(path, "assets.extra", "tfvid.json")).read())
    data.pop("sampling")
    write_sidecar(copy, json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(file) + ".*missing field 'sampling'"):
        predict.predict(copy, ["any.mp4"])
    data = json.loads(open(os.path.join(path, "assets.extra", "tfvid.json")).read())
    del data["preprocessing"]["backbone"]
    write_sidecar(copy, json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(file) + ".*'preprocessing' lacks 'backbone'"):
        predict.predict(copy, ["any.mp4"])


def test_convert_tflite_needs_a_valid_sidecar(job_export, tmp_path):
    """Before: no sidecar converted silently (null preprocessing); a corrupt one gave a bare
    JSON error; a contradicting one was copied into the report."""
    from pipelines import convert_tflite as job

    _, path = job_export
    copy = copy_export(path, tmp_path)
    file = os.path.join(copy, "assets.extra", "tfvid.json")
    out = str(tmp_path / "x.tflite")
    os.remove(file)
    with pytest.raises(FileNotFoundError, match=re.escape(file)):
        job.convert(copy, output=out, parity_samples=1)
    write_sidecar(copy, "not json")
    with pytest.raises(ValueError, match=re.escape(file) + ".*not valid JSON"):
        job.convert(copy, output=out, parity_samples=1)
    good = open(os.path.join(path, "assets.extra", "tfvid.json")).read()
    write_sidecar(copy, good)
    edit_sidecar(copy, class_names=["a", "b"])
    with pytest.raises(ValueError, match=re.escape(file) + ".*'class_names' has 2"):
        job.convert(copy, output=out, parity_samples=1)
    assert not os.path.exists(out)
    with pytest.raises(ValueError, match="--batch_size must be >= 1"):
        job.convert(path, output=out, batch_size=0)


# ------------------------------------------------------------------------ 3. permissions
def _modes(root):
    out = {}
    for folder, dirs, files in os.walk(root):
        out[folder] = stat.S_IMODE(os.stat(folder).st_mode)
        for f in files:
            out[os.path.join(folder, f)] = stat.S_IMODE(os.stat(os.path.join(folder, f)).st_mode)
    return out


def test_export_and_tflite_are_readable_by_others(tmp_path):
    """Before: the version folder was 0700 (tempfile.mkdtemp): TF Serving as another user
    could not read it."""
    from pipelines import convert_tflite as job

    old = os.umask(0o022)
    try:
        path = export_saved_model(tiny_tsn(), str(tmp_path / "sm"), "perm",
                                  clip_shape=(3, SIZE, SIZE, 3),
                                  sidecar={"class_names": CLASSES})
        report = job.convert(path, parity_samples=1)
    finally:
        os.umask(old)
    modes = _modes(path)
    assert len(modes) > 5
    for p, mode in modes.items():
        assert mode == (0o755 if os.path.isdir(p) else 0o644), (p, oct(mode))
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755
    for p in (report["tflite"], report["tflite"] + ".json"):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644, p


# ------------------------------------------------------ 4. TFLite T from a dynamic-image export
def test_convert_tflite_takes_t_from_the_mdi_sampler(tmp_path):
    """Before: 'the export's time axis T is variable: give time_steps (--time_steps)'."""
    from test_four_stream import stream_model, write_run

    from pipelines import convert_tflite as job
    from pipelines import export as export_job
    from tfvid.export.tflite import TFLiteModel

    model = stream_model("di", 1)
    run = write_run({"di": model}, "di", tmp_path)
    path = export_job.export(run, export_base=str(tmp_path / "sm"), warmup=False)
    sidecar = read_sidecar(path)
    assert sidecar["sampling"]["name"] == "mdi" and sidecar["input_shape"][1] is None
    assert job.sidecar_time_steps(sidecar) == 10                       # max_windows
    report = job.convert(path, parity_samples=1)
    assert report["input_shape"] == [1, 10, 32, 32, 30]
    assert "max_windows" in report["time_steps_source"]
    assert report["parity"]["max_abs_diff"] < 1e-4
    assert report["sampling"]["name"] == "mdi" and report["class_names"] == ["a", "b", "c"]
    lite = TFLiteModel(report["tflite"])
    x = np.random.default_rng(0).normal(size=lite.input_shape).astype("float32")
    np.testing.assert_allclose(lite(x)["logits"], model(x, training=False).numpy(), atol=1e-4)
    # --time_steps still wins
    report = job.convert(path, output=str(tmp_path / "w4.tflite"), time_steps=4,
                         parity_samples=1)
    assert report["input_shape"] == [1, 4, 32, 32, 30]
    assert report["time_steps_source"] == "--time_steps"


def test_sidecar_time_steps_rule():
    from pipelines.convert_tflite import sidecar_time_steps

    assert sidecar_time_steps({}) is None
    assert sidecar_time_steps({"sampling": {"name": "mdi", "max_windows": 7}}) == 7
    assert sidecar_time_steps({"sampling": {"name": "sdi", "frames": 8}}) == 1
    assert sidecar_time_steps({"sampling": {"name": "tsn", "test_segments": 25}}) == 25
    assert sidecar_time_steps({"sampling": {"name": "stnet", "num_segments": 7,
                                            "test_segments": 25, "min_segments": 7}}) == 25


# ------------------------------------------------------------ usage errors, fresh processes
def run_job(module, *args):
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    return proc.returncode, proc.stderr


def assert_one_line_error(rc, err, *needles):
    assert rc != 0
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, (needle, last)


def test_jobs_give_one_line_usage_errors(job_export, tmp_path):
    _, path = job_export
    copy = copy_export(path, tmp_path)
    file = os.path.join(copy, "assets.extra", "tfvid.json")
    write_sidecar(copy, "{}")
    rc, err = run_job("pipelines.convert_tflite", f"--export_dir={copy}")
    assert_one_line_error(rc, err, "convert_tflite failed", file, "missing fields")
    rc, err = run_job("pipelines.convert_tflite", f"--export_dir={path}", "--batch_size=0")
    assert_one_line_error(rc, err, "convert_tflite failed", "--batch_size must be >= 1")
    rc, err = run_job("pipelines.predict", f"--export_dir={copy}", "--video=a.mp4")
    assert_one_line_error(rc, err, "predict failed", file, "missing fields")
    missing = str(tmp_path / "no_run")
    rc, err = run_job("pipelines.export", f"--model_dir={missing}",
                      f"--export_base={tmp_path / 'sm'}")
    assert_one_line_error(rc, err, "export failed", "no_run")
    rc, err = run_job("pipelines.export_four_stream", f"--si_dir={missing}", "--di_dir=x",
                      "--of_dir=y", "--dof_dir=z", f"--export_base={tmp_path / 'sm'}")
    assert_one_line_error(rc, err, "export_four_stream failed", "no_run")
