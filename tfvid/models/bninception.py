"""BN-Inception (Ioffe & Szegedy, ICML 2015), the TSN backbone, built as named stages.

The layout is the Caffe prototxt used by TSN (and ported as ``bninception`` in Cadene's
pretrainedmodels): every conv has a bias and is followed by BatchNorm (epsilon 1e-5) and ReLU;
layer names are the Caffe blob names (``conv1_7x7_s2``, ``conv1_7x7_s2_bn``,
``inception_3a_double_3x3_1`` ...) so that converted weights map by name.

Layer table for a 224 x 224 input (``#1x1`` / ``#3x3 reduce`` -> ``#3x3`` / ``#double reduce``
-> ``#double 3x3`` (two 3x3 convs) / pool -> ``proj``; stride-2 modules have no 1x1 branch and
pass the max-pooled input through)::

    stage       layer          out size   1x1  3x3r 3x3  d3x3r d3x3  pool+proj   out ch
    stem        conv1 7x7/2    112x112                                              64
                pool1 3x3/2     56x56                                               64
                conv2 1x1       56x56                                               64
                conv2 3x3       56x56                                              192
                pool2 3x3/2     28x28                                              192
    inception3  3a              28x28      64   64   64    64   96   avg + 32      256
                3b              28x28      64   64   96    64   96   avg + 64      320
                3c (stride 2)   14x14       -  128  160    64   96   max, pass     576
    inception4  4a              14x14     224   64   96    96  128   avg + 128     576
                4b              14x14     192   96  128    96  128   avg + 128     576
                4c              14x14     160  128  160   128  160   avg + 128     608
                4d              14x14      96  128  192   160  192   avg + 128     608
                4e (stride 2)    7x7        -  128  192   192  256   max, pass    1056
    inception5  5a               7x7      352  192  320   160  224   avg + 128    1024
                5b               7x7      352  192  320   192  224   max + 128    1024
    head        global average pool                                               1024

Parameters at width 1 (conv weights + biases, BN gamma/beta + moving mean/variance):
features 10,290,272, of which 10,270,240 trainable and 20,032 BN moving statistics; with a
1000-way FC (1,025,000) 11,315,272 in total and 11,295,240 trainable (= the PyTorch
``parameters()`` count of the Caffe/pretrainedmodels BN-Inception, the 11.3M usually quoted). ``tests/test_backbones.py`` recomputes this from ``INCEPTION_MODULES``.

Padding and pooling match Caffe/PyTorch exactly: strided convs pad symmetrically (explicit
ZeroPadding2D), the 3x3/2 max pools use Caffe's ceil mode (pad one zero row/column at the
bottom/right: exact because their inputs are post-ReLU, hence >= 0), the 3x3/1 average pools
count the zero padding (Caffe AVE pooling), and 5b's 3x3/1 max pool pads with -inf ('same').
Stages: ``stem`` (conv1..pool2, stride 8, 192 ch), ``inception3`` (3a-3c, stride 16, 576 ch),
``inception4`` (4a-4e, stride 32, 1056 ch), ``inception5`` (5a-5b, stride 32, 1024 ch).
"""
from __future__ import annotations

from keras import layers

from tfvid.models.resnet import batch_norm, scaled

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Caffe/PyTorch moving-average factor 0.1

BNINCEPTION_STAGES = ("stem", "inception3", "inception4", "inception5")
BNINCEPTION_STRIDES = {"stem": 8, "inception3": 16, "inception4": 32, "inception5": 32}

# name: (1x1, 3x3 reduce, 3x3, double reduce, double 3x3, pool type, pool proj, stride)
INCEPTION_MODULES = {
    "3a": (64, 64, 64, 64, 96, "avg", 32, 1),
    "3b": (64, 64, 96, 64, 96, "avg", 64, 1),
    "3c": (0, 128, 160, 64, 96, "max", 0, 2),
    "4a": (224, 64, 96, 96, 128, "avg", 128, 1),
    "4b": (192, 96, 128, 96, 128, "avg", 128, 1),
    "4c": (160, 128, 160, 128, 160, "avg", 128, 1),
    "4d": (96, 128, 192, 160, 192, "avg", 128, 1),
    "4e": (0, 128, 192, 192, 256, "max", 0, 2),
    "5a": (352, 192, 320, 160, 224, "avg", 128, 1),
    "5b": (352, 192, 320, 192, 224, "max", 128, 1),
}
STEM_CHANNELS = (64, 64, 192)  # conv1 7x7/2, conv2 1x1 reduce, conv2 3x3


