"""DenseImage Network (DIN; the DIN paper, docs/din.md).

T frames (TSN's segment rule, T = 8) give T per-frame feature vectors (paper: the 1024-d global
pool of an ImageNet BN-Inception); a fully connected layer 1024 -> 256 turns them into the rows
of the DenseImage X (T x 256, section 3.1). For every temporal width h in 2..6, 256 filters span
h consecutive rows and all columns ('valid' in time), ReLU, max over time (section 3.2); each
width has its own classifier (with an extra dropout before it, section 4.2) and the class
scores of all widths are summed (equation 5; the softmax is in the loss):

    frames (B, T, S, S, C) -> fold (B*T, S, S, C) -> backbone + global avg pool (B*T, D)
      -> unfold (B, T, D) -> dropout (TSN, after global pooling)          [end to end only]
    features (B, T, D) -> [dropout] -> Dense D->256 "embed" (B, T, 256) = the DenseImage
      -> DenseImageConv: per h, Conv1D(256, h, 'valid') + ReLU -> max over time (B, 256)
      -> per h: dropout -> Dense "fc_h<h>" (B, classes) -> sum over h -> (B, classes) logits

One builder gives both modes: ``backbone=None`` is the head on cached features (B, T, D);
``backbone="bninception"`` (the paper) or any tfvid backbone runs end to end on frames. Both
share their head layer names, so head weights move between them by name
(`transfer_head_weights`).

Trainable parameters of the head at the paper's sizes (D = 1024, embed 256, h = 2..6, 256
filters, C classes): Dense 262,400 + convolutions sum_h (65,536 h + 256) = 1,312,000 +
classifiers 5 (256 C + C) = 1,574,400 + 1,285 C (e.g. 1,797,990 for Something-Something's
174 classes, 1,609,095 for Jester's 27).
"""
from __future__ import annotations

import keras

from tfvid.layers.dense_image import (DenseImageConv, check_frames_for_widths,
                                      dense_image_conv_param_count)
from tfvid.layers.partial_bn import apply_partial_bn
from tfvid.layers.segments import FoldSegments, UnfoldSegments
from tfvid.models.arguments import check_choice
from tfvid.models.snippets import DEFAULT_NEW_LENGTH, MODALITIES, snippet_channels
from tfvid.models.spec import model_spec

#: Per-frame feature size of the paper's BN-Inception (global pool), the head-only default.
PAPER_FEATURE_DIM = 1024


def _check_rate(owner, what, rate):
    rate = 0.0 if rate is None else float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{owner}: {what} must be in [0, 1), got {rate}")
    return rate


def frame_features(owner, *, backbone=None, feature_dim=None, num_frames=None, input_size=224,
                   width=1.0, weights=None, modality="rgb", new_length=None,
                   feature_dropout=0.0):
    """The input and the (B, T, D) per-frame feature sequence shared by DIN and VideoMap.

    ``backbone=None``: input "features" (B, T, D) with D = ``feature_dim`` (default 1024, the
    paper's BN-Inception global pool). Otherwise input "frames" (B, T, S, S, C) (C from
    ``modality`` / ``new_length`` as in TSN), a backbone (nested model named after it) run on
    all B*T frames at once with global average pooling and ``conv1_rule="average"`` for
    C != 3; ``feature_dim`` must then be None or the backbone's feature size. A dropout of
    rate ``feature_dropout`` (layer "feature_dropout", TSN's dropout after global pooling)
    follows in both modes when the rate is > 0.

    Returns (inputs, features, D).
    """
    if num_frames is not None and int(num_frames) < 1:
        raise ValueError(f"{owner}: num_frames must be positive or None, got {num_frames}")
    time = None if num_frames is None else int(num_frames)
    feature_dropout = _check_rate(owner, "feature_dropout", feature_dropout)
    if backbone is None:
        dim = PAPER_FEATURE_DIM if feature_dim is None else int(feature_dim)
        if dim < 1:
            raise ValueError(f"{owner}: feature_dim must be positive, got {feature_dim}")
        inputs = keras.Input((time, dim), name="features")
        x = inputs
    else:
        from tfvid.models.backbones import BACKBONES, build_backbone
        from tfvid.models.backbones import feature_dim as backbone_feature_dim
        check_choice(owner, "backbone", backbone, BACKBONES)
        check_choice(owner, "modality", modality, MODALITIES)
        dim = backbone_feature_dim(backbone, width)
        if feature_dim is not None and int(feature_dim) != dim:
            raise ValueError(f"{owner}: feature_dim={feature_dim} does not match backbone "
                             f"{backbone!r} at width {width}, whose features have {dim} "
                             f"channels; leave feature_dim=None with a backbone")
        if input_size is None or int(input_size) < 32:
            raise ValueError(f"{owner}: input_size must be an integer >= 32, got {input_size!r}")
        size = int(input_size)
        length = DEFAULT_NEW_LENGTH[modality] if new_length is None else int(new_length)
        channels = snippet_channels(modality, length)
        inputs = keras.Input((time, size, size, channels), name="frames")
        folded = FoldSegments(name="fold_frames")(inputs)                 # (B*T, S, S, C)
        net = build_backbone(backbone, input_shape=(size, size, channels), width=width,
                             weights=weights, pooling="avg", conv1_rule="average")
        x = UnfoldSegments(name="frame_features")([net(folded), inputs])  # (B, T, D)
    if feature_dropout:
        x = keras.layers.Dropout(feature_dropout, name="feature_dropout")(x)
    return inputs, x, dim


