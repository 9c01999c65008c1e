"""Temporal Segment Networks (Wang et al., the TSN paper, docs/tsn.md).

A video is split into K segments and one snippet is sampled from each (section 3.1). One 2D
ConvNet with shared weights scores every snippet; a segmental consensus (section 3.2) turns
the K snippet scores into one video score, before the softmax. Good practices of section 3.4
are built in: cross-modality initialisation of conv1 for flow / RGB difference (done by the
backbone, rule "average"), partial BN, and a high-rate dropout after global pooling.

The backbone runs once on all B*K snippets (a reshape, never a Python loop over time):

    (B, K, S, S, C) -> (B*K, S, S, C) -> backbone -> (B*K, D) -> dropout -> fc
    -> (B*K, classes) -> (B, K, classes) -> consensus -> (B, classes) logits
"""
import keras

from tfvid.layers.consensus import CONSENSUS_MODES, SegmentConsensus
from tfvid.layers.partial_bn import apply_partial_bn
from tfvid.layers.segments import FoldSegments, UnfoldSegments
from tfvid.models.arguments import check_choice
from tfvid.models.snippets import (DEFAULT_DROPOUT, DEFAULT_NEW_LENGTH, MODALITIES,  # noqa: F401
                                   snippet_channels)
from tfvid.models.spec import model_spec


@model_spec(
    "tsn", modalities=MODALITIES, time_arg="num_segments", default_time=3, sampler="tsn",
    test_segments=25, test_crops=10,   # docs/tsn.md: 25 snippets x 10 crops
    variable_time=lambda cfg: cfg.get("consensus") != "weighted",   # one weight per segment
    recorded_args=("backbone", "modality", "width", "input_size", "num_segments", "new_length",
                   "consensus", "dropout", "partial_bn", "top_k"),
    flags={"consensus": ("string", "avg", "Segmental consensus: avg, max, topk, weighted, "
                         "attention.")})
def build_tsn(num_classes, *, backbone="bninception", modality="rgb", num_segments=3,
              new_length=None, input_size=224, consensus="avg", dropout=None,
              partial_bn=True, weights=None, width=1.0, top_k=2):
    """Builds a Temporal Segment Network (paper sections 3.1-3.4) as a functional keras.Model.

    Input: (B, K, S, S, C) float snippets, channels last, S = ``input_size``, K =
    ``num_segments`` (None: any K, e.g. train with 3 and test with 25 snippets), and
    C = 3 (rgb), 2L = 10 (flow, interleaved x1, y1, ..., x5, y5) or 3(L-1) = 15 (rgbdiff,
    [D_1 rgb, D_2 rgb, ...]). Output: (B, num_classes) video logits (no softmax).

    Args:
      num_classes: number of action classes.
      backbone: a name of ``tfvid.models.backbones.BACKBONES`` (BN-Inception in the paper).
      modality: "rgb", "flow" or "rgbdiff".
      num_segments: K (3 in the paper's training); None for a variable K.
      new_length: frames per snippet L; default 1 (rgb), 5 (flow), 6 (rgbdiff).
      input_size: spatial side S of the square input (224).
      consensus: one of ``tfvid.layers.CONSENSUS_MODES``: "avg" (default), "max", "topk",
        "weighted" (needs a fixed num_segments) or "attention".
      dropout: rate after global pooling; default 0.8 (rgb), 0.7 (flow, rgbdiff).
      partial_bn: freeze every BatchNormalization except the first (section 3.4).
      weights: None, "imagenet" or a file path, passed to the backbone; for flow / rgbdiff the
        backbone adapts conv1 by cross-modality initialisation (RGB kernel averaged over its
        3 input channels and replicated to C channels).
      width: backbone width multiplier (small widths for tests).
      top_k: k of the "topk" consensus.
    """
    check_choice("build_tsn", "modality", modality, MODALITIES)
    check_choice("build_tsn", "consensus", consensus, CONSENSUS_MODES)
    # Imported here so that tfvid.models imports even while backbones are being built.
    from tfvid.models.backbones import BACKBONES, build_backbone
    check_choice("build_tsn", "backbone", backbone, BACKBONES)
    if consensus == "weighted" and num_segments is None:
        raise ValueError("build_tsn: consensus='weighted' learns one weight per segment and "
                         "needs a fixed num_segments (got None)")
    new_length = DEFAULT_NEW_LENGTH[modality] if new_length is None else int(new_length)
    channels = snippet_channels(modality, new_length)
    rate = DEFAULT_DROPOUT[modality] if dropout is None else float(dropout)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"build_tsn: dropout must be in [0, 1), got {rate}")

    inputs = keras.Input((num_segments, input_size, input_size, channels), name="snippets")
    snippets = FoldSegments(name="fold_segments")(inputs)              # (B*K, S, S, C)
    net = build_backbone(backbone, input_shape=(input_size, input_size, channels),
                         width=width, weights=weights, pooling="avg", conv1_rule="average")
    features = net(snippets)                                           # (B*K, D)
    x = keras.layers.Dropout(rate, name="dropout")(features)
    # The authors' code initialises the new classifier with N(0, 0.001) and zero bias.
    x = keras.layers.Dense(num_classes, name="fc",
                           kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                           bias_initializer="zeros")(x)                # (B*K, classes)
    segment_logits = UnfoldSegments(name="segment_logits")([x, inputs])  # (B, K, classes)
    head = SegmentConsensus(mode=consensus, top_k=top_k, num_segments=num_segments,
                            name="consensus")
    if consensus == "attention":
        segment_features = UnfoldSegments(name="segment_features")([features, inputs])
        outputs = head([segment_logits, segment_features])
    else:
        outputs = head(segment_logits)
    model = keras.Model(inputs, outputs, name=f"tsn_{backbone}_{modality}")
    if partial_bn:
        apply_partial_bn(model)
    return model
