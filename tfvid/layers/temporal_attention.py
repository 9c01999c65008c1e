"""Hierarchical temporal attention of the VideoMap head ConvNet (Song et al., "Temporal-Spatial
Mapping for Action Recognition", the VideoMap paper, docs/videomap.md sections IV and
VI-B; docs/videomap.md).

An attention branch turns the VideoMap M (B, T, D, 1) into one weight per frame a0 (B, T); the
head's feature map F_i (B, R_i, D_i, C_i) is multiplied row-wise by a_i (B, R_i), where a_1 and
a_2 are a_0 max-pooled exactly as the head pools its rows:

    F~_i = A_i(M) o F_i(M),   A_i = a_i (x) 1   (a_i repeated over columns and channels)

Layers here (all serialisable):

  ColumnPooling      (B, R, K, C) -> (B, R, C)     mean (or max) over the column (feature) axis
  TemporalAttention  (B, R, C)    -> (B, T)        fully connected layer to T frame weights,
                                                   then sigmoid or T * softmax over time
  PoolAttention      (B, T)       -> (B, T')       1D max pool of an attention vector
  ScaleRows          [x (B, R, ...), a (B, R)] -> x * a, broadcast over all trailing axes
"""
from __future__ import annotations

import math

import keras
from keras import ops

ATTENTION_ACTIVATIONS = ("sigmoid", "softmax")
COLUMN_POOLINGS = ("avg", "max")


def pooled_length(length, pool_size=3, strides=2, padding="valid"):
    """Length after a 1D max pool (Keras rules): 'valid' (L - p) // s + 1 (0 when L < p),
    'same' ceil(L / s). None stays None."""
    if length is None:
        return None
    length, pool_size, strides = int(length), int(pool_size), int(strides)
    if padding == "same":
        return int(math.ceil(length / strides))
    if length < pool_size:
        return 0
    return (length - pool_size) // strides + 1


@keras.saving.register_keras_serializable(package="tfvid")
class ColumnPooling(keras.layers.Layer):
    """Pools the column axis of a (B, R, K, C) map: (B, R, K, C) -> (B, R, C).

    Args:
      mode: "avg" (mean over the K columns) or "max".
    """

    def __init__(self, mode="avg", **kwargs):
        super().__init__(**kwargs)
        if mode not in COLUMN_POOLINGS:
            raise ValueError(f"ColumnPooling: unknown mode {mode!r}; choose one of "
                             f"{COLUMN_POOLINGS}")
        self.mode = mode

    def call(self, inputs):
        if self.mode == "avg":
            return ops.mean(inputs, axis=2)
        return ops.max(inputs, axis=2)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"ColumnPooling expects (B, R, K, C) inputs, got {tuple(input_shape)}")
        return (input_shape[0], input_shape[1], input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode)
        return config


@keras.saving.register_keras_serializable(package="tfvid")
class TemporalAttention(keras.layers.Layer):
    """A fully connected layer from a feature map to one attention weight per frame.

    Input (B, ...) with static trailing axes (flattened); output (B, num_frames).

    Args:
      num_frames: T, the length of the attention vector a0.
      activation: "sigmoid" (each frame gated independently into (0, 1)) or "softmax"
        (T * softmax over time: positive weights with mean 1, frames compete).
    Sub-layer (weight names): ``fc``: (prod(trailing axes) + 1) * T parameters.
    """

    def __init__(self, num_frames, activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        if num_frames is None or int(num_frames) < 1:
            raise ValueError(f"TemporalAttention: num_frames must be a positive integer (the "
                             f"fully connected layer outputs one weight per frame), got "
                             f"{num_frames!r}")
        if activation not in ATTENTION_ACTIVATIONS:
            raise ValueError(f"TemporalAttention: unknown activation {activation!r}; choose one "
                             f"of {ATTENTION_ACTIVATIONS}")
        self.num_frames = int(num_frames)
        self.activation = activation
        self.fc = keras.layers.Dense(self.num_frames, name="fc")

    def build(self, input_shape):
        trailing = tuple(input_shape[1:])
        if not trailing or any(d is None for d in trailing):
            raise ValueError(f"TemporalAttention needs static non-batch axes to flatten, got "
                             f"shape {tuple(input_shape)} (a VideoMap with attention needs a "
                             f"fixed number of frames)")
        self.fc.build((input_shape[0], int(math.prod(trailing))))
        super().build(input_shape)

    def call(self, inputs):
        x = ops.reshape(inputs, (-1, int(math.prod(inputs.shape[1:]))))
        logits = self.fc(x)                                          # (B, T)
        if self.activation == "sigmoid":
            return ops.sigmoid(logits)
        return ops.softmax(logits, axis=-1) * float(self.num_frames)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_frames)

    def get_config(self):
        config = super().get_config()
        config.update(num_frames=self.num_frames, activation=self.activation)
        return config


@keras.saving.register_keras_serializable(package="tfvid")
class PoolAttention(keras.layers.Layer):
    """Max-pools an attention vector along time: (B, T) -> (B, T'), with the pool size, stride
    and padding of the head's row pooling so that T' equals the rows of the head's map."""

    def __init__(self, pool_size=3, strides=2, padding="valid", **kwargs):
        super().__init__(**kwargs)
        if padding not in ("valid", "same"):
            raise ValueError(f"PoolAttention: padding must be 'valid' or 'same', got {padding!r}")
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.padding = padding

    def call(self, inputs):
        x = ops.expand_dims(inputs, -1)                                    # (B, T, 1)
        x = ops.max_pool(x, pool_size=self.pool_size, strides=self.strides,
                         padding=self.padding, data_format="channels_last")
        return ops.squeeze(x, -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], pooled_length(input_shape[1], self.pool_size, self.strides,
                                              self.padding))

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding)
        return config


@keras.saving.register_keras_serializable(package="tfvid")
class ScaleRows(keras.layers.Layer):
    """Row-wise product with an attention vector: ``layer([x, a])`` with x (B, R, ...) and
    a (B, R) returns x * a repeated over every trailing axis of x (A = a (x) 1)."""

    def build(self, input_shape):
        if not (isinstance(input_shape, (list, tuple)) and len(input_shape) == 2):
            raise ValueError("ScaleRows is called as layer([x (B, R, ...), a (B, R)])")
        x_shape, a_shape = input_shape
        if len(a_shape) != 2:
            raise ValueError(f"ScaleRows: the attention must be (B, R), got {tuple(a_shape)}")
        if x_shape[1] is not None and a_shape[1] is not None and x_shape[1] != a_shape[1]:
            raise ValueError(f"ScaleRows: the map has {x_shape[1]} rows but the attention "
                             f"vector {a_shape[1]}")
        super().build(input_shape)

    def call(self, inputs):
        x, a = inputs
        for _ in range(len(x.shape) - 2):
            a = ops.expand_dims(a, -1)                                     # (B, R, 1, ..)
        return x * ops.cast(a, x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])
