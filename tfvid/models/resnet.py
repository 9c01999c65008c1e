"""ResNet-50/101, ResNeXt-50/101 (32x4d) and a tiny ResNet, built as named stages.

Every stage is a function ``KerasTensor -> KerasTensor`` that creates its layers with fixed,
unique names, so that weights map by layer name and other models can insert layers between
stages. Stages: ``stem`` (conv1 + BN + ReLU + 3x3/2 max pool, stride 4), ``res2`` (stride 4),
``res3`` (stride 8), ``res4`` (stride 16), ``res5`` (stride 32). Channels-last.

* ``resnet50`` / ``resnet101``: exactly the Keras-applications ResNet v1 (He et al. 2016 as
  implemented in ``keras.applications.ResNet50``): convs with biases, BN epsilon 1.001e-5, the
  stride on the first 1x1 conv of a block, and the same layer names (``conv1_conv``,
  ``conv2_block1_1_conv``, ``conv2_block1_1_bn`` ...) created in the same order, so Keras
  ImageNet weights copy over name for name. ``conv_bias=False`` drops the conv biases (53 convs,
  26,560 parameters for ResNet-50) as in the Caffe / PyTorch / PaddlePaddle ResNets: every conv
  is followed by its BN, so a bias is redundant (BN's mean subtraction cancels it; weight
  loading folds it into the BN moving mean, see `tfvid.models.weights`).
* ``resnext50`` / ``resnext101``: ResNeXt 32x4d (Xie et al. 2017, torchvision layout): no conv
  biases, BN epsilon 1e-5, grouped 3x3 conv (32 groups, 128/256/512/1024 inner channels) that
  carries the stride, with explicit symmetric zero padding so that strided convs match the
  PyTorch/Caffe numerics. Layer names follow the Keras scheme above.
* ``tiny``: a ResNet-18-like net with one basic block per stage, 16-32-64-128 channels and a
  3x3/2 conv1, for tests and the CPU quickstart.

``width`` multiplies every channel count (1.0 = paper widths). Grouped convs keep 32 groups and
round their channels to a multiple of 32 (at least one channel per group). ``conv_bias``
(None: the family default, `default_conv_bias`) gives every conv of any family a bias or none.
"""
from __future__ import annotations

from typing import Callable

from keras import layers

Stage = Callable[..., object]

RESNET_DEPTHS = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnext50": (3, 4, 6, 3),
    "resnext101": (3, 4, 23, 3),
    "tiny": (1, 1, 1, 1),
}
RESNET_STAGES = ("stem", "res2", "res3", "res4", "res5")
RESNET_STRIDES = {"stem": 4, "res2": 4, "res3": 8, "res4": 16, "res5": 32}
RESNEXT_GROUPS = 32

_SYNCHRONIZED_BN = False


def use_synchronized_batchnorm(flag: bool = True) -> None:
    """Module-level default for ``BatchNormalization(synchronized=...)`` in every backbone.

    Training under MultiWorkerMirroredStrategy (or MirroredStrategy when statistics must agree
    across replicas) calls this before building models; an explicit ``synchronized=`` argument
    to a builder overrides it.
    """
    global _SYNCHRONIZED_BN
    _SYNCHRONIZED_BN = bool(flag)


def synchronized_batchnorm() -> bool:
    """The current module-level default (see `use_synchronized_batchnorm`)."""
    return _SYNCHRONIZED_BN


def default_conv_bias(name: str) -> bool:
    """Whether the convs of ``name`` carry biases by default: True for the Keras-applications
    ``resnet50`` / ``resnet101`` layout, False for ``resnext*`` (torchvision) and ``tiny``."""
    return name.startswith("resnet")


def scaled(channels: int, width: float, divisor: int = 1) -> int:
    """``channels * width`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``)."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return max(divisor, int(channels * width / divisor + 0.5) * divisor)


def batch_norm(name: str, *, epsilon: float, momentum: float, synchronized: bool | None):
    """A channels-last BatchNormalization layer; ``synchronized=None`` uses the module default."""
    if synchronized is None:
        synchronized = _SYNCHRONIZED_BN
    return layers.BatchNormalization(axis=-1, epsilon=epsilon, momentum=momentum,
                                     synchronized=synchronized, name=name)


def _conv(x, filters, kernel, *, stride=1, groups=1, use_bias, name):
    """Conv2D with PyTorch-style symmetric padding ``kernel // 2`` (explicit when strided)."""
    if kernel > 1 and stride > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=name.rsplit("_conv", 1)[0] + "_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    return layers.Conv2D(filters, kernel, strides=stride, padding=padding, groups=groups,
                         use_bias=use_bias, name=name)(x)


