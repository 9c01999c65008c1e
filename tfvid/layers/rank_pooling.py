"""Approximate rank pooling (ARP) as a Keras layer, and dynamic-image display conversions.

Dynamic Image Networks (the dynamic image networks paper, docs/dynamic_images.md, section 3.2 eq. 3-4 and section 4.3;
docs/dynamic_images.md). A window of T frames x_1..x_T is pooled into one "dynamic image"

    DI = scale * sum_t alpha_t x_t,    alpha_t = sum_{j=t..T} (2j - T - 1)/j  (1-based t)

which equals the paper's alpha_t = 2(T - t + 1) - (T + 1)(H_T - H_{t-1}). T=1 gives alpha = [1].
The weights sum to zero for T >= 2 (adding a constant image to every frame changes nothing)
and sum_t t alpha_t = T(T^2 - 1)/12. They do not depend on the data, so the gradient with
respect to frame t is alpha_t times the incoming gradient (eq. 9).

NOT computed here: the (2j - T)/j variant of a third-party port (its weights do not sum to
zero), a square root, or an extra time-varying-mean step (already folded into alpha).

Settings (docs/dynamic_images.md):
  pixels / flow, offline or at the input    ApproximateRankPooling(axis=1)
  in-network, the ResNeXt setting           ApproximateRankPooling(axis=1, scale=0.1)
  dynamic maps (before an inner stage)      ApproximateRankPooling(scale=0.1, activation="relu")
  CaffeNet setting                          caffenet_normalize(DI): L2 norm 6000, clip +-128
  display                                   dynamic_image_to_uint8(DI): one global min-max
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops


def arp_weights(num_frames: int) -> np.ndarray:
    """ARP coefficients alpha_t, t = 1..T, float64 (T,): sum_{j=t..T} (2j - T - 1)/j; T=1 -> [1].

    Equal to the paper's 2(T - t + 1) - (T + 1)(H_T - H_{t-1}). T=3: [-4/3, 2/3, 2/3].
    """
    T = int(num_frames)
    if T < 1:
        raise ValueError(f"arp_weights: the window needs at least one frame, got T={num_frames}")
    if T == 1:
        return np.ones(1)
    j = np.arange(1, T + 1, dtype=np.float64)
    return np.cumsum(((2.0 * j - T - 1.0) / j)[::-1])[::-1].copy()


def arp_coefficients(num_frames, dtype="float32") -> tf.Tensor:
    """ARP weights alpha_1..alpha_T as a `dtype` tensor (T,).

    num_frames: a Python int (weights computed in float64, then cast), or a scalar integer
    tensor for a T known only at run time (computed with TensorFlow ops in float32; T=1 -> [1]).
    Examples: T=2 [-0.5, 0.5]; T=3 [-4/3, 2/3, 2/3]; T=5 [-3.7, 0.3, 1.3, 1.3, 0.8].
    """
    if isinstance(num_frames, (int, np.integer)):
        return tf.constant(arp_weights(int(num_frames)), dtype=dtype)
    T = tf.cast(tf.convert_to_tensor(num_frames), tf.float32)
    tf.debugging.assert_greater_equal(T, 1.0, message="arp_coefficients: T must be >= 1")
    j = tf.range(1.0, T + 1.0, dtype=tf.float32)
    alpha = tf.math.cumsum((2.0 * j - T - 1.0) / j, reverse=True)
    alpha = tf.where(tf.equal(T, 1.0), tf.ones_like(alpha), alpha)
    return tf.cast(alpha, dtype)


@keras.saving.register_keras_serializable(package="tfvid")
class ApproximateRankPooling(keras.layers.Layer):
    """Pools the time axis `axis` away: scale * sum_t alpha_t x_t, then `activation`.

    Input: (B, T, H, W, C) frames or flow, (B, T, h, w, c) feature maps, or any tensor with
    time on `axis` (T may be None: the weights are then computed at run time).
    Output: the input shape without `axis`, e.g. (B, H, W, C).

    Args:
      axis: the time axis (negative counts from the end; 0, the batch axis, is refused).
      scale: multiplies the dynamic image (0.1 inside a network, as the reference).
      activation: applied after scaling (None; "relu" for dynamic maps).
    """

    def __init__(self, axis: int = 1, scale: float = 1.0, activation=None, **kwargs):
        super().__init__(**kwargs)
        if int(axis) == 0:
            raise ValueError("ApproximateRankPooling: axis 0 is the batch axis; time is "
                             "usually axis=1 in (B, T, H, W, C)")
        self.axis = int(axis)
        self.scale = float(scale)
        self.activation = keras.activations.get(activation)

    def _time_axis(self, rank: int) -> int:
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= axis < rank:
            raise ValueError(f"ApproximateRankPooling: axis={self.axis} is not a time axis of a "
                             f"rank-{rank} input (batch first)")
        return axis

    def call(self, inputs):
        x = inputs
        if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype)):
            x = ops.cast(x, self.compute_dtype)       # e.g. uint8 pixels
        axis = self._time_axis(len(x.shape))
        T = x.shape[axis]
        alpha = arp_coefficients(T if T is not None else tf.shape(x)[axis], dtype=x.dtype)
        if self.scale != 1.0:
            alpha = alpha * ops.cast(self.scale, x.dtype)
        shape = [1] * len(x.shape)
        shape[axis] = -1
        out = ops.sum(x * ops.reshape(alpha, shape), axis=axis)
        return self.activation(out)

    def compute_output_shape(self, input_shape):
        axis = self._time_axis(len(input_shape))
        return tuple(input_shape[:axis]) + tuple(input_shape[axis + 1:])

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, scale=self.scale,
                      activation=keras.activations.serialize(self.activation))
        return config


def _image_axes(x) -> list[int]:
    if len(x.shape) < 3:
        raise ValueError(f"expected a dynamic image (H, W, C) or a batch (..., H, W, C), "
                         f"got shape {tuple(x.shape)}")
    return [-3, -2, -1]


def dynamic_image_to_uint8(di) -> tf.Tensor:
    """Display conversion: one min-max over H x W x C (not per channel) to 0..255, rounded.

    di: (H, W, C) or a batch (..., H, W, C) (each image scaled by its own min and max).
    Returns uint8 of the same shape; a constant image gives zeros.
    """
    x = tf.cast(tf.convert_to_tensor(di), tf.float32)
    axes = _image_axes(x)
    lo = tf.reduce_min(x, axis=axes, keepdims=True)
    span = tf.reduce_max(x, axis=axes, keepdims=True) - lo
    y = tf.math.divide_no_nan(255.0 * (x - lo), span)
    return tf.cast(tf.clip_by_value(tf.floor(y + 0.5), 0.0, 255.0), tf.uint8)


def caffenet_normalize(di, norm: float = 6000.0, clip: float = 128.0) -> tf.Tensor:
    """The older CaffeNet input setting: scale each whole DI (H x W x C) to L2 norm `norm`, then
    clip to [-clip, clip]. di: (H, W, C) or (..., H, W, C); float32 out; zeros stay zeros."""
    x = tf.cast(tf.convert_to_tensor(di), tf.float32)
    axes = _image_axes(x)
    length = tf.sqrt(tf.reduce_sum(tf.square(x), axis=axes, keepdims=True))
    x = tf.math.divide_no_nan(x * norm, length)
    return tf.clip_by_value(x, -clip, clip)
