"""StNet: local and global spatial-temporal modelling (He et al., AAAI 2019, the StNet paper, docs/stnet.md).

A video becomes T super-images, each N consecutive RGB frames stacked on channels (3N
channels, frame-major: channel c is frame c // 3, colour c % 3; section 3 "Super-Image").
A 2D ResNet runs on all B*T super-images at once (conv1 takes 3N channels); temporal modelling
blocks (Conv3D (3, 1, 1)) after res3 and res4 mix neighbouring super-images; per-frame global
average pooling gives a (B, T, 2048) sequence that the temporal Xception block models before a
max over time and the classifier (section 3, Figs. 2 and 3; docs/stnet.md):

    (B, T, S, S, 3N) -> fold (B*T, S, S, 3N) -> conv1 .. res3 -> TM block -> res4 -> TM block
    -> res5 -> GAP (B*T, 2048) -> unfold (B, T, 2048) -> TXB (B, T, 1024) -> max over T
    -> [dropout] -> fc -> (B, classes) logits

The temporal blocks unfold to (B, T, h, w, C) and fold back, so the time axis may be variable
(num_segments=None): the paper trains with T = 7 and tests with T = 25. The weights do not
depend on T or on the spatial size, so the 256 x 256 centre-crop test is a model rebuilt with
``num_segments=None, input_size=256`` loading the trained weights.

Trainable parameters for 400 classes (BN moving statistics excluded): temporal blocks
3,936,768, TXB 5,266,432, fc 410,000. The backbone is built bias-free by default
(``conv_bias=False``), like the ResNet-50 of the PaddlePaddle code: the total is 33,158,864
(paper Table 3: 33.16M). ``conv_bias=True`` keeps the Keras-applications layout, whose 53
convs carry 26,560 redundant biases (each conv feeds a BN): 33,185,424. Keras / ImageNet
weights load into either; for the bias-free one the conv biases are folded into the BN moving
means (see tfvid.models.weights), which gives the same backbone outputs in inference.
"""
from __future__ import annotations

import keras

from tfvid.layers.segments import FoldSegments, UnfoldSegments
from tfvid.layers.temporal import (TEMPORAL_BLOCK_VARIANTS, TemporalModelingBlock,
                                   TemporalXceptionBlock)
from tfvid.models.arguments import check_choice
from tfvid.models.spec import model_spec

#: Backbones with the res3 / res4 stages after which the temporal modelling blocks go.
STNET_BACKBONES = ("resnet50", "resnet101", "resnext50", "resnext101", "tiny")
#: Stages followed by a temporal modelling block (section 3, "right after the Res3 and Res4").
TEMPORAL_STAGES = ("res3", "res4")


@model_spec(
    "stnet", modalities=("rgb",), time_arg="num_segments", default_time=7, sampler="stnet",
    test_segments=25, test_crops=1,    # docs/stnet.md: T = 25 super-images, one centre crop
    test_input_size=256,               # ... of 256 x 256, not rescaled (official test reader)
    augmentation="random_crop_flip",   # official training reader: random 224 crop + flip
    recorded_args=("backbone", "width", "input_size", "num_segments", "frames_per_segment",
                   "temporal_block", "dropout"),
    flags={"frames_per_segment": ("integer", None, "StNet: frames N stacked into each "
                                  "super-image (paper: 5)."),
           "temporal_block": ("string", None, "StNet temporal modelling block: official "
                              "(Conv3D, ReLU, BN, residual add; PaddlePaddle code) or paper "
                              "(Conv3D, BN, ReLU, 1/(3C) init).")})
