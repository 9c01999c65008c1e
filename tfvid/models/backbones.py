"""2D CNN backbones as named stages: BN-Inception, ResNet-50/101, ResNeXt-50/101 32x4d, tiny.

    stages = backbone_stages("resnet50")          # [("stem", fn), ("res2", fn), ... ("res5", fn)]
    model = build_backbone("resnet50", input_shape=(224, 224, 10), weights="imagenet")

A stage function builds its layers (with fixed, unique names) on a KerasTensor and returns the
output tensor, so other models can insert layers between stages (StNet: temporal blocks after
res3 and res4) or run only some stages (dynamic maps: approximate rank pooling before res3).
`build_backbone` wraps a contiguous range of stages into a functional ``keras.Model``:
input (B, H, W, C) -> (B, D) features with ``pooling="avg"`` or the (B, h, w, D) map with
``pooling=None``. An input with C != 3 channels gets conv1 weights adapted from the 3-channel
(ImageNet) kernel by a rule of `tfvid.models.weights.CONV1_RULES` (TSN "average", StNet "stnet",
dynamic-flow "first").
"""
from __future__ import annotations

import keras

from tfvid.models.architectures import (BACKBONES, CONV1_LAYERS, backbone_network,  # noqa: F401
                                        backbone_stages, conv1_layer_name, default_conv_bias,
                                        feature_dim, stage_channels, stage_names, stage_strides)
from tfvid.models.resnet import synchronized_batchnorm, use_synchronized_batchnorm  # noqa: F401
from tfvid.models.weights import (CONV1_RULES, adapt_conv1_kernel,  # noqa: F401
                                  load_backbone_weights, register_conv1_rule)


def build_backbone(name: str, *, input_shape=None, width: float = 1.0, weights=None,
                   pooling: str | None = "avg", conv1_rule: str = "average",
                   first_stage: str | None = None, last_stage: str | None = None,
                   synchronized: bool | None = None, conv_bias: bool | None = None,
                   model_name: str | None = None) -> keras.Model:
    """A functional backbone model running stages ``first_stage..last_stage`` (default: all).

    Args:
      name: one of `BACKBONES`.
      input_shape: (H, W, C); H and W may be None. Default (224, 224, 3) for a network starting
        at the stem; for a later ``first_stage`` it is the shape of the previous stage's output
        and defaults to (None, None, channels of that stage).
      width: channel multiplier (1.0 = paper widths).
      weights: None, "imagenet" or a path to a ``.weights.h5`` file; see
        `tfvid.models.weights.load_backbone_weights`. 3-channel weights are adapted to C != 3
        input channels with ``conv1_rule``.
      pooling: "avg" -> (B, D) global average pooled features, "max" -> (B, D) global max,
        None -> the (B, h, w, D) feature map of the last stage.
      synchronized: BatchNormalization(synchronized=...) (None: module default).
      conv_bias: convs with (True) or without (False) biases; None: `default_conv_bias`
        (resnet50/101 keep the Keras-applications layout with biases). Weights of either
        layout load into either (see `tfvid.models.weights.copy_weights_by_name`).
    Returns:
      keras.Model named ``model_name`` (default ``"<name>"`` or ``"<name>_<first>_<last>"``).
    """
    if conv1_rule not in CONV1_RULES:
        raise ValueError(f"unknown conv1_rule {conv1_rule!r}; known: {sorted(CONV1_RULES)}")
    model = backbone_network(name, input_shape=input_shape, width=width, pooling=pooling,
                             first_stage=first_stage, last_stage=last_stage,
                             synchronized=synchronized, conv_bias=conv_bias,
                             model_name=model_name)
    if weights is not None:
        load_backbone_weights(model, name, weights, width=width, conv1_rule=conv1_rule)
    return model
