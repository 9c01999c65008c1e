"""Model specs (tfvid.models.spec): one spec per model, read by the train and evaluate jobs.

A toy model registered here, in the test module, goes through pipelines.train,
pipelines.evaluate and the export with no edit in pipelines/, tfvid/train/ or tfvid/export/.
Jobs started as processes import the modules named in TFVID_PLUGINS first (their specs
register when imported)."""
import dataclasses
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import pytest

from tfvid import models
from tfvid.data import sampling
from tfvid.models import spec as model_specs
from tfvid.train import run_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILTIN = ("tsn", "stnet", "dynamic_image", "din", "videomap")


# ------------------------------------------------------------------------- the toy model
@models.model_spec(
    "toy_conv3d", modalities=("rgb",), time_arg="num_frames", default_time=4,
    sampler="uniform", test_segments=None, test_crops=1, recorded_args=("input_size",
                                                                       "toy_filters"),
    flags={"toy_filters": ("integer", 4, "Filters of the toy Conv3D model.")})
def build_toy_conv3d(num_classes, *, num_frames=4, input_size=32, toy_filters=4, weights=None):
    """A tiny Conv3D net on (B, T, S, S, 3) frames."""
    inputs = keras.Input((num_frames, input_size, input_size, 3), name="frames")
    x = keras.layers.Conv3D(toy_filters, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name="toy_conv3d")


# ------------------------------------------------------------------------------ the specs
@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_model_has_a_consistent_spec(name):
    spec = models.get_spec(name)
    assert spec.name == name and spec.builder is models.MODELS[name]
    params = inspect.signature(spec.builder).parameters
    assert set(spec.recorded_args) <= set(params), set(spec.recorded_args) - set(params)
    assert "weights" in params                       # the train job passes weights=
    if spec.time_arg is not None:                    # default_time is the builder's default T
        assert params[spec.time_arg].default == spec.default_time
    assert spec.sampler in sampling.SAMPLERS
    assert spec.input_kind in model_specs.INPUT_KINDS
    assert set(spec.streams.values()) <= set(spec.modalities)
    assert spec.test_crops in (1, 3, 10)
    for flag, (kind, default, text) in spec.flags.items():
        assert model_specs.flag_kind(kind)[0] in ("string", "integer", "float", "bool", "enum")
        assert text
    # the sampler built from a minimal run config fits the spec
    cfg = {"model": name, "num_classes": 3, "backbone": "tiny"}
    sampler = run_dir.sampler_from_config(cfg, "train")
    assert sampler.name == spec.sampler
    if spec.default_time is not None:
        assert run_dir.sampler_from_config({**cfg, "num_segments": spec.default_time},
                                           "train").num_steps("train") == spec.default_time


def test_every_model_in_the_registry_has_a_spec():
    assert set(BUILTIN) <= set(models.MODELS)
    for name in models.MODELS:
        assert models.get_spec(name).builder is models.MODELS[name]


def test_paper_test_protocols():
    proto = {n: models.get_spec(n).test_protocol({"backbone": "tiny"}) for n in BUILTIN}
    assert proto["tsn"] == (25, 10)                  # 25 snippets x 10 crops
    assert proto["stnet"] == (25, 1)                 # T = 25, one centre crop
    assert proto["dynamic_image"] == (None, 1)       # MDI windows over the video, one crop
    din = models.get_spec("din")
    assert din.input_kind_of({"backbone": "none"}) == "features"
    assert din.input_kind_of({"backbone": "tiny"}) == "frames"
    assert din.test_protocol({"backbone": "none"})[1] == 1      # cached features: one view
    stnet = {"model": "stnet", "num_classes": 3, "num_segments": 7}
    assert run_dir.sampler_from_config(stnet, "test").test_segments == 25
    assert models.get_spec("dynamic_image").streams == {"si": "rgb", "di": "rgb",
                                                        "of": "flow", "dof": "flow"}


def test_stnet_test_view_is_the_unscaled_256_centre():
    """StNet's official test reader: a 256 x 256 centre crop of the 340 x 256 frame, not
    rescaled, at 256 into the weights trained at 224; TSN keeps its training side."""
    from tfvid.eval.run_protocol import default_protocol
    stnet = {"model": "stnet", "num_classes": 3, "num_segments": 7, "input_size": 224,
             "backbone": "resnet50", "modality": "rgb"}
    proto = default_protocol(stnet)
    assert (proto.input_size, proto.scale_size, proto.num_crops) == (256, 256, 1)
    assert models.get_spec("stnet").augmentation == "random_crop_flip"
    tsn = {"model": "tsn", "num_classes": 3, "num_segments": 3, "input_size": 224,
           "backbone": "bninception", "modality": "rgb"}
    proto = default_protocol(tsn)
    assert (proto.input_size, proto.num_crops) == (224, 10)
    assert proto.scale_size in (None, 256)
    assert models.get_spec("tsn").augmentation == "multiscale_crop_flip"


