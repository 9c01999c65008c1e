"""Backbone architectures: names, named stages and the freshly initialised functional model.

The weight-free half of `tfvid.models.backbones` (which re-exports every name here and adds
weight loading, `tfvid.models.weights`); the weight loader builds its source models with
`backbone_network`, so the two modules import this one and not each other.
"""
from __future__ import annotations

from typing import Callable

import keras

from tfvid.models import bninception, resnet

# Each has its input normalisation in tfvid.data.normalization.NORMALIZATION (a new backbone
# calls register_normalization beside its definition; tests/test_backbones.py checks both lists).
BACKBONES = ("bninception", "resnet50", "resnet101", "resnext50", "resnext101", "tiny")

CONV1_LAYERS = {name: "conv1_conv" for name in BACKBONES}
CONV1_LAYERS["bninception"] = "conv1_7x7_s2"


def _check(name: str) -> None:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")


def stage_names(name: str) -> tuple[str, ...]:
    """Stage names in order, e.g. ("stem", "res2", "res3", "res4", "res5")."""
    _check(name)
    return bninception.BNINCEPTION_STAGES if name == "bninception" else resnet.RESNET_STAGES


def stage_strides(name: str) -> dict[str, int]:
    """Total spatial stride at the output of each stage (resnet50: res3 8, res5 32)."""
    _check(name)
    if name == "bninception":
        return dict(bninception.BNINCEPTION_STRIDES)
    return dict(resnet.RESNET_STRIDES)


def stage_channels(name: str, width: float = 1.0) -> dict[str, int]:
    """Output channels of each stage (resnet50: res3 512, res4 1024, res5 2048)."""
    _check(name)
    if name == "bninception":
        return bninception.bninception_stage_channels(width)
    return resnet.resnet_stage_channels(name, width)


def feature_dim(name: str, width: float = 1.0) -> int:
    """Channels of the last stage = size of the pooled feature (2048 for ResNet-50, 1024 BN-Inception)."""
    return stage_channels(name, width)[stage_names(name)[-1]]


def conv1_layer_name(name: str) -> str:
    """Name of the first convolution (the one adapted to C != 3 input channels)."""
    _check(name)
    return CONV1_LAYERS[name]


def default_conv_bias(name: str) -> bool:
    """Whether the convs of backbone ``name`` carry biases by default (``conv_bias=None``):
    True for bninception (Caffe layout) and the Keras-applications resnet50/101, False for
    resnext50/101 (torchvision) and tiny."""
    _check(name)
    return True if name == "bninception" else resnet.default_conv_bias(name)


def backbone_stages(name: str, *, width: float = 1.0, synchronized: bool | None = None,
                    conv_bias: bool | None = None) -> list[tuple[str, Callable]]:
    """The ordered named stages of a backbone: ``[(stage_name, fn), ...]``.

    Each ``fn(x: KerasTensor) -> KerasTensor`` creates new layers with deterministic names; call
    each at most once per model. ``width`` multiplies all channel counts; ``synchronized``
    selects ``BatchNormalization(synchronized=True)`` (None: the module default, see
    `use_synchronized_batchnorm`). ``conv_bias`` gives every conv of a ResNet-family backbone
    a bias (True) or none (False); None keeps `default_conv_bias` (bninception only has its
    Caffe layout with biases). Every such conv feeds a BatchNormalization, so the bias is
    redundant and weight loading converts between the two layouts exactly (inference).
    """
    _check(name)
    if name == "bninception":
        if conv_bias is not None and not conv_bias:
            raise ValueError("backbone 'bninception' only exists with conv biases (its Caffe "
                             "layout); pass conv_bias=None or True")
        return bninception.bninception_stages(width=width, synchronized=synchronized)
    return resnet.resnet_stages(name, width=width, synchronized=synchronized,
                                conv_bias=conv_bias)


def _stage_range(name, first_stage, last_stage):
    names = stage_names(name)
    for label, stage in (("first_stage", first_stage), ("last_stage", last_stage)):
        if stage is not None and stage not in names:
            raise ValueError(f"{label}={stage!r} is not a stage of {name}; stages: {names}")
    i = names.index(first_stage) if first_stage else 0
    j = names.index(last_stage) if last_stage else len(names) - 1
    if i > j:
        raise ValueError(f"first_stage={first_stage!r} comes after last_stage={last_stage!r} in {names}")
    return i, j


def backbone_network(name: str, *, input_shape=None, width: float = 1.0,
                     pooling: str | None = "avg", first_stage: str | None = None,
                     last_stage: str | None = None, synchronized: bool | None = None,
                     conv_bias: bool | None = None, model_name: str | None = None) -> keras.Model:
    """The functional model of stages ``first_stage..last_stage`` (default: all), freshly
    initialised: `tfvid.models.backbones.build_backbone` without the weights (its arguments
    but ``weights`` and ``conv1_rule``)."""
    i, j = _stage_range(name, first_stage, last_stage)
    stages = backbone_stages(name, width=width, synchronized=synchronized, conv_bias=conv_bias)
    if input_shape is None:
        if i == 0:
            input_shape = (224, 224, 3)
        else:
            input_shape = (None, None, stage_channels(name, width)[stages[i - 1][0]])
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C), got {input_shape}")
    if i > 0:
        expected = stage_channels(name, width)[stages[i - 1][0]]
        if input_shape[-1] != expected:
            raise ValueError(f"{name} stage {stages[i][0]!r} takes {expected} input channels "
                             f"(output of {stages[i - 1][0]!r}), got input_shape={input_shape}")
    if pooling not in ("avg", "max", None):
        raise ValueError(f"pooling must be 'avg', 'max' or None, got {pooling!r}")

    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for _, fn in stages[i:j + 1]:
        x = fn(x)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    if model_name is None:
        model_name = name if (i, j) == (0, len(stages) - 1) else f"{name}_{stages[i][0]}_{stages[j][0]}"
    return keras.Model(inputs, x, name=model_name)
