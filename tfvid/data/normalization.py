"""Input normalisation per backbone: the one table of constants (docs/architecture.md).

    normalization_config(backbone, modality)   JSON-able constants (export sidecars, TFLite)
    channel_affine(backbone, modality, C)      the same as a per-channel map (source, mul, add)
    normalize(clip, backbone, modality)        (..., C) 8-bit-scale clip -> float32 input

The constants belong to the backbone (the ImageNet weights it was trained with): `NORMALIZATION`
holds those of tfvid's backbones (tfvid.models.architectures.BACKBONES), and a new backbone
registers its own with `register_normalization` beside its definition. tfvid.data holds the
table because the input pipeline applies it and may not import tfvid.models.
"""
from __future__ import annotations

import tensorflow as tf

from tfvid.data.modality import check_modality

STYLES = ("caffe", "torch")

_CAFFE_TSN = {"style": "caffe", "channel_order": "bgr", "scale": 1.0,
              "mean": (104.0, 117.0, 123.0), "std": (1.0, 1.0, 1.0)}
_CAFFE_KERAS = {"style": "caffe", "channel_order": "bgr", "scale": 1.0,
                "mean": (103.939, 116.779, 123.68), "std": (1.0, 1.0, 1.0)}
_TORCH = {"style": "torch", "channel_order": "rgb", "scale": 1.0 / 255.0,
          "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
# Per backbone: RGB constants (mean/std per colour, in `channel_order`, applied after `scale`).
# Flow: caffe style x - 128, torch style (x - 128) / 128. RGB difference: differences * scale.
NORMALIZATION = {
    "bninception": _CAFFE_TSN,    # TSN authors' Caffe convention
    "resnet50": _CAFFE_KERAS,     # keras.applications.resnet 'caffe' preprocessing
    "resnet101": _CAFFE_KERAS,
    "resnext50": _TORCH,          # torch-style ImageNet statistics
    "resnext101": _TORCH,
    "tiny": _TORCH,
}


def register_normalization(backbone: str, *, style: str, channel_order: str, scale: float,
                           mean, std) -> dict:
    """Registers (or replaces) the RGB constants of `backbone`: out = (x[order] * scale - mean)
    / std per colour, `channel_order` 'rgb' or 'bgr'. style 'caffe' (flow x - 128) or 'torch'
    (flow (x - 128) / 128). Returns the entry."""
    if style not in STYLES:
        raise ValueError(f"normalisation style must be one of {STYLES}, got {style!r}")
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"{backbone!r}: mean and std need 3 values (std > 0), got {mean}, {std}")
    NORMALIZATION[backbone] = {"style": style, "channel_order": channel_order,
                               "scale": float(scale), "mean": mean, "std": std}
    return NORMALIZATION[backbone]



def normalization_config(backbone: str, modality: str = "rgb") -> dict:
    """JSON-able normalisation of `backbone`/`modality`: out = (x[order] * scale - mean) / std.

    'mean'/'std' hold 3 values repeated over each colour triple (rgb, rgbdiff) or one value
    for every channel (flow); 'channel_order' 'bgr' reverses each RGB triple first.
    """
    if backbone not in NORMALIZATION:
        raise ValueError(f"unknown backbone {backbone!r} for normalisation; known: "
                         f"{sorted(NORMALIZATION)}")
    check_modality(modality)
    cfg = dict(NORMALIZATION[backbone])
    out = {"backbone": backbone, "modality": modality, "style": cfg["style"]}
    if modality == "rgb":
        out.update(channel_order=cfg["channel_order"], scale=cfg["scale"],
                   mean=list(cfg["mean"]), std=list(cfg["std"]))
    elif modality == "rgbdiff":
        out.update(channel_order=cfg["channel_order"], scale=cfg["scale"],
                   mean=[0.0] * 3, std=[1.0] * 3)
    else:
        out.update(channel_order="xy", scale=1.0, mean=[128.0],
                   std=[128.0 if cfg["style"] == "torch" else 1.0])
    return out


def channel_affine(backbone: str, modality: str, channels: int):
    """The normalisation as a per-channel map: out[..., o] = x[..., source[o]] * mul[o] +
    add[o]. Returns (source, mul, add), lists of `channels` values.

    rgb/rgbdiff: channels is a multiple of 3 (frame-major colour triples, RGB order in); 'bgr'
    backbones read each triple reversed. flow: any channel count, no reordering.
    """
    cfg = normalization_config(backbone, modality)
    if modality != "flow" and channels % 3:
        raise ValueError(f"modality {modality!r} needs a multiple of 3 channels, got {channels}")
    period = 1 if modality == "flow" else 3
    shuffle = modality != "flow" and cfg["channel_order"] == "bgr"
    source = [o - o % period + period - 1 - o % period if shuffle else o
              for o in range(channels)]
    mul = [cfg["scale"] / cfg["std"][o % period] for o in range(channels)]
    add = [-cfg["mean"][o % period] / cfg["std"][o % period] for o in range(channels)]
    return source, mul, add


def normalize(clip, backbone: str, modality: str = "rgb", kernels: bool = False) -> tf.Tensor:
    """(..., C) 8-bit-scale clip -> float32 network input (see NORMALIZATION, `channel_affine`).

    kernels=True with a uint8 clip: one pass of the fused kernel (tfvid.data.kernels; tf.data
    graphs only: exported graphs must not need the kernel library). Otherwise stock ops: BGR
    backbones' channel order and scale as one fixed 1x1 convolution (oneDNN); then (and for
    the others, which need no shuffle) the per-channel multiply/add on the (..., W*C) view,
    where it vectorises (a bias_add over C = 3 does not) and runs in place on a batch.
    """
    channels = clip.shape[-1]
    if channels is None:
        raise ValueError("normalize needs a static channel count")
    source, mul, add = channel_affine(backbone, modality, channels)
    if kernels and clip.dtype == tf.uint8:
        from tfvid.data import kernels as fused
        return fused.normalize_u8(clip, source, mul, add)
    x = tf.cast(clip, tf.float32)
    shape = tf.shape(x)
    if source != list(range(channels)):   # out[..., o] = x[..., source[o]] * mul[o]: a 1x1 conv
        matrix = [[0.0] * channels for _ in range(channels)]
        for o in range(channels):
            matrix[source[o]][o] = mul[o]
        flat = tf.reshape(x, tf.concat([[-1], shape[-3:]], 0))
        x = tf.reshape(tf.nn.conv2d(flat, tf.constant([[matrix]], tf.float32), 1, "VALID"),
                       shape)
        mul = [1.0] * channels
    rows = tf.reshape(x, tf.concat([shape[:-2], [shape[-2] * channels]], 0))
    if any(m != 1.0 for m in mul):
        rows = rows * tf.tile(tf.constant(mul, tf.float32), shape[-2:-1])
    if any(a != 0.0 for a in add):
        rows = rows + tf.tile(tf.constant(add, tf.float32), shape[-2:-1])
    return tf.ensure_shape(tf.reshape(rows, shape), x.shape)
