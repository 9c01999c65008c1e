"""Modalities: how the L frames of one time step become channels (docs/tsn.md, docs/stnet.md).

Input modalities:
  "rgb"      L RGB frames stacked frame-major: channel c is frame c // 3, colour c % 3 (StNet's
             super-image; L = 1 is a plain RGB frame). C = 3L.
  "flow"     L flow frames (x, y grayscale) interleaved [x1, y1, x2, y2, ..., xL, yL]. C = 2L.
  "rgbdiff"  L RGB frames -> L-1 differences D_i = F_{i+1} - F_i (float), ordered
             [D1 rgb, D2 rgb, ...]. C = 3(L-1) (TSN: L = 6 -> 15 channels).
"""
from __future__ import annotations

import tensorflow as tf

MODALITIES = ("rgb", "flow", "rgbdiff")


def check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; known: {MODALITIES}")


def num_channels(modality: str, new_length: int) -> int:
    """Channels of one time step: rgb 3L, flow 2L, rgbdiff 3(L-1)."""
    check_modality(modality)
    if modality == "rgb":
        return 3 * new_length
    if modality == "flow":
        return 2 * new_length
    if new_length < 2:
        raise ValueError(f"rgbdiff needs at least 2 frames per step, got new_length={new_length}")
    return 3 * (new_length - 1)


def _merge_last_two(x):
    """(..., L, c) -> (..., L*c), keeping static shapes where known."""
    shape = tf.shape(x)
    static = x.shape
    channels = None if static[-2] is None or static[-1] is None else static[-2] * static[-1]
    out = tf.reshape(x, tf.concat([shape[:-2], [shape[-2] * shape[-1]]], 0))
    return tf.ensure_shape(out, static[:-2].concatenate([channels]))


def rgb_stack(frames) -> tf.Tensor:
    """(T, L, H, W, 3) -> (T, H, W, 3L), frame-major (channel c: frame c // 3, colour c % 3)."""
    if frames.shape.rank == 5 and frames.shape[1] == 1:   # L = 1: a reshape, no uint8 transpose
        return tf.squeeze(frames, axis=1)
    return _merge_last_two(tf.transpose(frames, [0, 2, 3, 1, 4]))


def flow_stack(x, y) -> tf.Tensor:
    """x, y (T, L, H, W) -> (T, H, W, 2L) interleaved [x1, y1, ..., xL, yL]."""
    xy = tf.stack([x, y], axis=-1)                          # (T, L, H, W, 2)
    return _merge_last_two(tf.transpose(xy, [0, 2, 3, 1, 4]))


def rgb_diff_channels(stacked) -> tf.Tensor:
    """Frame-major RGB stack (..., 3L) -> float32 differences (..., 3(L-1)), D_i = F_{i+1} - F_i.

    Used after cropping: differences commute with crops and flips, so TSN's order (augment the
    frames, then difference) is kept.
    """
    x = tf.cast(stacked, tf.float32)
    return x[..., 3:] - x[..., :-3]


def rgb_diff(frames) -> tf.Tensor:
    """(T, L, H, W, 3) -> float32 (T, H, W, 3(L-1)) ordered [D1 rgb, D2 rgb, ...]."""
    return rgb_diff_channels(rgb_stack(tf.cast(frames, tf.float32)))