def test_builder_kwargs_come_from_the_spec():
    din = {"model": "din", "num_classes": 3, "backbone": "none", "num_segments": 16,
           "feature_dim": 64, "consensus": "avg", "modality": "rgb"}
    kw = run_dir.builder_kwargs(din)
    assert kw["num_frames"] == 16 and kw["backbone"] is None and kw["feature_dim"] == 64
    assert "consensus" not in kw and "num_segments" not in kw
    stnet = {"model": "stnet", "num_classes": 3, "modality": "rgb", "partial_bn": True,
             "num_segments": 7, "frames_per_segment": 5}
    assert run_dir.builder_kwargs(stnet, num_segments=None) == {
        "num_segments": None, "frames_per_segment": 5}
    with pytest.raises(ValueError, match="no time length"):
        run_dir.builder_kwargs({"model": "dynamic_image", "num_classes": 3}, num_segments=5)


def test_spec_validation_and_registry():
    with pytest.raises(ValueError, match="input_kind"):
        model_specs.ModelSpec("bad", build_toy_conv3d, input_kind="pixels")
    with pytest.raises(ValueError, match="stream"):
        model_specs.ModelSpec("bad", build_toy_conv3d, modalities=("rgb",),
                              streams={"a": "rgb"})
    with pytest.raises(TypeError):
        model_specs.register("not a spec")
    with pytest.raises(ValueError, match="known models"):
        models.get_spec("no_such_model")
    # a builder registered the old way gets a generic spec
    try:
        models.register_model("plain_for_test", build_toy_conv3d)
        plain = models.get_spec("plain_for_test")
        assert plain.input_kind == "frames" and plain.time_arg is None
    finally:
        models.MODELS.pop("plain_for_test", None)
        model_specs.SPECS.pop("plain_for_test", None)


