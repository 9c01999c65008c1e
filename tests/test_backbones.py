"""Backbones: stage names/shapes/channels, sub-network composition, parameter counts."""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfvid.models import backbones, bninception  # noqa: E402
from tfvid.models.backbones import (BACKBONES, backbone_stages, build_backbone,  # noqa: E402
                                    feature_dim, stage_channels, stage_names, stage_strides)
from tfvid.models.weights import copy_weights_by_name  # noqa: E402

SMALL = {"tiny": 1.0, "bninception": 0.125, "resnet50": 0.125, "resnet101": 0.125,
         "resnext50": 0.125, "resnext101": 0.125}


def _with_head(model, classes=1000):
    return keras.Model(model.input, keras.layers.Dense(classes, name="fc")(model.output))


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# --------------------------------------------------------------------------- stages
@pytest.mark.parametrize("name", ["tiny", "bninception", "resnet50", "resnext50"])
def test_stage_outputs_have_documented_shapes(name):
    width = SMALL[name]
    x = inputs = keras.Input((64, 64, 3))
    channels, strides = stage_channels(name, width), stage_strides(name)
    seen = []
    for stage, fn in backbone_stages(name, width=width):
        x = fn(x)
        seen.append(stage)
        assert tuple(x.shape) == (None, 64 // strides[stage], 64 // strides[stage],
                                  channels[stage]), stage
    assert tuple(seen) == stage_names(name) == tuple(channels)
    model = keras.Model(inputs, x)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert x.shape[-1] == feature_dim(name, width)


def test_stage_names_and_paper_channels():
    assert BACKBONES == ("bninception", "resnet50", "resnet101", "resnext50", "resnext101", "tiny")
    for name in ("resnet50", "resnet101", "resnext50", "resnext101"):
        assert stage_names(name) == ("stem", "res2", "res3", "res4", "res5")
        assert stage_channels(name) == {"stem": 64, "res2": 256, "res3": 512, "res4": 1024,
                                        "res5": 2048}
        assert feature_dim(name) == 2048
    assert stage_names("bninception") == ("stem", "inception3", "inception4", "inception5")
    assert stage_channels("bninception") == {"stem": 192, "inception3": 576,
                                             "inception4": 1056, "inception5": 1024}
    assert feature_dim("bninception") == 1024
    assert stage_channels("tiny") == {"stem": 16, "res2": 16, "res3": 32, "res4": 64, "res5": 128}
    assert stage_strides("resnet50")["res3"] == 8 and stage_strides("bninception")["stem"] == 8
    # width scales channels; grouped convs keep 32 groups (at least one channel per group)
    assert stage_channels("resnet50", 0.125)["res5"] == 256
    assert feature_dim("bninception", 0.5) == 512


def test_resnext_keeps_32_groups_at_small_width():
    model = build_backbone("resnext50", input_shape=(32, 32, 3), width=0.125, pooling=None)
    conv = model.get_layer("conv2_block1_2_conv")
    assert conv.groups == 32 and conv.filters == 32
    assert model.get_layer("conv5_block1_2_conv").filters == 128
    assert model.get_layer("conv3_block1_2_pad") is not None  # stride on the 3x3, padded 1


@pytest.mark.parametrize("name,split", [("tiny", "res3"), ("bninception", "inception3"),
                                        ("resnext50", "res2")])
def test_first_and_last_stage_compose_to_full_network(name, split):
    width = SMALL[name]
    full = build_backbone(name, input_shape=(64, 64, 3), width=width)
    names = stage_names(name)
    nxt = names[names.index(split) + 1]
    head = build_backbone(name, input_shape=(64, 64, 3), width=width, last_stage=split,
                          pooling=None)
    tail = build_backbone(name, width=width, first_stage=nxt)
    assert tuple(tail.input.shape) == (None, None, None, stage_channels(name, width)[split])
    copy_weights_by_name(full, head)
    copy_weights_by_name(full, tail)
    # every weighted layer of the full network lives in exactly one part
    parts = {l.name for l in head.layers if l.weights} | {l.name for l in tail.layers if l.weights}
    assert parts == {l.name for l in full.layers if l.weights}
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(tail(head(x)).numpy(), full(x).numpy(), rtol=1e-5, atol=1e-5)


