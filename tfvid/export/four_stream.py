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

import keras

from tfvid.export import signatures
from tfvid.export.savedmodel import export_saved_model
from tfvid.models.dynamic_image import STREAM_MODALITY
from tfvid.models.four_stream import INPUT_NAMES, four_stream_input_shapes


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
