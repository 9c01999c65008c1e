"""Export a training run: rebuild it from run_config.json, restore it, choose its test protocol
and write the SavedModel (pipelines/export.py is this module's flag list).

    path = export_run("runs/tsn_rgb", export_base="saved_models")

What differs between models comes from the model's spec (tfvid.models.spec.ModelSpec):

* the in-graph protocol signatures (serving_default: uint8 frames, encoded_frames,
  sequence_example) run the evaluate job's default protocol, `default_protocol`: the spec's
  test_protocol (TSN 25 snippets x 10 crops, StNet T = 25 and one centre crop, dynamic image
  nets MDI windows and one crop) on the model pipelines.evaluate builds (a variable time axis
  when the spec allows it, the test view side `ModelSpec.test_input_size_of`: StNet 256 for a
  run trained at 224). A record scored through ``sequence_example`` gets the scores that
  pipelines.evaluate gives it;
* the float32 "clip" signature takes (B, T, S, S, C) at the requested T (default: the
  training T) and S (default: the training side). When the protocol's S differs (StNet), the
  protocol signatures run a second copy of the network built at that side, restored from the
  same checkpoint (StNet's spatial axes are convolutional + global pooling);
* a run on cached features (DIN / VideoMap trained with --backbone=none) has no pixels: its
  export takes float32 ``features`` (B, T, D) in the signatures "features" and
  serving_default, with the same outputs (logits, probabilities, top-k).
"""
from __future__ import annotations

import json
import logging
import os

from tfvid.data import modality as mod
from tfvid.eval.run_protocol import default_protocol, eval_sampler
from tfvid.export import signatures
from tfvid.export.layout import FEATURES_INPUT, FEATURES_SIGNATURE
from tfvid.export.run_sidecar import build_sidecar
from tfvid.export.savedmodel import export_saved_model
from tfvid.train import run_dir

log = logging.getLogger(__name__)


def read_run(model_dir: str) -> dict:
    """run_config.json of `model_dir`; ValueError naming the file when it is not JSON."""
    try:
        return run_dir.read_run_config(model_dir)
    except json.JSONDecodeError as e:
        raise ValueError(f"--model_dir={model_dir}: "
                         f"{os.path.join(model_dir, run_dir.RUN_CONFIG)} is not valid JSON "
                         f"({e})") from None


def protocol_sampler(run_config: dict, test_segments: int | None = None):
    """The sampler of pipelines.evaluate's default protocol for this run (`eval_sampler`)."""
    return eval_sampler(run_config, "test", test_segments)


def build_protocol(sidecar: dict, sampler, num_crops: int, model_key: str = "clip",
                   input_size: int | None = None, scale_size: int | None = None):
    """The in-graph test protocol (tfvid.export.signatures.Protocol) of a single-stream export
    from its sidecar's preprocessing and decoding, views of side `input_size` (default: the
    sidecar's); None (with a warning) when the model does not take frames of a known
    modality (e.g. feature models)."""
    pre = sidecar.get("preprocessing") or {}
    if pre.get("modality") not in mod.MODALITIES:
        log.warning("no in-graph protocol signatures: modality %r", pre.get("modality"))
        return None
    channels = mod.num_channels(pre["modality"], sampler.frames_per_step())
    if sidecar["input_shape"][-1] != channels:
        log.warning("no in-graph protocol signatures: the model takes %s channels, not the %d "
                    "of %s frames", sidecar["input_shape"][-1], channels, pre["modality"])
        return None
    part = sidecar if input_size is None else {
        **sidecar, "preprocessing": {**pre, "input_size": int(input_size)}}
    proto = signatures.protocol_input(model_key, part, sampler.config(), scale_size)
    return signatures.Protocol(inputs=(proto,), num_crops=int(num_crops))


def check_export_args(num_segments, input_size, version, protocol_crops, protocol_segments):
    """ValueError naming the flag of a bad export option."""
    if num_segments is not None and int(num_segments) < 0:
        raise ValueError(f"--num_segments must be >= 0 (0 = a variable T), got {num_segments}")
    if input_size is not None and int(input_size) < 1:
        raise ValueError(f"--input_size must be >= 1, got {input_size}")
    if version is not None and int(version) < 0:
        raise ValueError(f"--version must be >= 0 (0 = the next version), got {version}")
    if protocol_crops is not None and int(protocol_crops) not in (1, 3, 10):
        raise ValueError(f"--protocol_crops must be 1, 3 or 10, got {protocol_crops}")
    if protocol_segments is not None and int(protocol_segments) < 1:
        raise ValueError(f"--protocol_segments must be >= 1, got {protocol_segments}")


def _protocol_model(run_config, spec, clip_model, size, test_size, model_dir, checkpoint):
    """The network the protocol signatures run: the evaluate job's (variable T when the spec
    allows it, views of side test_size), `clip_model` itself when it is that network."""
    variable = spec.is_variable_time(run_config)
    same_size = test_size is None or test_size == clip_model.input_shape[2]
    if same_size and (not variable or clip_model.input_shape[1] is None):
        return clip_model
    model = run_dir.build_model(run_config,
                                num_segments=None if variable else size["num_segments"],
                                input_size=test_size)
    if same_size:
        return model            # one network: the clip signature fixes T on its input spec
    try:
        run_dir.restore(model, model_dir, checkpoint)
    except ValueError as e:
        raise ValueError(f"the weights of {model_dir} do not load into the model at the test "
                         f"input size {test_size} ({e}); export with --input_size="
                         f"{clip_model.input_shape[2]}") from None
    return model