def test_variable_spatial_size_and_input_channels():
    model = build_backbone("tiny", input_shape=(None, None, 10), pooling=None)
    assert tuple(model.get_layer("conv1_conv").kernel.shape) == (3, 3, 10, 16)
    for side in (48, 64):
        out = model(np.zeros((1, side, side, 10), "float32"))
        assert tuple(out.shape) == (1, -(-side // 32), -(-side // 32), 128)  # ceil
    pooled = build_backbone("bninception", input_shape=(None, None, 15), width=0.125)
    assert tuple(pooled.get_layer("conv1_7x7_s2").kernel.shape) == (7, 7, 15, 8)
    assert tuple(pooled(np.zeros((3, 96, 96, 15), "float32")).shape) == (3, 128)


@pytest.mark.parametrize("side", [224, 225, 97, 64])
def test_bninception_sizes_follow_caffe_ceil_mode(side):
    """conv floor((n + 2p - k)/s) + 1, Caffe max pool ceil((n - 3)/2) + 1."""
    def conv(n, k, s, p):
        return (n + 2 * p - k) // s + 1

    def pool(n):
        return math.ceil((n - 3) / 2) + 1

    stem = pool(pool(conv(side, 7, 2, 3)))
    s3 = max(conv(stem, 3, 2, 1), pool(stem))
    assert conv(stem, 3, 2, 1) == pool(stem)  # the branches of 3c agree
    s4 = conv(s3, 3, 2, 1)
    model = build_backbone("bninception", input_shape=(side, side, 3), width=0.125,
                           pooling=None, last_stage="inception4")
    sizes = {layer.name: layer.output.shape[1] for layer in model.layers}
    assert sizes["pool2_3x3_s2"] == stem
    assert sizes["inception_3c_output"] == s3
    assert sizes["inception_4e_output"] == s4
    if side == 224:
        assert (stem, s3, s4) == (28, 14, 7)


def test_synchronized_batchnorm_option():
    model = build_backbone("tiny", input_shape=(32, 32, 3), synchronized=True)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.synchronized for l in bns)
    backbones.use_synchronized_batchnorm(True)
    try:
        model = build_backbone("tiny", input_shape=(32, 32, 3))
        assert all(l.synchronized for l in model.layers
                   if isinstance(l, keras.layers.BatchNormalization))
    finally:
        backbones.use_synchronized_batchnorm(False)
    model = build_backbone("tiny", input_shape=(32, 32, 3))
    assert not any(l.synchronized for l in model.layers
                   if isinstance(l, keras.layers.BatchNormalization))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet18")
    with pytest.raises(ValueError, match="not a stage"):
        build_backbone("tiny", last_stage="inception4")
    with pytest.raises(ValueError, match="comes after"):
        build_backbone("tiny", first_stage="res4", last_stage="res3")
    with pytest.raises(ValueError, match="takes 16 input channels"):
        build_backbone("tiny", first_stage="res3", input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="pooling"):
        build_backbone("tiny", pooling="mean")
    with pytest.raises(ValueError, match="conv1_rule"):
        build_backbone("tiny", conv1_rule="sum")


# --------------------------------------------------------------------------- parameter counts
def _bninception_count_from_table(classes=1000):
    """Independent count from the layer table: conv k*k*cin*cout + cout, BN 4 * cout."""
    def conv_bn(k, cin, cout):
        return k * k * cin * cout + cout + 4 * cout

    total = conv_bn(7, 3, 64) + conv_bn(1, 64, 64) + conv_bn(3, 64, 192)
    cin = 192
    for module, (c1, c3r, c3, cdr, cd, _, proj, stride) in bninception.INCEPTION_MODULES.items():
        total += conv_bn(1, cin, c3r) + conv_bn(3, c3r, c3)
        total += conv_bn(1, cin, cdr) + conv_bn(3, cdr, cd) + conv_bn(3, cd, cd)
        if stride == 1:
            total += conv_bn(1, cin, c1) + conv_bn(1, cin, proj)
            cin = c1 + c3 + cd + proj
        else:
            cin = c3 + cd + cin
    assert cin == 1024
    return total + 1024 * classes + classes


def test_bninception_parameter_count():
    model = _with_head(build_backbone("bninception"))
    assert model.count_params() == _bninception_count_from_table() == 11_315_272
    assert _trainable(model) == 11_295_240  # PyTorch parameters(): the 11.3M of the literature


def test_resnet50_parameter_count_and_keras_layout():
    model = build_backbone("resnet50")
    assert _with_head(model).count_params() == 25_636_712  # keras.applications.ResNet50
    reference = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg")
    ours = [(w.path, tuple(w.shape)) for w in model.weights]
    theirs = [(w.path, tuple(w.shape)) for w in reference.weights]
    assert ours == theirs  # same layer names, order and shapes: Keras weights map 1:1


def test_conv_bias_option():
    """conv_bias=False: the same layers and names without the 53 conv biases of ResNet-50
    (26,560 parameters); None keeps each family's default."""
    assert [backbones.default_conv_bias(n) for n in BACKBONES] == [True, True, True, False,
                                                                    False, False]
    biased = build_backbone("resnet50", input_shape=(64, 64, 3))
    free = build_backbone("resnet50", input_shape=(64, 64, 3), conv_bias=False)
    convs = [l for l in free.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 53 and not any(l.use_bias for l in convs)
    assert all(l.use_bias for l in biased.layers if isinstance(l, keras.layers.Conv2D))
    assert [l.name for l in free.layers] == [l.name for l in biased.layers]
    assert _trainable(biased) - _trainable(free) == 26_560
    assert _with_head(free).count_params() == 25_636_712 - 26_560
    assert _trainable(_with_head(free)) == 25_557_032  # torchvision resnet50
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    assert free(x).shape == (1, 2048)
    # the other families accept the option too
    tiny = build_backbone("tiny", input_shape=(32, 32, 3), conv_bias=True)
    assert all(l.use_bias for l in tiny.layers if isinstance(l, keras.layers.Conv2D))
    assert not any(l.use_bias for l in build_backbone("tiny", input_shape=(32, 32, 3)).layers
                   if isinstance(l, keras.layers.Conv2D))
    stages = backbone_stages("resnext50", width=0.125, conv_bias=True)
    x = inputs = keras.Input((32, 32, 3))
    for _, fn in stages:
        x = fn(x)
    assert all(l.use_bias for l in keras.Model(inputs, x).layers
               if isinstance(l, keras.layers.Conv2D))
    with pytest.raises(ValueError, match="bninception.*conv biases"):
        build_backbone("bninception", conv_bias=False)


def test_resnext50_parameter_count():
    model = _with_head(build_backbone("resnext50"))
    assert _trainable(model) == 25_028_904  # torchvision resnext50_32x4d


@pytest.mark.slow
def test_resnet101_parameter_count():
    assert _with_head(build_backbone("resnet101")).count_params() == 44_707_176


@pytest.mark.slow
def test_resnext101_parameter_count():
    assert _trainable(_with_head(build_backbone("resnext101"))) == 44_177_704


def test_every_backbone_has_its_normalisation():
    """The input constants belong to the backbone: every backbone has an entry in the one
    normalisation table (tfvid.data.normalization), and nothing else does."""
    from tfvid.data.normalization import NORMALIZATION
    from tfvid.models.architectures import BACKBONES
    assert set(BACKBONES) == set(NORMALIZATION)