# --------------------------------------------------------------------------- Keras ResNet v1
def _keras_bottleneck(x, filters, *, stride, shortcut_conv, name, bn, use_bias=True):
    """Keras-applications ``residual_block_v1``: same layers, same names, same creation order
    (``use_bias=False``: the same block with bias-free convs)."""
    if shortcut_conv:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, use_bias=use_bias,
                                 name=f"{name}_0_conv")(x)
        shortcut = bn(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = layers.Conv2D(filters, 1, strides=stride, use_bias=use_bias, name=f"{name}_1_conv")(x)
    x = bn(f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=use_bias, name=f"{name}_2_conv")(x)
    x = bn(f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(4 * filters, 1, use_bias=use_bias, name=f"{name}_3_conv")(x)
    x = bn(f"{name}_3_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


# --------------------------------------------------------------------------- ResNeXt 32x4d
def _resnext_bottleneck(x, inner, out, *, stride, shortcut_conv, name, bn, use_bias=False):
    """torchvision ResNeXt bottleneck: 1x1 -> grouped 3x3 (stride) -> 1x1, no conv biases."""
    if shortcut_conv:
        shortcut = layers.Conv2D(out, 1, strides=stride, use_bias=use_bias,
                                 name=f"{name}_0_conv")(x)
        shortcut = bn(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = layers.Conv2D(inner, 1, use_bias=use_bias, name=f"{name}_1_conv")(x)
    x = bn(f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv(x, inner, 3, stride=stride, groups=RESNEXT_GROUPS, use_bias=use_bias,
              name=f"{name}_2_conv")
    x = bn(f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(out, 1, use_bias=use_bias, name=f"{name}_3_conv")(x)
    x = bn(f"{name}_3_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


# --------------------------------------------------------------------------- tiny
def _basic_block(x, out, *, stride, name, bn, use_bias=False):
    """ResNet basic block: 3x3 (stride) -> 3x3, projection shortcut when the shape changes."""
    if stride != 1 or x.shape[-1] != out:
        shortcut = layers.Conv2D(out, 1, strides=stride, use_bias=use_bias,
                                 name=f"{name}_0_conv")(x)
        shortcut = bn(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = _conv(x, out, 3, stride=stride, use_bias=use_bias, name=f"{name}_1_conv")
    x = bn(f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv(x, out, 3, use_bias=use_bias, name=f"{name}_2_conv")
    x = bn(f"{name}_2_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def _stem(x, filters, kernel, *, use_bias, bn):
    """conv1 (kernel/2, padding kernel//2) -> BN -> ReLU -> 3x3/2 max pool (padding 1)."""
    x = layers.ZeroPadding2D(kernel // 2, name="conv1_pad")(x)
    x = layers.Conv2D(filters, kernel, strides=2, use_bias=use_bias, name="conv1_conv")(x)
    x = bn("conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)  # zeros are safe: inputs are post-ReLU
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def resnet_stage_channels(name: str, width: float = 1.0) -> dict[str, int]:
    """Output channels of each stage, e.g. resnet50 at width 1: stem 64, res2 256 ... res5 2048."""
    if name == "tiny":
        out = {"stem": scaled(16, width)}
        out.update({f"res{i + 2}": scaled(16 * 2 ** i, width) for i in range(4)})
        return out
    if name.startswith("resnext"):
        out = {"stem": scaled(64, width)}
        out.update({f"res{i + 2}": scaled(256 * 2 ** i, width) for i in range(4)})
        return out
    out = {"stem": scaled(64, width)}
    out.update({f"res{i + 2}": 4 * scaled(64 * 2 ** i, width) for i in range(4)})
    return out


def resnet_stages(name: str, *, width: float = 1.0, synchronized: bool | None = None,
                  conv_bias: bool | None = None) -> list[tuple[str, Stage]]:
    """Ordered ``(stage_name, build_fn)`` for a ResNet-family backbone (see module docstring).

    ``conv_bias``: give every conv a bias (True) or none (False); None keeps the family
    default (`default_conv_bias`: True for the Keras-applications resnet50/101 layout).
    """
    if name not in RESNET_DEPTHS:
        raise ValueError(f"unknown ResNet-family backbone {name!r}; known: {sorted(RESNET_DEPTHS)}")
    use_bias = default_conv_bias(name) if conv_bias is None else bool(conv_bias)
    depths = RESNET_DEPTHS[name]
    channels = resnet_stage_channels(name, width)
    if name.startswith("resnet"):
        eps, momentum = 1.001e-5, 0.99  # keras.applications defaults
    else:
        eps, momentum = 1e-5, 0.9  # PyTorch BatchNorm2d(eps=1e-5, momentum=0.1)

    def bn(layer_name):
        return batch_norm(layer_name, epsilon=eps, momentum=momentum, synchronized=synchronized)

    def stem(x):
        return _stem(x, channels["stem"], 3 if name == "tiny" else 7, use_bias=use_bias, bn=bn)

    def make_stage(index):
        stage = f"res{index + 2}"
        stride = 1 if index == 0 else 2
        prefix = f"conv{index + 2}"

        def build(x):
            for b in range(depths[index]):
                block = f"{prefix}_block{b + 1}"
                s = stride if b == 0 else 1
                if name.startswith("resnet"):
                    x = _keras_bottleneck(x, scaled(64 * 2 ** index, width), stride=s,
                                          shortcut_conv=b == 0, name=block, bn=bn,
                                          use_bias=use_bias)
                elif name.startswith("resnext"):
                    inner = scaled(128 * 2 ** index, width, RESNEXT_GROUPS)
                    x = _resnext_bottleneck(x, inner, channels[stage], stride=s,
                                            shortcut_conv=b == 0, name=block, bn=bn,
                                            use_bias=use_bias)
                else:
                    x = _basic_block(x, channels[stage], stride=s, name=block, bn=bn,
                                     use_bias=use_bias)
            return x

        build.__name__ = f"{name}_{stage}"
        return stage, build

    return [("stem", stem)] + [make_stage(i) for i in range(4)]
