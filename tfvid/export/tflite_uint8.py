"""uint8-input TFLite models: the normalisation of the export's sidecar inside the model.

The TFLite input is uint8 (B, T, S, S, C0) on the 8-bit scale (already sampled and cropped),
cast and normalised inside the model with the sidecar's ``preprocessing.normalization``
constants (tfvid.data.augment.normalization_config): out = (x[order] * scale - mean) / std;
rgbdiff takes the 3L frame channels (C0 = C + 3) and takes the differences inside. The same as
normalising float clips on the host with tfvid.data.augment.normalize (`host_normalize`).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import tensorflow as tf


def normalization_affine(config: dict, channels: int) -> tuple[list[int], list[float],
                                                                list[float]]:
    """(source, mul, add) with out[..., o] = x[..., source[o]] * mul[o] + add[o] from a
    normalisation config (tfvid.data.augment.normalization_config: 'channel_order', 'scale',
    'mean', 'std', 'modality'), as tfvid.data.augment.channel_affine computes it."""
    modality = config.get("modality", "rgb")
    period = 1 if modality == "flow" else 3
    if channels % period:
        raise ValueError(f"modality {modality!r} needs a multiple of 3 channels, got {channels}")
    shuffle = modality != "flow" and config.get("channel_order") == "bgr"
    mean, std = list(config["mean"]), list(config["std"])
    scale = float(config.get("scale", 1.0))
    source = [o - o % period + period - 1 - o % period if shuffle else o
              for o in range(channels)]
    mul = [scale / float(std[o % period % len(std)]) for o in range(channels)]
    add = [-float(mean[o % period % len(mean)]) / float(std[o % period % len(std)])
           for o in range(channels)]
    return source, mul, add


def uint8_channels(config: dict, channels: int) -> int:
    """Channels C0 of the uint8 input for a model input of `channels` channels: rgbdiff takes
    the L frames (3L = C + 3), the others the same C."""
    return channels + 3 if config.get("modality") == "rgbdiff" else channels


def normalize_in_graph(x: tf.Tensor, config: dict) -> tf.Tensor:
    """uint8 (..., C0) -> float32 network input: cast, RGB differences (rgbdiff), affine."""
    x = tf.cast(x, tf.float32)
    if config.get("modality") == "rgbdiff":
        x = x[..., 3:] - x[..., :-3]
    channels = int(x.shape[-1])
    source, mul, add = normalization_affine(config, channels)
    if source != list(range(channels)):
        x = tf.gather(x, source, axis=-1)
    if any(m != 1.0 for m in mul):
        x = x * tf.constant(mul, tf.float32)
    if any(a != 0.0 for a in add):
        x = x + tf.constant(add, tf.float32)
    return x


def host_normalize(clip, config: dict) -> np.ndarray:
    """What a client does on the host: uint8 / 8-bit-scale (..., C0) -> float32 network input
    with tfvid.data.augment.normalize (RGB differences first for rgbdiff)."""
    from tfvid.data import augment
    from tfvid.data import modality as mod

    x = tf.convert_to_tensor(np.asarray(clip))
    modality = config.get("modality", "rgb")
    if modality == "rgbdiff":
        x = mod.rgb_diff_channels(x)
    return augment.normalize(tf.cast(x, tf.float32), config["backbone"], modality).numpy()


def sidecar_normalizations(sidecar: dict, input_names: Iterable[str]) -> dict[str, dict]:
    """{input name: normalisation config} from an export sidecar: 'preprocessing' for a
    one-input export, the 'streams' entries matched by modality (rgb / flow) for several."""
    names = list(input_names)
    out = {}
    pre = (sidecar or {}).get("preprocessing") or {}
    if len(names) == 1 and pre.get("normalization"):
        return {names[0]: dict(pre["normalization"])}
    for part in ((sidecar or {}).get("streams") or {}).values():
        cfg = ((part or {}).get("preprocessing") or {}).get("normalization")
        if not cfg:
            continue
        key = "flow" if cfg.get("modality") == "flow" else "rgb"
        if key in names:
            if key in out and out[key] != cfg:
                raise ValueError(f"the sidecar's streams normalise the {key!r} input in "
                                 f"different ways ({out[key]} vs {cfg}); a uint8 input cannot "
                                 f"serve both")
            out[key] = dict(cfg)
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError(f"the sidecar has no preprocessing.normalization for input(s) "
                         f"{missing}: cannot build a uint8-input model (export with "
                         f"pipelines.export, or pass the normalisation explicitly)")
    return out


_normalize_in_graph = normalize_in_graph