def test_load_plugins_imports_the_named_modules(tmp_path, monkeypatch):
    (tmp_path / "tfvid_plugin_for_test.py").write_text(textwrap.dedent("""
        from tfvid.models import model_spec

        @model_spec("plugin_for_test", modalities=("rgb",), time_arg=None)
        def build(num_classes, *, weights=None):
            raise NotImplementedError
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(model_specs.PLUGINS_ENV, " tfvid_plugin_for_test ,")
    try:
        assert model_specs.load_plugins() == ["tfvid_plugin_for_test"]
        assert models.get_spec("plugin_for_test").modalities == ("rgb",)
    finally:
        models.MODELS.pop("plugin_for_test", None)
        model_specs.SPECS.pop("plugin_for_test", None)
        sys.modules.pop("tfvid_plugin_for_test", None)


def test_plugin_flags_reach_the_train_job_process(tmp_path):
    """TFVID_PLUGINS=<module>: the train job (a fresh process) defines the plugin's flags."""
    (tmp_path / "tfvid_cli_plugin.py").write_text(textwrap.dedent("""
        from tfvid.models import model_spec

        @model_spec("cli_plugin", modalities=("rgb",), time_arg=None,
                    flags={"cli_plugin_depth": ("integer", 2, "Depth of the plugin model.")})
        def build(num_classes, *, cli_plugin_depth=2, weights=None):
            raise NotImplementedError
        """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, str(tmp_path)]),
           "TF_CPP_MIN_LOG_LEVEL": "2", model_specs.PLUGINS_ENV: "tfvid_cli_plugin"}
    out = subprocess.run([sys.executable, "-m", "pipelines.train", "--helpfull"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert "--cli_plugin_depth" in out.stdout + out.stderr, out.stderr[-2000:]


# --------------------------------------------------------------------------- the jobs
def test_toy_model_through_train_and_evaluate(tiny_records, tmp_path):
    """The toy model, registered in this module, through pipelines.train, pipelines.evaluate
    and the export (tfvid.export.from_run.export_run, pipelines.export's work) with no edit
    in pipelines/: a record scores the same through the export as through evaluate."""
    from absl import app, flags

    from pipelines import train as job
    from pipelines.evaluate import evaluate_model_dir
    FLAGS = flags.FLAGS
    run = tmp_path / "toy"
    argv = ["train", f"--train_data={','.join(tiny_records)}", f"--model_dir={run}",
            "--model=toy_conv3d", "--backbone=tiny", "--input_size=32", "--batch_size=2",
            "--steps=2", "--noprogress", "--log_every=1"]
    try:
        FLAGS.unparse_flags()
        FLAGS([*argv, "--modality=flow"])             # the spec's modalities are checked
        with pytest.raises(app.UsageError, match="--modality=flow does not apply"):
            job.main(["train"])
        FLAGS.unparse_flags()
        FLAGS(argv)
        metrics = job.main(["train"])
    finally:
        FLAGS.unparse_flags()
    assert metrics["final_step"] == 2
    cfg = json.loads((run / "run_config.json").read_text())
    assert cfg["num_segments"] == 4 and cfg["toy_filters"] == 4       # spec default T, flag
    assert (cfg["sampler"]["name"], cfg["sampler"]["num_frames"]) == ("uniform", 4)
    assert "consensus" not in cfg and "stream" not in cfg             # other models' flags
    assert run_dir.builder_kwargs(cfg) == {"input_size": 32, "toy_filters": 4, "num_frames": 4}
    summary = evaluate_model_dir(str(run), ",".join(tiny_records), progress=False)
    assert summary["num_videos"] == 4
    assert summary["protocol"]["num_crops"] == 1                      # the spec's test_crops
    assert (summary["protocol"]["sampler"]["name"],
            summary["protocol"]["sampler"]["num_frames"]) == ("uniform", 4)
    # ... and export: the in-graph protocol is the spec's, a record scores as in evaluate
    import numpy as np
    import tensorflow as tf
    from tfvid.eval.metrics import load_scores
    from tfvid.export import read_sidecar
    from tfvid.export.from_run import export_run
    path = export_run(str(run), export_base=str(tmp_path / "sm"), warmup=False)
    side = read_sidecar(path)
    assert side["serving"]["num_crops"] == 1 and side["input_shape"] == [None, 4, 32, 32, 3]
    scores = load_scores(str(run / "eval" / "scores.npz"))
    from tfvid.data import schema
    raw = [r for f in tiny_records for r in tf.data.TFRecordDataset(f).as_numpy_iterator()]
    ids = [tf.train.SequenceExample.FromString(r).context.feature[schema.ID]
           .bytes_list.value[0].decode() for r in raw]
    logits = tf.saved_model.load(path).signatures["sequence_example"](
        examples=tf.constant(raw))["logits"].numpy()
    np.testing.assert_allclose(logits[[ids.index(i) for i in scores.ids.tolist()]],
                               scores.logits, atol=1e-4)


def test_other_models_flags_are_refused(tmp_path):
    from absl import app, flags

    from pipelines import train as job
    FLAGS = flags.FLAGS
    try:
        FLAGS.unparse_flags()
        FLAGS(["train", "--model=tsn", "--frames_per_segment=5", "--train_data=x",
               f"--model_dir={tmp_path / 'out'}", "--steps=1"])
        with pytest.raises(app.UsageError, match="--frames_per_segment=5 applies to "
                                                 "--model=stnet, not --model=tsn"):
            job.main(["train"])
    finally:
        FLAGS.unparse_flags()
    assert job.resume_keys(models.get_spec("stnet"))[-2:] == ("frames_per_segment",
                                                              "temporal_block")
    assert "consensus" in job.resume_keys(models.get_spec("tsn"))


def test_no_model_name_comparisons_in_the_jobs():
    """No `if model == "tsn"`-like special case in pipelines/train.py, pipelines/evaluate.py,
    the export jobs (export, export_four_stream, convert_tflite), tfvid/train/, tfvid/export/
    or the evaluation of a run (tfvid/eval/run*.py): what differs between models comes from
    their specs."""
    names = "|".join(re.escape(n) for n in BUILTIN)
    quoted = rf"['\"]({names})['\"]"
    patterns = [rf"(==|!=)\s*{quoted}", rf"{quoted}\s*(==|!=)", rf"\bin\s*[(\[{{][^)\]}}]*{quoted}",
                r"STREAM_MODELS|MODEL_KEYS|DEFAULT_SAMPLER|inspect\.signature"]
    files = [os.path.join(ROOT, "pipelines", f) for f in (
        "train.py", "evaluate.py", "export.py", "export_four_stream.py", "convert_tflite.py")]
    files += [os.path.join(ROOT, "tfvid", "eval", f) for f in ("run.py", "run_protocol.py")]
    for folder in (os.path.join(ROOT, "tfvid", "train"), os.path.join(ROOT, "tfvid", "export")):
        files += [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                  if f.endswith(".py")]
    found = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if any(re.search(p, line) for p in patterns):
                    found.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_spec_is_frozen():
    spec = models.get_spec("tsn")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.test_crops = 1