def module_out_channels(module: str, in_channels: int, width: float = 1.0) -> int:
    """Output channels of an inception module given its input channels."""
    c1, _, c3, _, cd, _, proj, stride = INCEPTION_MODULES[module]
    out = scaled(c3, width) + scaled(cd, width)
    if stride == 2:
        return out + in_channels
    return out + scaled(c1, width) + scaled(proj, width)


def bninception_stage_channels(width: float = 1.0) -> dict[str, int]:
    """Output channels per stage: stem 192, inception3 576, inception4 1056, inception5 1024."""
    channels = scaled(STEM_CHANNELS[2], width)
    result = {"stem": channels}
    for stage in BNINCEPTION_STAGES[1:]:
        for module in (m for m in INCEPTION_MODULES if m[0] == stage[-1]):
            channels = module_out_channels(module, channels, width)
        result[stage] = channels
    return result


def bninception_stages(*, width: float = 1.0, synchronized: bool | None = None):
    """Ordered ``(stage_name, build_fn)`` pairs of BN-Inception (see module docstring)."""

    def conv_bn_relu(x, filters, kernel, name, *, stride=1, relu_name=None):
        if stride > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        x = layers.Conv2D(scaled(filters, width), kernel, strides=stride,
                          padding="valid" if stride > 1 else "same", name=name)(x)
        x = batch_norm(f"{name}_bn", epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                       synchronized=synchronized)(x)
        return layers.Activation("relu", name=relu_name or f"{name}_relu")(x)

    def ceil_max_pool(x, name):
        # Caffe ceil-mode 3x3/2 max pool == one extra bottom/right row/column, then 'valid'.
        x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
        return layers.MaxPooling2D(3, strides=2, name=name)(x)

    def inception(x, module):
        c1, c3r, c3, cdr, cd, pool, proj, stride = INCEPTION_MODULES[module]
        p = f"inception_{module}"
        branches = []
        if c1:
            branches.append(conv_bn_relu(x, c1, 1, f"{p}_1x1"))
        b = conv_bn_relu(x, c3r, 1, f"{p}_3x3_reduce")
        branches.append(conv_bn_relu(b, c3, 3, f"{p}_3x3", stride=stride))
        b = conv_bn_relu(x, cdr, 1, f"{p}_double_3x3_reduce")
        b = conv_bn_relu(b, cd, 3, f"{p}_double_3x3_1")
        branches.append(conv_bn_relu(b, cd, 3, f"{p}_double_3x3_2", stride=stride))
        if stride == 2:
            branches.append(ceil_max_pool(x, f"{p}_pool"))
        else:
            if pool == "avg":  # Caffe AVE pooling counts the zero padding
                b = layers.ZeroPadding2D(1, name=f"{p}_pool_pad")(x)
                b = layers.AveragePooling2D(3, strides=1, name=f"{p}_pool")(b)
            else:
                b = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{p}_pool")(x)
            branches.append(conv_bn_relu(b, proj, 1, f"{p}_pool_proj"))
        return layers.Concatenate(axis=-1, name=f"{p}_output")(branches)

    def stem(x):
        x = conv_bn_relu(x, STEM_CHANNELS[0], 7, "conv1_7x7_s2", stride=2,
                         relu_name="conv1_relu_7x7")
        x = ceil_max_pool(x, "pool1_3x3_s2")
        x = conv_bn_relu(x, STEM_CHANNELS[1], 1, "conv2_3x3_reduce",
                         relu_name="conv2_relu_3x3_reduce")
        x = conv_bn_relu(x, STEM_CHANNELS[2], 3, "conv2_3x3", relu_name="conv2_relu_3x3")
        return ceil_max_pool(x, "pool2_3x3_s2")

    def make_stage(stage):
        modules = [m for m in INCEPTION_MODULES if m[0] == stage[-1]]

        def build(x):
            for module in modules:
                x = inception(x, module)
            return x

        build.__name__ = f"bninception_{stage}"
        return stage, build

    return [("stem", stem)] + [make_stage(s) for s in BNINCEPTION_STAGES[1:]]
