"""The four-stream dynamic image network as ONE Keras model (paper section 4.4, 5.10, fig. 5;
docs/dynamic_images.md).

`build_four_stream_model` wraps trained stream models (SI, DI on RGB windows, OF, DOF on flow
windows; tfvid.models.dynamic_image) into one model that averages their logits
(tfvid.layers.fusion.WeightedAverage). Its export (one SavedModel, the in-graph test protocol)
is tfvid.export.four_stream.
"""
from __future__ import annotations

import keras

from tfvid.layers.fusion import WeightedAverage
from tfvid.models.dynamic_image import STREAM_MODALITY, STREAMS

#: Input name of each modality in the fused model and its serving signature.
INPUT_NAMES = {"rgb": "rgb", "flow": "flow"}


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
