"""Temporal-Spatial Mapping: the VideoMap and its head ConvNet with hierarchical temporal
attention (Song et al., the VideoMap paper, docs/videomap.md).

The per-frame features f_1 .. f_T (length D; the paper: the 1024-d global average pool of TSN's
BN-Inception) are stacked as the rows of the VideoMap M, a (T, D) one-channel image (section
III). A shallow head ConvNet classifies it (section VI-B): three blocks of [Conv 5x5, ReLU,
MaxPool 3x3 stride 2] and a classifier. An attention branch (two such blocks and a fully
connected layer) gives one weight per frame a0; a_i = max-pool of a_{i-1} (3, stride 2, the
head's row pooling), and the head's map after block i is multiplied row-wise by a_i
(F~_i = A_i(M) o F_i(M), F_0 = M; section IV):

    frames (B, T, S, S, C) -> backbone per frame -> (B, T, D)              [end to end only]
    features (B, T, D) -> "videomap" (B, T, D, 1) = F_0
      attention: conv5x5(16)+ReLU+pool -> conv5x5(32)+ReLU+pool (B, T2, D2, 32)
                 -> mean over columns (B, T2, 32) -> FC -> sigmoid -> a0 (B, T)
                 a1 = maxpool(a0) (B, T1), a2 = maxpool(a1) (B, T2)
      head:      F_0 * a0 -> block 1 (32) -> F_1 * a1 -> block 2 (64) -> F_2 * a2
                 -> block 3 (128) (B, T3, D3, 128) -> global average pool -> dropout -> fc
    -> (B, num_classes) logits

with T_{i+1} = (T_i - 3) // 2 + 1 ('valid' pooling; T = 256: 127, 63, 31). tfvid calls the
model ``videomap`` because "TSM" names the Temporal Shift Module elsewhere.

Trainable parameters with the defaults (T = 256, D = 1024, attention "all"), C classes:
head convolutions 832 + 51,264 + 204,928 = 257,024; attention convolutions 416 + 12,832 and
fully connected (63 * 32 + 1) * 256 = 516,352, together 529,600; classifier 129 C.
Total 786,624 + 129 C (793,203 for HMDB51's 51 classes). Without attention: 257,024 + 129 C.
"""
from __future__ import annotations

import keras

from tfvid.layers.partial_bn import apply_partial_bn
from tfvid.layers.temporal_attention import (ATTENTION_ACTIVATIONS, COLUMN_POOLINGS,
                                             ColumnPooling, PoolAttention, ScaleRows,
                                             TemporalAttention, pooled_length)
from tfvid.models.arguments import check_choice
from tfvid.models.din import FEATURE_FLAGS, FRAME_MODEL_ARGS, _check_rate, frame_features
from tfvid.models.spec import model_spec
from tfvid.models.snippets import MODALITIES

#: Paper ablation (Table III): no attention, A0 only, A1 and A2, all three.
ATTENTION_MODES = ("none", "a0", "a1a2", "all")
#: How the head's last map becomes the classifier's input.
CLASSIFIER_POOLINGS = ("avg", "max", "flatten")
KERNEL_SIZE = 5                         # "convolutional layer with 5x5 kernels"
POOL_SIZE, POOL_STRIDES, POOL_PADDING = 3, 2, "valid"   # "3x3 sized kernel of stride 2"
#: Frames per VideoMap when training (section VI-B: 256; tested with 25 .. 256).
DEFAULT_NUM_FRAMES = 256


def min_frames(num_pools: int = 3) -> int:
    """Smallest T (or D) that keeps >= 1 row after ``num_pools`` 3x3 stride-2 'valid' max
    pools: 2^(n+1) - 1, i.e. 15 for the head's three blocks."""
    return 2 ** (int(num_pools) + 1) - 1


def _pooled(length, times):
    for _ in range(times):
        length = pooled_length(length, POOL_SIZE, POOL_STRIDES, POOL_PADDING)
    return length


def attended_levels(attention: str, num_blocks: int = 3) -> tuple[int, ...]:
    """The i of the maps F_i multiplied by a_i: "all" (0, 1, 2), "a0" (0,), "a1a2" (1, 2),
    "none" ()."""
    check_choice("videomap", "attention", attention, ATTENTION_MODES)
    levels = {"none": (), "a0": (0,), "a1a2": tuple(range(1, num_blocks)),
              "all": tuple(range(num_blocks))}
    return levels[attention]


