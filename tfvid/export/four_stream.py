"""The four-stream dynamic image network as ONE model and ONE SavedModel (paper section 4.4,
5.10, fig. 5; docs/dynamic_images.md).

The streams SI, DI (RGB windows) and OF, DOF (flow windows) are trained separately
(tfvid.models.dynamic_image); at test time their class scores are averaged. Two ways:

* score files: evaluate each run, then late-fuse the scores.npz files (equal weights, as the
  paper's "simply averaged")::

      python -m pipelines.fuse --scores=runs/si/eval/scores.npz,runs/di/eval/scores.npz,\\
          runs/of/eval/scores.npz,runs/dof/eval/scores.npz --weights=1,1,1,1 \\
          --output_dir=runs/four_stream

* one servable model: `tfvid.models.four_stream.build_four_stream_model` wraps the four
  trained Keras models, `export_four_stream` writes it in the TF Serving layout
  (pipelines/export_four_stream.py):

      inputs  {"rgb": (B, W, S, S, 3L), "flow": (B, W', S, S, 2L)}   (L = 10; W, W' may differ)
      logits  = sum_s w_s logits_s / sum_s w_s    (B, num_classes)
      clip (serving_default without a protocol): rgb, flow -> logits, probabilities =
      softmax(logits), top-k; the inputs are checked in the graph (shapes, the same B,
      finite values; see export_four_stream). With a protocol (`four_stream_protocol`, what
      pipelines/export_four_stream.py writes): serving_default takes uint8 rgb frames and
      flow fields, encoded_frames their JPEGs, sequence_example prepare_data records with
      flow (tfvid.export.signatures)

Logits leave the Keras model; the softmax is added by the export signature (as for every
tfvid model).
"""
from __future__ import annotations

import logging

import keras

from tfvid.export import signatures
from tfvid.export.from_run import read_run
from tfvid.export.run_sidecar import build_sidecar
from tfvid.export.savedmodel import export_saved_model
from tfvid.models.dynamic_image import STREAM_MODALITY, STREAMS
from tfvid.models.four_stream import (INPUT_NAMES, build_four_stream_model,
                                      four_stream_input_shapes)
from tfvid.train import run_dir

log = logging.getLogger(__name__)


def four_stream_protocol(streams: dict, model: keras.Model, num_crops: int = 10):
    """The in-graph test protocol (tfvid.export.signatures.Protocol, inputs "rgb" and "flow")
    of a four-stream export from its stream sidecars {stream: {"sampling", "preprocessing",
    "decoding", ...}} (pipelines.export_four_stream.stream_sidecar). ValueError when streams
    sharing an input disagree on sampling, preprocessing or decoding, or the model fixes a
    number of windows (the MDI test sampling gives one per 6 frames)."""
    inputs = {}
    for stream, part in streams.items():
        key = INPUT_NAMES[STREAM_MODALITY[stream]]
        proto = signatures.protocol_input(key, part, part["sampling"])
        if key in inputs and inputs[key][1] != proto:
            raise ValueError(f"streams {inputs[key][0]!r} and {stream!r} share the {key!r} "
                             f"input but differ in sampling, preprocessing or decoding")
        inputs.setdefault(key, (stream, proto))
    shapes = four_stream_input_shapes(model)
    fixed = {k: v[0] for k, v in shapes.items() if v[0] is not None}
    if fixed:
        raise ValueError(f"the model fixes the number of windows {fixed}; the in-graph "
                         f"protocol needs a variable W (export with --num_windows=0)")
    return signatures.Protocol(inputs=tuple(p for _, p in inputs.values()),
                               num_crops=int(num_crops), named_model_inputs=True)


def export_four_stream(model: keras.Model, export_base: str, name: str, *,
                       version: int | None = None, sidecar: dict, warmup: bool = True,
                       protocol=None) -> str:
    """Exports a `build_four_stream_model` model to export_base/name/<version>/ (TF Serving
    layout, sidecar and warmup requests of tfvid.export.savedmodel) and returns the path.

    Signature serving_default: inputs named as the model's ("rgb", "flow"), float32
    (None, W, S, S, C) with W None when variable; outputs logits and probabilities. Each input
    is checked in the graph (rank 5, its S, S, C, its W when fixed or W >= 1, finite values)
    and both must hold the same number of clips B; B = 0 gives (0, num_classes) outputs. The
    sidecar (class names, each stream's sampling / preprocessing / input_shape) is checked
    against the signature before anything is written (tfvid.export.validate_sidecar).
    With `protocol` (`four_stream_protocol`) the export also has the in-graph protocol
    signatures serving_default (uint8 rgb (B, T, H, W, 3) and flow (B, T', H, W, 2)),
    encoded_frames and sequence_example (tfvid.export.signatures); the float32 one is then
    named "clip".
    """
    return export_saved_model(model, export_base, name, version=version,
                              input_shapes=four_stream_input_shapes(model), sidecar=sidecar,
                              warmup=warmup, protocol=protocol)


# ------------------------------------------------------------------ from four training runs
def parse_weights(values) -> dict[str, float]:
    """--weights (4 comma-separated numbers, or a list of them, or None) -> {stream: weight};
    ValueError naming the flag."""
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    if not values:
        return {s: 1.0 for s in STREAMS}
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise ValueError(f"--weights={','.join(values)}: expected 4 numbers") from None
    if len(numbers) != len(STREAMS):
        raise ValueError(f"--weights needs {len(STREAMS)} numbers (si, di, of, dof), got "
                         f"{len(numbers)}")
    if any(w < 0 for w in numbers) or sum(numbers) <= 0:
        raise ValueError(f"--weights must be non-negative and not all zero, got {numbers}")
    return dict(zip(STREAMS, numbers))


