"""The four-stream dynamic image network as ONE model and ONE SavedModel (paper section 4.4,
5.10, fig. 5; docs/dynamic_images.md).

The streams SI, DI (RGB windows) and OF, DOF (flow windows) are trained separately
(tfvid.models.dynamic_image); at test time their class scores are averaged. Two ways:

* score files: evaluate each run, then late-fuse the scores.npz files (equal weights, as the
  paper's "simply averaged")::

      python -m pipelines.fuse --scores=runs/si/eval/scores.npz,runs/di/eval/scores.npz,\\
          runs/of/eval/scores.npz,runs/dof/eval/scores.npz --weights=1,1,1,1 \\
          --output_dir=runs/four_stream

* one servable model: `build_four_stream_model` wraps the four trained Keras models,
  `export_four_stream` writes it in the TF Serving layout (pipelines/export_four_stream.py):

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
from keras import ops

from tfvid.models.dynamic_image import STREAM_MODALITY, STREAMS

#: Input name of each modality in the fused model and its serving signature.
INPUT_NAMES = {"rgb": "rgb", "flow": "flow"}


@keras.saving.register_keras_serializable(package="tfvid")
class WeightedAverage(keras.layers.Layer):
    """Weighted average of same-shaped inputs: layer([x_1, ..., x_n]) = sum w_i x_i / sum w_i.

    ``stream_weights``: n finite, non-negative weights, not all zero (normalised here).
    """

    def __init__(self, stream_weights, **kwargs):
        super().__init__(**kwargs)
        values = [float(w) for w in stream_weights]
        if not values or any(not (w >= 0 and w < float("inf")) for w in values) \
                or sum(values) <= 0:
            raise ValueError(f"WeightedAverage: weights must be finite, non-negative and not "
                             f"all zero, got {values}")
        self.stream_weights = values

    def call(self, inputs):
        if len(inputs) != len(self.stream_weights):
            raise ValueError(f"WeightedAverage: {len(inputs)} inputs for "
                             f"{len(self.stream_weights)} weights")
        total = sum(self.stream_weights)
        out = None
        for w, x in zip(self.stream_weights, inputs):
            term = x * ops.cast(w / total, x.dtype)
            out = term if out is None else out + term
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "stream_weights": list(self.stream_weights)}


def _check_models(models: dict) -> None:
    if not models:
        raise ValueError("build_four_stream_model: no stream models given")
    unknown = sorted(set(models) - set(STREAMS))
    if unknown:
        raise ValueError(f"build_four_stream_model: unknown streams {unknown}; streams are "
                         f"{STREAMS}")
    names = [m.name for m in models.values()]
    if len(set(names)) != len(names):
        raise ValueError(f"build_four_stream_model: the stream models must have distinct names "
                         f"(got {names}); build each with its own stream")
    classes = {s: m.output_shape[-1] for s, m in models.items()}
    if len(set(classes.values())) != 1:
        raise ValueError(f"build_four_stream_model: the streams disagree on the number of "
                         f"classes: {classes}")


def build_four_stream_model(models: dict, weights: dict | None = None, *,
                            name: str = "four_stream") -> keras.Model:
    """Wraps trained stream models into one Keras model with late score fusion.

    Args:
      models: {stream: keras.Model} for any of "si", "di", "of", "dof" (the paper uses all
        four), each mapping (B, W, S, S, C*L) windows to (B, num_classes) logits, e.g. from
        `tfvid.models.dynamic_image.build_dynamic_image_net`. Models of the same modality
        must take the same window shape (they share one input).
      weights: {stream: weight} (default 1 each: the paper's average); missing streams get 1.
      name: the Keras model name.

    Returns:
      keras.Model with dict inputs {"rgb": (B, W, S, S, 3L)} and/or {"flow": (B, W', S, S,
      2L)} (only the modalities used) and output (B, num_classes) fused logits
      sum_s w_s logits_s / sum_s w_s. The stream models are nested unchanged (their weights
      are shared, not copied).
    """
    _check_models(models)
    weights = dict(weights or {})
    extra = sorted(set(weights) - set(models))
    if extra:
        raise ValueError(f"build_four_stream_model: weights for streams without a model: {extra}")
    order = [s for s in STREAMS if s in models]
    shapes = {}
    for stream in order:
        modality = STREAM_MODALITY[stream]
        shape = tuple(models[stream].input_shape[1:])
        if modality in shapes and shapes[modality][1] != shape:
            other = shapes[modality][0]
            raise ValueError(f"build_four_stream_model: streams {other!r} and {stream!r} share "
                             f"the {modality!r} input but take different window shapes "
                             f"{shapes[modality][1]} and {shape}")
        shapes.setdefault(modality, (stream, shape))
    inputs = {m: keras.Input(shape, name=INPUT_NAMES[m]) for m, (_, shape) in shapes.items()}
    logits = [models[s](inputs[STREAM_MODALITY[s]]) for s in order]
    fused = WeightedAverage([float(weights.get(s, 1.0)) for s in order],
                            name="fused_logits")(logits)
    return keras.Model(inputs, fused, name=name)


def four_stream_input_shapes(model: keras.Model) -> dict:
    """{input name: (W, S, S, C)} of a `build_four_stream_model` model."""
    return {t.name: tuple(t.shape[1:]) for t in model.inputs}


def four_stream_protocol(streams: dict, model: keras.Model, num_crops: int = 10):
    """The in-graph test protocol (tfvid.export.signatures.Protocol, inputs "rgb" and "flow")
    of a four-stream export from its stream sidecars {stream: {"sampling", "preprocessing",
    "decoding", ...}} (pipelines.export_four_stream.stream_sidecar). ValueError when streams
    sharing an input disagree on sampling, preprocessing or decoding, or the model fixes a
    number of windows (the MDI test sampling gives one per 6 frames)."""
    from tfvid.export import signatures

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
    from tfvid.export.savedmodel import export_saved_model

    return export_saved_model(model, export_base, name, version=version,
                              input_shapes=four_stream_input_shapes(model), sidecar=sidecar,
                              warmup=warmup, protocol=protocol)