def videomap_head_param_count(num_classes, num_frames=DEFAULT_NUM_FRAMES,
                              feature_dim=1024, filters=(32, 64, 128),
                              attention_filters=(16, 32), attention="all",
                              classifier_pooling="avg") -> int:
    """Trainable parameters of the VideoMap head (786,624 + 129 * num_classes by default)."""
    k2 = KERNEL_SIZE * KERNEL_SIZE
    total, channels = 0, 1
    for f in filters:
        total += k2 * channels * f + f
        channels = f
    if classifier_pooling == "flatten":
        n = len(filters)
        features = _pooled(num_frames, n) * _pooled(feature_dim, n) * channels
    else:
        features = channels
    total += features * num_classes + num_classes
    if attention != "none":
        channels = 1
        for f in attention_filters:
            total += k2 * channels * f + f
            channels = f
        rows = _pooled(num_frames, len(attention_filters))
        total += (rows * channels + 1) * num_frames
    return total


@model_spec(
    "videomap", input_kind="frames", feature_input=True, modalities=MODALITIES,
    time_arg="num_frames", default_time=DEFAULT_NUM_FRAMES, sampler="uniform",
    test_segments=None, test_crops=10,
    variable_time=False,      # the attention's fully connected layer fixes T
    recorded_args=FRAME_MODEL_ARGS, flags=FEATURE_FLAGS)