def export_run(model_dir: str, *, name: str | None = None, export_base: str = "saved_models",
               version: int | None = None, num_segments: int | None = None,
               input_size: int | None = None, warmup: bool = True,
               protocol_crops: int | None = None,
               protocol_segments: int | None = None) -> str:
    """Restores the run in `model_dir` and exports it; returns the version directory.

    num_segments: T of the float32 "clip" signature (None: the training value, 0: variable);
    input_size: its spatial side (None: the training value) and the side of the protocol's
    views (None: the spec's test view side, as pipelines.evaluate). protocol_crops /
    protocol_segments: views and test snippets of the in-graph protocol signatures
    (serving_default, encoded_frames, sequence_example; None: the spec's test_protocol, as
    pipelines.evaluate). A run on cached features exports its (B, T, D) "features" input.
    """
    check_export_args(num_segments, input_size, version, protocol_crops, protocol_segments)
    model_dir = os.path.normpath(model_dir)
    run_config = read_run(model_dir)
    spec = run_dir.model_spec(run_config)
    checkpoint = run_dir.latest_checkpoint(model_dir)      # fails before building the model
    size = {"num_segments": run_dir.TRAINED if num_segments is None else (num_segments or None),
            "input_size": input_size}       # num_segments 0 -> None: a variable T
    model = run_dir.build_model(run_config, **size)
    kwargs = run_dir.builder_kwargs(run_config, **size)
    sidecar = build_sidecar(model, model_dir, run_config, kwargs, checkpoint)
    name = name or os.path.basename(os.path.abspath(model_dir))
    if spec.input_kind_of(run_config) == "features":
        run_dir.restore(model, model_dir, checkpoint)
        return export_saved_model(model, export_base, name, version=version or None,
                                  input_shapes={FEATURES_INPUT: model.input_shape[1:]},
                                  clip_name=FEATURES_SIGNATURE, sidecar=sidecar, warmup=warmup)
    clip_shape = model.input_shape[1:]
    test_size = spec.test_input_size_of(run_config, input_size)
    runner = _protocol_model(run_config, spec, model, size, test_size, model_dir, checkpoint)
    if runner is not model and runner.input_shape[2] == model.input_shape[2]:
        model = runner           # the variable-T network serves the clip signature too
    run_dir.restore(model, model_dir, checkpoint)
    protocol = None
    try:
        defaults = default_protocol(run_config, num_segments=protocol_segments,
                                    num_crops=protocol_crops, input_size=input_size)
        steps = defaults.sampler.num_steps("test")
        if runner.input_shape[1] is not None and steps != runner.input_shape[1]:
            raise ValueError(f"the model fixes T={runner.input_shape[1]} but the test protocol "
                             f"takes {steps} snippets")
        protocol = build_protocol(sidecar, defaults.sampler, defaults.num_crops,
                                  input_size=runner.input_shape[2],
                                  scale_size=defaults.scale_size)
    except ValueError as e:
        if protocol_segments is not None:
            raise
        log.warning("no in-graph protocol signatures (only 'clip'): %s", e)
    return export_saved_model(model, export_base, name, version=version or None,
                              clip_shape=clip_shape, sidecar=sidecar, warmup=warmup,
                              protocol=protocol,
                              protocol_model=None if runner is model else runner)


def describe(path: str) -> str:
    """Signatures of an export and curl / docker examples for TF Serving REST."""
    from tfvid.export.savedmodel import load_export

    serving, sidecar = load_export(path)
    lines = [f"exported: {path}"]
    for sig_name in serving.signature_names:
        sig = serving.saved_model.signatures[sig_name]
        lines.append(f"signature {sig_name!r}:")
        for key, spec in sig.structured_input_signature[1].items():
            lines.append(f"  input  {key}: {spec.dtype.name} {spec.shape.as_list()}")
        for key, spec in sig.structured_outputs.items():
            lines.append(f"  output {key}: {spec.dtype.name} {spec.shape.as_list()}")
    name = sidecar["name"]
    base = os.path.abspath(os.path.dirname(path))
    lines += [
        "serve with TF Serving:",
        f"  docker run -p 8501:8501 -p 8500:8500 -v {base}:/models/{name} -e MODEL_NAME={name} "
        f"tensorflow/serving",
    ]
    if "serving" in sidecar:
        lines += [
            f"  curl -X POST http://localhost:8501/v1/models/{name}:predict \\",
            "       -d '{\"signature_name\": \"encoded_frames\", \"inputs\": {\"rgb\": "
            "[[{\"b64\": \"<JPEG>\"}, ...]]}}'",
            f"  (or: python -m pipelines.predict --export_dir={path} --video=VIDEO "
            f"--server=localhost:8500)",
        ]
    (key, desc), = list(sidecar["signature"]["inputs"].items())[:1]
    dims = ["views" if key != FEATURES_INPUT else "videos"] + [
        "T" if d is None else str(d) for d in desc["shape"][1:]]
    what = ("per-frame feature rows (sidecar 'features')" if key == FEATURES_INPUT else
            "preprocessed as in assets.extra/tfvid.json")
    lines += [
        f"  curl -X POST http://localhost:8501/v1/models/{name}:predict \\",
        f"       -d '{{\"signature_name\": \"{sidecar['signature']['name']}\", "
        f"\"inputs\": {{\"{key}\": VALUES}}}}'",
        f"  (VALUES: nested lists of shape [{', '.join(dims)}], {what}"
        + ("" if key == FEATURES_INPUT else
           f"; or: python -m pipelines.predict --export_dir={path} --video=VIDEO") + ")",
    ]
    return "\n".join(lines)