def run_stream(cfg: dict) -> str | None:
    """The stream a run_config was trained with (its model_kwargs, else its 'stream')."""
    return (cfg.get("model_kwargs") or {}).get("stream") or cfg.get("stream")


def load_stream(stream: str, model_dir: str, num_windows: int | None):
    """(model, run_config, checkpoint) of a run of a model with the stream `stream` (its spec's
    streams: the dynamic image network's si / di / of / dof); ValueError naming the flag when
    the run's model has no such stream, the run is another stream, or it is not MDI."""
    flag = f"--{stream}_dir={model_dir}"
    cfg = read_run(model_dir)
    spec = run_dir.model_spec(cfg)
    if spec.stream_modality(stream) is None:
        raise ValueError(f"{flag} is a run of model {cfg['model']!r}, which has no {stream!r} "
                         f"stream (streams: {sorted(spec.streams) or 'none'}); the four-stream "
                         f"model combines dynamic_image runs")
    if run_stream(cfg) != stream:
        raise ValueError(f"{flag} is a run of stream {run_stream(cfg)!r}, not {stream!r}")
    sampler = run_dir.sampler_from_config(cfg, "test")
    if sampler.name != "mdi":
        raise ValueError(f"{flag} samples {sampler.name!r} windows; the four-stream model "
                         f"combines multiple-dynamic-image (MDI) runs (train without "
                         f"--sdi_frames)")
    if num_windows:
        cfg = {**cfg, "model_kwargs": {**(cfg.get("model_kwargs") or {}),
                                       "num_windows": int(num_windows)}}
    checkpoint = run_dir.latest_checkpoint(model_dir)
    model = run_dir.build_model(cfg)
    run_dir.restore(model, model_dir, checkpoint)
    return model, cfg, checkpoint


def stream_sidecar(stream, model, model_dir, cfg, checkpoint) -> dict:
    """What a client needs to feed one stream: the single-stream export's sidecar pieces
    (tfvid.export.run_sidecar.build_sidecar) with the run's MDI windows as the sampler."""
    full = build_sidecar(model, model_dir, cfg, run_dir.builder_kwargs(cfg), checkpoint,
                         sampling=run_dir.sampler_from_config(cfg, "test").config())
    return {"model_dir": full["model"]["model_dir"], "checkpoint": full["model"]["checkpoint"],
            "builder_kwargs": full["model"]["builder_kwargs"],
            **{k: full[k] for k in ("sampling", "decoding", "preprocessing", "input_shape")}}


def export_four_stream_runs(dirs: dict[str, str], *, weights: dict[str, float] | None = None,
                            name: str | None = None, export_base: str = "saved_models",
                            version: int | None = None, num_windows: int | None = None,
                            warmup: bool = True, protocol_crops: int = 10) -> str:
    """{stream: run dir} -> the exported version directory (pipelines.export_four_stream).

    With a variable number of windows (num_windows None/0) the export also has the in-graph
    protocol signatures (rgb frames + flow fields, their JPEGs, or records with flow; MDI test
    windows x protocol_crops views, averaged); with a fixed W only the float32 one."""
    if num_windows is not None and int(num_windows) < 0:
        raise ValueError(f"--num_windows must be >= 0 (0 = any number of windows), got "
                         f"{num_windows}")
    if version is not None and int(version) < 0:
        raise ValueError(f"--version must be >= 0 (0 = the next version), got {version}")
    missing = [f"--{s}_dir" for s in STREAMS if not dirs.get(s)]
    if missing:
        raise ValueError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                         f"required (the four-stream model needs all four runs)")
    weights = weights or {s: 1.0 for s in STREAMS}
    models, sidecars, names = {}, {}, {}
    for stream in STREAMS:
        model, cfg, checkpoint = load_stream(stream, dirs[stream], num_windows)
        models[stream] = model
        names[stream] = run_dir.class_names(cfg, dirs[stream])
        sidecars[stream] = stream_sidecar(stream, model, dirs[stream], cfg, checkpoint)
        log.info("restored %s stream from %s", stream, checkpoint)
    reference = names[STREAMS[0]]
    for stream in STREAMS[1:]:
        if names[stream] != reference:
            raise ValueError(f"--{stream}_dir has other classes than --{STREAMS[0]}_dir: "
                             f"{names[stream][:5]}... vs {reference[:5]}...")
    model = build_four_stream_model(models, weights)
    sidecar = {"class_names": reference,
               "model": {"name": "four_stream_dynamic_image_net",
                         "fusion": {"weights": weights, "rule": "weighted average of logits"}},
               "streams": sidecars}
    if int(protocol_crops) not in (1, 3, 10):
        raise ValueError(f"--protocol_crops must be 1, 3 or 10, got {protocol_crops}")
    try:
        protocol = four_stream_protocol(sidecars, model, int(protocol_crops))
    except ValueError as e:
        log.warning("no in-graph protocol signatures (only 'clip'): %s", e)
        protocol = None
    return export_four_stream(model, export_base, name or "four_stream", version=version or None,
                              sidecar=sidecar, warmup=warmup, protocol=protocol)
