"""Exports a trained model as a SavedModel in the TF Serving layout.

    python -m pipelines.export --model_dir=runs/tsn_rgb --export_base=saved_models

Rebuilds the model from <model_dir>/run_config.json, restores the latest checkpoint and writes
<export_base>/<name>/<version>/ with the signatures of tfvid.export.signatures:
serving_default (uint8 frames (B, T, H, W, 3), flow runs (B, T, H, W, 2)), encoded_frames
(JPEG/PNG strings), sequence_example (serialized prepare_data records), which run the
evaluate job's test protocol in the graph (--protocol_segments snippets x --protocol_crops
views, averaged), and clip (float32 (None, T, S, S, C) in the evaluation layout, one view per
row: clients batch crops themselves and average the logits, as pipelines.predict does); all
return logits, probabilities, top_k_indices and top_k_classes. Also a tfvid.json sidecar
(tfvid.export.run_sidecar: class names, model, sampling, preprocessing and protocol config) and
TF Serving warmup requests for every signature.
"""
from __future__ import annotations

import json
import logging
import os

from absl import flags

from pipelines.common import check_args, define_flag, flag_value, job_error, run_job

FLAGS = flags.FLAGS

define_flag("string", "model_dir", None, "Training directory with run_config.json and "
            "checkpoints.")
define_flag("string", "name", None, "Model name under --export_base (default: basename of "
            "--model_dir).")
define_flag("string", "export_base", "saved_models", "Root of the TF Serving model base paths.")
define_flag("integer", "version", 0, "Integer version to write; 0 = next after the existing ones. "
            "Existing versions are never overwritten.")
define_flag("integer", "num_segments", None, "Time length T of the exported signature. Default: "
            "the training value; 0 = variable T (models that allow it).")
define_flag("integer", "input_size", None, "Spatial side S of the exported signature (default: "
            "the training value).")
define_flag("bool", "warmup", True, "Write TF Serving warmup requests "
            "(assets.extra/tf_serving_warmup_requests).")
define_flag("integer", "protocol_crops", 10, "Views per clip of the in-graph test protocol "
            "(signatures serving_default, encoded_frames, sequence_example): 1, 3 or 10 (the "
            "evaluate job's default).")
define_flag("integer", "protocol_segments", None, "Test snippets of the in-graph protocol "
            "(default: the evaluate job's, e.g. 25 for TSN).")


# ------------------------------------------------------------------------ test protocol
def protocol_sampler(run_config: dict, test_segments: int | None = None):
    """The sampler of pipelines.evaluate's default protocol for this run: test mode,
    `test_segments` snippets (None: 25 for TSN / StNet; the trained K for the 'weighted'
    consensus, which cannot take others), StNet's short-video rule 'fit' (min_segments = the
    training T; pipelines.evaluate._test_sampler)."""
    import dataclasses

    from tfvid.train import run_dir

    try:
        sampler = run_dir.sampler_from_config(run_config, "test", test_segments)
    except ValueError:
        if test_segments is not None or run_config.get("consensus") != "weighted":
            raise
        sampler = run_dir.sampler_from_config(run_config, "test",
                                              run_config.get("num_segments"))
    if hasattr(sampler, "min_segments"):       # as pipelines.evaluate (--short_videos=fit)
        trained = int(run_config.get("num_segments") or sampler.num_segments)
        sampler = dataclasses.replace(sampler, min_segments=max(1, trained))
    return sampler


def build_protocol(sidecar: dict, sampler, num_crops: int, model_key: str = "clip"):
    """The in-graph test protocol (tfvid.export.signatures.Protocol) of a single-stream export
    from its sidecar's preprocessing and decoding; None (with a warning) when the model does
    not take frames of a known modality (e.g. feature models)."""
    from tfvid.data import modality as mod
    from tfvid.export import signatures

    pre = sidecar.get("preprocessing") or {}
    if pre.get("modality") not in mod.MODALITIES:
        logging.warning("no in-graph protocol signatures: modality %r", pre.get("modality"))
        return None
    channels = mod.num_channels(pre["modality"], sampler.frames_per_step())
    if sidecar["input_shape"][-1] != channels:
        logging.warning("no in-graph protocol signatures: the model takes %s channels, not the "
                        "%d of %s frames", sidecar["input_shape"][-1], channels,
                        pre["modality"])
        return None
    proto = signatures.protocol_input(model_key, sidecar, sampler.config())
    return signatures.Protocol(inputs=(proto,), num_crops=int(num_crops))