def din_head_param_count(num_classes, feature_dim=PAPER_FEATURE_DIM, embed_dim=256,
                         widths=(2, 3, 4, 5, 6), filters=256) -> int:
    """Trainable parameters of the DIN head: Dense D -> embed, the DenseImageConv and one
    classifier per width. Paper sizes: 1,574,400 + 1,285 * num_classes."""
    d, e, m, c = int(feature_dim), int(embed_dim), int(filters), int(num_classes)
    return (d * e + e) + dense_image_conv_param_count(e, widths, m) + len(widths) * (m * c + c)


#: Keywords a DIN / VideoMap run records (--num_segments is their num_frames T).
FRAME_MODEL_ARGS = ("backbone", "modality", "width", "input_size", "new_length", "dropout",
                    "partial_bn", "feature_dim")
#: Train flags of the models that also train on cached features (--backbone=none).
FEATURE_FLAGS = {"feature": ("string", None, "Cached features (FEATURE/<name>/floats of the "
                        "records, pipelines.extract_features) the head trains on with "
                        "--backbone=none."),
           "feature_dim": ("integer", None, "D of the cached features (default 1024).")}


@model_spec(
    "din", input_kind="frames", feature_input=True, modalities=MODALITIES,
    time_arg="num_frames", default_time=8, sampler="uniform", test_segments=None, test_crops=10,
    recorded_args=FRAME_MODEL_ARGS, flags=FEATURE_FLAGS)
def build_din(num_classes, *, backbone=None, feature_dim=None, num_frames=8, embed_dim=256,
              widths=(2, 3, 4, 5, 6), filters=256, dropout=0.5, feature_dropout=0.8,
              input_size=224, width=1.0, weights=None, partial_bn=True, modality="rgb",
              new_length=None):
    """Builds a DenseImage Network (docs/din.md; paper sections 3.1, 3.2, 4.2).

    Head only (``backbone=None``): input "features" (B, T, D), D = ``feature_dim`` (1024).
    End to end: input "frames" (B, T, S, S, C), S = ``input_size``, C = 3 for RGB (TSN's
    ``modality`` / ``new_length`` rules otherwise). T = ``num_frames`` (8, TSN sampling).
    Output: (B, num_classes) logits, the sum of the per-width classifier scores (eq. 5).

    Layer names (the same in both modes): "feature_dropout", "embed" (the DenseImage),
    "dense_image_conv", "dropout_h<h>", "fc_h<h>", "sum_scores"; end to end also "fold_frames",
    the backbone (a nested model named after it) and "frame_features".

    Trainable parameters of the head: 1,574,400 + 1,285 * num_classes at the paper's sizes
    (`din_head_param_count`); the end-to-end model adds the backbone's.

    Args:
      num_classes: number of classes (174 Something-Something, 27 Jester).
      backbone: None (cached features) or a name of tfvid.models.backbones.BACKBONES
        (BN-Inception in the paper).
      feature_dim: D of the cached features (None: 1024); with a backbone None or the
        backbone's feature size (taken from it).
      num_frames: T (8). None allows any T >= max(widths): the check then runs at call time
        (a TensorFlow assertion inside DenseImageConv) instead of at build time.
      embed_dim: columns of the DenseImage (256; Dense D -> 256, no activation).
      widths: temporal widths h (2..6); a width larger than T is refused (ValueError).
      filters: filters per width (256).
      dropout: the extra dropout before each classifier (section 4.2; the rate is not given:
        0.5).
      feature_dropout: TSN's dropout after global pooling (0.8, TSN's RGB rate), applied to the
        per-frame features in both modes; 0 disables it.
      input_size, width, weights, modality, new_length: of the backbone, as in build_tsn
        (weights: None, "imagenet" or a file; ignored without a backbone).
      partial_bn: freeze every BatchNormalization of the backbone but the first (TSN).
    """
    owner = "build_din"
    widths = tuple(int(h) for h in widths)
    if not widths or min(widths) < 1 or len(set(widths)) != len(widths):
        raise ValueError(f"{owner}: widths must be distinct positive integers, got {widths}")
    check_frames_for_widths(owner, num_frames, widths)
    if int(embed_dim) < 1 or int(filters) < 1:
        raise ValueError(f"{owner}: embed_dim and filters must be positive, got "
                         f"{embed_dim}, {filters}")
    dropout = _check_rate(owner, "dropout", dropout)
    inputs, x, _ = frame_features(owner, backbone=backbone, feature_dim=feature_dim,
                                  num_frames=num_frames, input_size=input_size, width=width,
                                  weights=weights, modality=modality, new_length=new_length,
                                  feature_dropout=feature_dropout)
    x = keras.layers.Dense(int(embed_dim), name="embed")(x)                # (B, T, 256)
    features = DenseImageConv(widths=widths, filters=int(filters),
                              name="dense_image_conv")(x)                  # [(B, M)] * |H|
    scores = []
    for h, c in zip(widths, features):
        if dropout:
            c = keras.layers.Dropout(dropout, name=f"dropout_h{h}")(c)
        scores.append(keras.layers.Dense(num_classes, name=f"fc_h{h}")(c))
    outputs = keras.layers.Add(name="sum_scores")(scores) if len(scores) > 1 else scores[0]
    model = keras.Model(inputs, outputs, name=f"din_{backbone or 'head'}")
    if partial_bn and backbone is not None:
        apply_partial_bn(model)
    return model


def transfer_head_weights(source, target, skip=None):
    """Copies the weights of every layer of ``source`` that has weights and a namesake in
    ``target`` (e.g. a head-only DIN / VideoMap into the end-to-end model, or back), except the
    names in ``skip``. Returns the copied layer names."""
    skip = set(skip or ())
    names = {layer.name for layer in target.layers}
    copied = []
    for layer in source.layers:
        if layer.name in skip or layer.name not in names or not layer.weights:
            continue
        target.get_layer(layer.name).set_weights(layer.get_weights())
        copied.append(layer.name)
    return copied