def build_videomap(num_classes, *, backbone=None, feature_dim=None,
                   num_frames=DEFAULT_NUM_FRAMES, filters=(32, 64, 128),
                   attention_filters=(16, 32), attention="all", attention_activation="sigmoid",
                   attention_pooling="avg", classifier_pooling="avg", dropout=0.5,
                   feature_dropout=0.0, input_size=224, width=1.0, weights=None,
                   partial_bn=True, modality="rgb", new_length=None):
    """Builds the VideoMap head ConvNet with temporal attention (docs/videomap.md; paper
    sections III, IV and VI-B).

    Head only (``backbone=None``, the paper's second training stage on cached features): input
    "features" (B, T, D), D = ``feature_dim`` (1024). End to end: input "frames"
    (B, T, S, S, C) through a tfvid backbone, as `tfvid.models.din.build_din` (same shared
    keywords). Output: (B, num_classes) logits. The frame weights a0 are the output of the
    layer "attention_a0" (B, T); `videomap_attention` returns them for a batch.

    Choices where the paper is silent (all arguments):
      * Convolutions 'same' (5x5, stride 1) so only the pools shrink the map; pools 3x3 stride
        2 'valid' (each window inside the map), so a_i = maxpool(a_{i-1}) with the same pool
        has exactly the rows of F_i. T = 256 gives 127, 63, 31 rows; the three pools need
        T >= 15 and D >= 15 (`min_frames`), shorter maps are refused.
      * filters=(32, 64, 128) (doubling per block, small: the paper found deeper heads
        over-fit HMDB51) and attention_filters=(16, 32) (half the head's, the branch only
        scores frames).
      * The attention branch averages its map over the feature columns before the fully
        connected layer (``attention_pooling="avg"``): a fully connected layer on the whole
        (63, 255, 32) map would need 131M weights for T = 256; after the column mean it sees
        the whole time axis with 516,352 weights.
      * attention_activation="sigmoid": every frame is gated into (0, 1) independently, which
        cannot blow up a row; "softmax" gives T * softmax over time (mean 1, frames compete).
        No other normalisation.
      * Classifier: global average pooling of the last map (``classifier_pooling``: "avg";
        "max" or "flatten" also possible), dropout 0.5, one Dense.
      * num_frames=256 (the paper's training density). The fully connected attention layer
        outputs one weight per frame, so with attention T is fixed; the paper's tests at 25 ..
        256 frames then need one model per density. ``attention="none"`` with a global
        classifier pooling allows ``num_frames=None`` (any T >= 15 at call time; not checked).

    Trainable parameters at the defaults (T = 256, D = 1024, attention "all"):
    786,624 + 129 * num_classes (`videomap_head_param_count`; see the module docstring).

    Args:
      num_classes: number of classes (51 for HMDB51).
      backbone, feature_dim, num_frames, input_size, width, weights, partial_bn, modality,
        new_length: as `build_din` (feature_dim None: 1024 head only, the backbone's with one).
      filters: output channels of the head's blocks (3 blocks in the paper).
      attention_filters: output channels of the attention branch's blocks (2 in the paper).
      attention: "all" (a0, a1, a2), "a0", "a1a2" or "none" (paper Table III).
      attention_activation: "sigmoid" or "softmax" (see above).
      attention_pooling: "avg" or "max" over the attention map's columns.
      classifier_pooling: "avg", "max" (global) or "flatten".
      dropout: rate before the classifier (0.5).
      feature_dropout: dropout on the per-frame features (0: the paper trains the head on
        cached features without one).
    """
    owner = "build_videomap"
    check_choice(owner, "attention", attention, ATTENTION_MODES)
    check_choice(owner, "attention_activation", attention_activation, ATTENTION_ACTIVATIONS)
    check_choice(owner, "attention_pooling", attention_pooling, COLUMN_POOLINGS)
    check_choice(owner, "classifier_pooling", classifier_pooling, CLASSIFIER_POOLINGS)
    filters = tuple(int(f) for f in filters)
    attention_filters = tuple(int(f) for f in attention_filters)
    if not filters or min(filters) < 1:
        raise ValueError(f"{owner}: filters must be positive channel counts, got {filters}")
    if attention != "none" and (not attention_filters or min(attention_filters) < 1):
        raise ValueError(f"{owner}: attention_filters must be positive channel counts, got "
                         f"{attention_filters}")
    pools = max(len(filters), len(attention_filters) if attention != "none" else 0)
    minimum = min_frames(pools)
    if num_frames is None:
        if attention != "none":
            raise ValueError(f"{owner}: attention={attention!r} outputs one weight per frame "
                             f"from a fully connected layer and needs a fixed num_frames "
                             f"(got None); use attention='none' for a variable T")
        if classifier_pooling == "flatten":
            raise ValueError(f"{owner}: classifier_pooling='flatten' needs a fixed num_frames")
    elif int(num_frames) < minimum:
        raise ValueError(f"{owner}: num_frames=T={int(num_frames)} is too short for the "
                         f"head's {pools} max pools (3x3, stride 2, 'valid'): the minimum is "
                         f"T={minimum} frames")
    dropout = _check_rate(owner, "dropout", dropout)
    inputs, x, dim = frame_features(owner, backbone=backbone, feature_dim=feature_dim,
                                    num_frames=num_frames, input_size=input_size, width=width,
                                    weights=weights, modality=modality, new_length=new_length,
                                    feature_dropout=feature_dropout)
    if dim < minimum:
        raise ValueError(f"{owner}: feature_dim=D={dim} is too narrow for the head's {pools} "
                         f"max pools (3x3, stride 2, 'valid'): the minimum is D={minimum}")
    time = None if num_frames is None else int(num_frames)
    videomap = keras.layers.Reshape((time or -1, dim, 1), name="videomap")(x)   # (B, T, D, 1)

    def block(t, f, prefix, i):
        t = keras.layers.Conv2D(f, KERNEL_SIZE, padding="same", activation="relu",
                                name=f"{prefix}conv{i}")(t)
        return keras.layers.MaxPooling2D(POOL_SIZE, POOL_STRIDES, padding=POOL_PADDING,
                                         name=f"{prefix}pool{i}")(t)

    levels = attended_levels(attention, len(filters))
    weights_per_level = []
    if levels:
        a = videomap
        for i, f in enumerate(attention_filters, start=1):
            a = block(a, f, "att_", i)                                   # (B, T_i, D_i, f)
        a = ColumnPooling(attention_pooling, name="att_column_pool")(a)  # (B, T_2, f)
        a = TemporalAttention(time, activation=attention_activation,
                              name="attention_a0")(a)                    # (B, T)
        weights_per_level.append(a)
        for i in range(1, max(levels) + 1):
            a = PoolAttention(POOL_SIZE, POOL_STRIDES, POOL_PADDING,
                              name=f"attention_a{i}")(a)                 # (B, T_i)
            weights_per_level.append(a)

    y = videomap
    for i, f in enumerate(filters):
        if i in levels:
            y = ScaleRows(name=f"attend_f{i}")([y, weights_per_level[i]])
        y = block(y, f, "", i + 1)
    if classifier_pooling == "avg":
        y = keras.layers.GlobalAveragePooling2D(name="global_pool")(y)
    elif classifier_pooling == "max":
        y = keras.layers.GlobalMaxPooling2D(name="global_pool")(y)
    else:
        y = keras.layers.Flatten(name="flatten")(y)
    if dropout:
        y = keras.layers.Dropout(dropout, name="dropout")(y)
    outputs = keras.layers.Dense(num_classes, name="fc")(y)
    model = keras.Model(inputs, outputs, name=f"videomap_{backbone or 'head'}")
    if partial_bn and backbone is not None:
        apply_partial_bn(model)
    return model


def videomap_attention(model, inputs, level=0):
    """The frame weights a_level (B, T_level) of a VideoMap ``model`` for ``inputs`` (what the
    model takes: features or frames) as a numpy array, in inference mode; a0 (level 0) has one
    weight per frame, for plots. ValueError for a model built with attention='none'."""
    name = f"attention_a{int(level)}"
    try:
        layer = model.get_layer(name)
    except ValueError:
        raise ValueError(f"videomap_attention: model {model.name!r} has no layer {name!r} (built "
                         f"with attention='none', or level {level} is not computed)") from None
    source = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(source, layer.output, name=f"{model.name}_{name}")
    return keras.ops.convert_to_numpy(probe(inputs, training=False))