# ------------------------------------------------------------------------------ job
def export(model_dir: str, *, name: str | None = None, export_base: str = "saved_models",
           version: int | None = None, num_segments: int | None = None,
           input_size: int | None = None, warmup: bool = True, protocol_crops: int = 10,
           protocol_segments: int | None = None) -> str:
    """Restores the run in `model_dir` and exports it; returns the version directory.

    num_segments: T of the float32 "clip" signature (None: the training value, 0: variable);
    input_size: its spatial side (None: the training value). protocol_crops /
    protocol_segments: views and test snippets of the in-graph protocol signatures
    (serving_default, encoded_frames, sequence_example; default: pipelines.evaluate's).

    The protocol signatures run the evaluate job's model (a variable time axis, except with
    the 'weighted' consensus); the "clip" signature runs the same model (one copy of the
    weights) with its input fixed to the requested T.
    """
    from tfvid.export import export_saved_model
    from tfvid.export.run_sidecar import build_sidecar
    from tfvid.train import run_dir

    if num_segments is not None and int(num_segments) < 0:
        raise ValueError(f"--num_segments must be >= 0 (0 = a variable T), got {num_segments}")
    if input_size is not None and int(input_size) < 1:
        raise ValueError(f"--input_size must be >= 1, got {input_size}")
    if version is not None and int(version) < 0:
        raise ValueError(f"--version must be >= 0 (0 = the next version), got {version}")
    if int(protocol_crops) not in (1, 3, 10):
        raise ValueError(f"--protocol_crops must be 1, 3 or 10, got {protocol_crops}")
    if protocol_segments is not None and int(protocol_segments) < 1:
        raise ValueError(f"--protocol_segments must be >= 1, got {protocol_segments}")
    model_dir = os.path.normpath(model_dir)
    try:
        run_config = run_dir.read_run_config(model_dir)
    except json.JSONDecodeError as e:
        raise ValueError(f"--model_dir={model_dir}: {os.path.join(model_dir, 'run_config.json')}"
                         f" is not valid JSON ({e})") from None
    checkpoint = run_dir.latest_checkpoint(model_dir)      # fails before building the model
    size = {"num_segments": run_dir.TRAINED if num_segments is None else (num_segments or None),
            "input_size": input_size}       # num_segments 0 -> None: a variable T
    model = run_dir.build_model(run_config, **size)
    kwargs = run_dir.builder_kwargs(run_config, **size)
    sidecar = build_sidecar(model, model_dir, run_config, kwargs, checkpoint)
    clip_shape = model.input_shape[1:]
    # one model for every signature: the evaluate job's (variable T unless 'weighted')
    weighted = run_config.get("consensus") == "weighted"
    if model.input_shape[1] is not None and not weighted:
        try:
            model = run_dir.build_model(run_config, num_segments=None, input_size=input_size)
        except ValueError:      # no time length argument: keep the fixed model
            pass
    run_dir.restore(model, model_dir, checkpoint)
    protocol = None
    try:
        sampler = protocol_sampler(run_config, protocol_segments)
        steps = sampler.num_steps("test")
        if model.input_shape[1] is not None and steps != model.input_shape[1]:
            raise ValueError(f"the model fixes T={model.input_shape[1]} but the test protocol "
                             f"takes {steps} snippets")
        protocol = build_protocol(sidecar, sampler, protocol_crops)
    except ValueError as e:
        if protocol_segments is not None:
            raise
        logging.warning("no in-graph protocol signatures (only 'clip'): %s", e)
    name = name or os.path.basename(os.path.abspath(model_dir))
    return export_saved_model(model, export_base, name, version=version or None,
                              clip_shape=clip_shape, sidecar=sidecar, warmup=warmup,
                              protocol=protocol)


def describe(path: str) -> str:
    """Signatures of an export and curl / docker examples for TF Serving REST."""
    from tfvid.export import load_export

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
    _, t, s, _, c = (list(sidecar["input_shape"]) + [None] * 5)[:5]
    t = 8 if t is None else t
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
    lines += [
        f"  curl -X POST http://localhost:8501/v1/models/{name}:predict \\",
        f"       -d '{{\"signature_name\": \"{sidecar['signature']['name']}\", "
        f"\"inputs\": {{\"clip\": CLIPS}}}}'",
        f"  (CLIPS: nested lists of shape [views, {t}, {s}, {s}, {c}], preprocessed as in "
        f"assets.extra/tfvid.json; or: python -m pipelines.predict --export_dir={path} "
        f"--video=VIDEO)",
    ]
    return "\n".join(lines)


def main(argv):
    check_args(argv, "model_dir")
    try:   # flag_value: this job's defaults even when another job defined the flag first
        path = export(FLAGS.model_dir, name=FLAGS.name, export_base=FLAGS.export_base,
                      version=FLAGS.version, num_segments=flag_value("num_segments", None),
                      input_size=flag_value("input_size", None), warmup=FLAGS.warmup,
                      protocol_crops=int(flag_value("protocol_crops", 10)),
                      protocol_segments=flag_value("protocol_segments", None))
    except (OSError, ValueError) as e:
        # user mistakes (no run, no checkpoint, existing version, bad flag): one line, no
        # traceback, exit status 1
        raise job_error("export", e) from None
    print(describe(path))


def run():
    """Console-script entry point (tfvid-export)."""
    run_job(main)


if __name__ == "__main__":
    run()