def build_stnet(num_classes, *, backbone="resnet50", num_segments=7, frames_per_segment=5,
                input_size=224, weights=None, width=1.0, temporal_block="official",
                txb_width=1024, dropout=0.0, synchronized=None, conv_bias=False):
    """Builds StNet (paper section 3) as a functional keras.Model.

    Input: (B, T, S, S, 3N) float super-images, channels last, T = ``num_segments`` (None: any
    T), N = ``frames_per_segment``, S = ``input_size``; the layout of
    ``build_dataset(..., sampler=StNetSampler(), modality="rgb")``. Output: (B, num_classes)
    logits (no softmax).

    Args:
      num_classes: number of action classes.
      backbone: one of ``STNET_BACKBONES`` (ResNet-50 in the paper's Kinetics-400 results).
      num_segments: T super-images (7 for training in the paper, 25 for testing); None for a
        variable T.
      frames_per_segment: N frames per super-image (5).
      input_size: spatial side S (224 training crop; 256 at test time: rebuild and load).
      weights: None, "imagenet" or a backbone weights file; conv1 is adapted to 3N channels
        by the "stnet" rule (RGB kernel averaged over colours, divided by N, replicated 3N
        times, section 3 "Super-Image" / I3D). The temporal blocks, TXB and fc stay new.
      width: backbone width multiplier (small widths for tests).
      temporal_block: "official" (Conv3D-ReLU-BN + residual, He init; PaddlePaddle code) or
        "paper" (Conv3D-BN-ReLU, kernel 1/(3C), no residual); see tfvid.layers.temporal.
      txb_width: output channels of the temporal Xception block (1024).
      dropout: rate before the classifier; the paper and the official code use none (0;
        None also means 0).
      synchronized: BatchNormalization(synchronized=...) everywhere (None: the backbone
        module's default, see tfvid.models.backbones.use_synchronized_batchnorm).
      conv_bias: backbone convs with biases (True: the Keras-applications ResNet layout, None:
        the backbone's default) or without (False, default: the official PaddlePaddle
        ResNet, 33,158,864 parameters for ResNet-50 and 400 classes). Checkpoints of a whole
        StNet must be loaded into a model built with the same value.
    """
    from tfvid.models.backbones import backbone_stages
    from tfvid.models.resnet import synchronized_batchnorm
    from tfvid.models.weights import load_backbone_weights

    check_choice("build_stnet", "backbone", backbone, STNET_BACKBONES,
                 "StNet inserts temporal blocks after res3 and res4")
    check_choice("build_stnet", "temporal_block", temporal_block, TEMPORAL_BLOCK_VARIANTS)
    if input_size is None or int(input_size) < 32:
        raise ValueError(f"build_stnet: input_size must be an integer >= 32, got {input_size!r} "
                         f"(the weights do not depend on it: rebuild with the test size and "
                         f"load them)")
    if num_segments is not None and int(num_segments) < 1:
        raise ValueError(f"build_stnet: num_segments must be positive or None, got {num_segments}")
    if int(frames_per_segment) < 1:
        raise ValueError(f"build_stnet: frames_per_segment must be positive, "
                         f"got {frames_per_segment}")
    dropout = 0.0 if dropout is None else float(dropout)   # None: the paper's (none)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"build_stnet: dropout must be in [0, 1), got {dropout}")
    sync = synchronized_batchnorm() if synchronized is None else bool(synchronized)
    size = int(input_size)
    channels = 3 * int(frames_per_segment)
    time = None if num_segments is None else int(num_segments)

    inputs = keras.Input((time, size, size, channels), name="super_images")
    x = FoldSegments(name="fold_segments")(inputs)                     # (B*T, S, S, 3N)
    for stage, fn in backbone_stages(backbone, width=width, synchronized=sync,
                                     conv_bias=conv_bias):
        x = fn(x)                                                      # (B*T, h, w, C)
        if stage in TEMPORAL_STAGES:
            x = UnfoldSegments(name=f"unfold_{stage}")([x, inputs])   # (B, T, h, w, C)
            x = TemporalModelingBlock(variant=temporal_block, synchronized=sync,
                                      name=f"temporal_{stage}")(x)
            x = FoldSegments(name=f"fold_{stage}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)        # (B*T, D)
    x = UnfoldSegments(name="frame_features")([x, inputs])             # (B, T, D)
    x = TemporalXceptionBlock(width=txb_width, synchronized=sync, name="temporal_xception")(x)
    x = keras.layers.GlobalMaxPooling1D(name="max_over_time")(x)      # (B, txb_width)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="fc")(x)
    model = keras.Model(inputs, outputs, name=f"stnet_{backbone}")
    if weights is not None:
        load_backbone_weights(model, backbone, weights, width=width, conv1_rule="stnet",
                              strict=False)
    return model


def backbone_conv_biases(model) -> int:
    """Number of conv bias parameters of the 2D backbone inside a StNet model: 0 for the
    default bias-free build, 26,560 for ResNet-50 with ``conv_bias=True`` (the difference
    between the Keras-applications and the PaddlePaddle layouts)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            total += int(layer.bias.shape[0])
    return total
