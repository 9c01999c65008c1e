"""Exports the four trained dynamic image streams (SI, DI, OF, DOF) as ONE SavedModel.

    python -m pipelines.export_four_stream --si_dir=runs/si --di_dir=runs/di \\
        --of_dir=runs/of --dof_dir=runs/dof --weights=1,1,1,1 --name=four_stream

Each --<stream>_dir is a training run of --model=dynamic_image --stream=<stream> (its
run_config.json and checkpoints, see pipelines/train.py). The four networks are rebuilt and
restored (tfvid.train.run_dir), wrapped by tfvid.models.four_stream.build_four_stream_model
(weighted average of the streams' logits, paper section 5.10) and written to
<export_base>/<name>/<version>/ in the TF Serving layout with a tfvid.json sidecar and warmup
requests. Signatures (tfvid.export.signatures): serving_default takes uint8 rgb frames
(B, T, H, W, 3) and flow fields (B, T', H, W, 2), encoded_frames their JPEG/PNG strings,
sequence_example prepare_data records with flow, all running the streams' MDI test windows and
--protocol_crops views in the graph; clip takes rgb (None, W, S, S, 30) and flow
(None, W', S, S, 20) float32 windows preprocessed as at evaluation (see the sidecar). All
return logits, probabilities, top_k_indices, top_k_classes.

The same fusion from score files, without an export: evaluate each run, then
    python -m pipelines.fuse --scores=runs/si/eval/scores.npz,runs/di/eval/scores.npz,\\
        runs/of/eval/scores.npz,runs/dof/eval/scores.npz --weights=1,1,1,1 --output_dir=...
"""
from __future__ import annotations

import json
import logging
import os

from absl import flags

from pipelines.common import check_args, define_flag, job_error, run_job

FLAGS = flags.FLAGS
STREAMS = ("si", "di", "of", "dof")

for _stream in STREAMS:
    define_flag("string", f"{_stream}_dir", None, f"Training run directory of the "
                f"{_stream.upper()} stream (--model=dynamic_image --stream={_stream}).")
# A string, as pipelines.train's --weights (one flag per name in a process): parse_weights splits.
define_flag("string", "weights", None, "Fusion weights of si, di, of, dof: 4 comma-separated "
            "numbers (default equal, the paper's average).")
define_flag("string", "name", None, "Model name under --export_base (default four_stream).")
define_flag("string", "export_base", "saved_models", "Root of the TF Serving model base paths.")
define_flag("integer", "version", 0, "Integer version to write; 0 = next after the existing "
            "ones. Existing versions are never overwritten.")
define_flag("integer", "num_windows", 0, "Windows W of the signature; 0 = variable (any W).")
define_flag("bool", "warmup", True, "Write TF Serving warmup requests.")
define_flag("integer", "protocol_crops", 10, "Views per window of the in-graph test protocol "
            "(signatures serving_default, encoded_frames, sequence_example): 1, 3 or 10.")


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
    """(model, run_config, checkpoint) of a dynamic_image_net run; ValueError naming the flag
    when the run is another model or another stream."""
    from tfvid.train import run_dir

    flag = f"--{stream}_dir={model_dir}"
    try:
        cfg = run_dir.read_run_config(model_dir)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag}: {os.path.join(model_dir, 'run_config.json')} is not valid "
                         f"JSON ({e})") from None
    if cfg["model"] != "dynamic_image":
        raise ValueError(f"{flag} is a run of model {cfg['model']!r}, not dynamic_image")
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
    from tfvid.export.run_sidecar import build_sidecar
    from tfvid.train import run_dir

    full = build_sidecar(model, model_dir, cfg, run_dir.builder_kwargs(cfg), checkpoint,
                         sampling=run_dir.sampler_from_config(cfg, "test").config())
    return {"model_dir": full["model"]["model_dir"], "checkpoint": full["model"]["checkpoint"],
            "builder_kwargs": full["model"]["builder_kwargs"],
            **{k: full[k] for k in ("sampling", "decoding", "preprocessing", "input_shape")}}


def export(dirs: dict[str, str], *, weights: dict[str, float] | None = None,
           name: str | None = None, export_base: str = "saved_models",
           version: int | None = None, num_windows: int | None = None,
           warmup: bool = True, protocol_crops: int = 10) -> str:
    """The whole job as a function: {stream: run dir} -> the exported version directory.

    With a variable number of windows (num_windows None/0) the export also has the in-graph
    protocol signatures (rgb frames + flow fields, their JPEGs, or records with flow; MDI test
    windows x protocol_crops views, averaged); with a fixed W only the float32 one."""
    from tfvid.export.four_stream import export_four_stream, four_stream_protocol
    from tfvid.models.four_stream import build_four_stream_model
    from tfvid.train import run_dir

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
        logging.info("restored %s stream from %s", stream, checkpoint)
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
        logging.warning("no in-graph protocol signatures (only 'clip'): %s", e)
        protocol = None
    return export_four_stream(model, export_base, name or "four_stream", version=version or None,
                              sidecar=sidecar, warmup=warmup, protocol=protocol)


def main(argv):
    check_args(argv)
    try:
        weights = parse_weights(FLAGS.weights)
        path = export({s: FLAGS[f"{s}_dir"].value for s in STREAMS}, weights=weights,
                      name=FLAGS.name, export_base=FLAGS.export_base, version=FLAGS.version,
                      num_windows=FLAGS.num_windows or None, warmup=FLAGS.warmup,
                      protocol_crops=FLAGS.protocol_crops)
    except (OSError, ValueError) as e:
        # user mistakes (a missing or wrong run dir, bad --weights, an existing version): one
        # line, no traceback, exit status 1
        raise job_error("export_four_stream", e) from None
    print(f"exported: {path}")
    from tfvid.export import read_sidecar
    for sig_name, desc in sorted(read_sidecar(path).get("signatures", {}).items()):
        inputs = ", ".join(f"{k} {v['dtype']} {v['shape']}" for k, v in desc["inputs"].items())
        print(f"signature {sig_name!r}: {inputs} -> {', '.join(desc['outputs'])}")
    return path


def run():
    """Console-script entry point (tfvid-export-four-stream)."""
    run_job(main)


if __name__ == "__main__":
    run()
