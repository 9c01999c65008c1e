"""Window pooling layers of the dynamic image networks (the dynamic image networks paper,
docs/dynamic_images.md).

Approximate rank pooling itself lives in tfvid.layers.rank_pooling; these are the other
pieces of `tfvid.models.dynamic_image`:

    ParametricPooling   PP1 / PP2 (section 5.7): a learned temporal fully connected pooler
    TemporalReduce      orderless mean / max over the frames of a window (Table 1 baselines)
    SelectFrame         one frame of each window (static-image stream, SI)
    MaxOverWindows      temporal max pooling over all windows of a video (section 5.5)

and `frames_to_window`, the reshape that turns T single frames into one window of T frames
(single dynamic image, SDI). All layers keep channels last and round-trip through
keras.saving.
"""
from __future__ import annotations

import keras
from keras import ops

REDUCE_MODES = ("mean", "max")


def _check_axis(axis, what):
    if int(axis) < 1:
        raise ValueError(f"{what}: axis must be >= 1 (axis 0 is the batch), got {axis}")
    return int(axis)


@keras.saving.register_keras_serializable(package="tfvid")
class ParametricPooling(keras.layers.Layer):
    """Learned temporal pooling of the L frames on ``axis`` (paper section 5.7, Table 5).

    PP1 (``hidden=0``): y = sum_t w_t x_t + b, a "10 x 1" fully connected layer applied to
    every temporal slice of the data (one weight per frame plus a scalar bias, shared over
    space and channels). PP2 (``hidden=H``, the paper uses H = L = 10): an L x H layer, ReLU,
    then H x 1. ``activation`` (default "relu": the paper's sigma in
    phi = sigma(sum_t alpha_t psi(I_t) + b)) follows the last layer.

    Input (B, L, ...) with L static (parametric pooling needs a fixed window); output (B, ...).
    Initialisation as the reference MatConvNet code: N(0, 0.1) weights, zero biases.
    """

    def __init__(self, hidden=0, axis=1, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        if self.hidden < 0:
            raise ValueError(f"ParametricPooling: hidden must be >= 0, got {hidden}")
        self.axis = _check_axis(axis, "ParametricPooling")
        self.activation = keras.activations.get(activation)
        self._activation_name = activation

    def build(self, input_shape):
        length = input_shape[self.axis]
        if length is None:
            raise ValueError("ParametricPooling needs a static number of frames on axis "
                             f"{self.axis} (input shape {tuple(input_shape)})")
        init = keras.initializers.RandomNormal(stddev=0.1)
        if self.hidden:
            self.hidden_kernel = self.add_weight(name="hidden_kernel",
                                                 shape=(length, self.hidden), initializer=init)
            self.hidden_bias = self.add_weight(name="hidden_bias", shape=(self.hidden,),
                                               initializer="zeros")
            length = self.hidden
        self.kernel = self.add_weight(name="kernel", shape=(length,), initializer=init)
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros")

    def call(self, inputs):
        x = ops.moveaxis(inputs, self.axis, -1)                    # (B, ..., L)
        if self.hidden:
            x = ops.relu(ops.matmul(x, ops.cast(self.hidden_kernel, x.dtype))
                         + ops.cast(self.hidden_bias, x.dtype))     # (B, ..., H)
        y = ops.sum(x * ops.cast(self.kernel, x.dtype), axis=-1) + ops.cast(self.bias, x.dtype)
        return self.activation(y) if self.activation is not None else y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:self.axis]) + tuple(input_shape[self.axis + 1:])

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "axis": self.axis,
                "activation": self._activation_name}


@keras.saving.register_keras_serializable(package="tfvid")
class TemporalReduce(keras.layers.Layer):
    """Orderless pooling of ``axis`` away: "mean" (mean image) or "max" (max image).

    The baselines of the paper's Table 1 (single mean / max image vs the dynamic image).
    (B, L, ...) -> (B, ...).
    """

    def __init__(self, mode="mean", axis=1, **kwargs):
        super().__init__(**kwargs)
        if mode not in REDUCE_MODES:
            raise ValueError(f"TemporalReduce: mode must be one of {REDUCE_MODES}, got {mode!r}")
        self.mode = mode
        self.axis = _check_axis(axis, "TemporalReduce")

    def call(self, inputs):
        if self.mode == "mean":
            return ops.mean(inputs, axis=self.axis)
        return ops.max(inputs, axis=self.axis)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:self.axis]) + tuple(input_shape[self.axis + 1:])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "axis": self.axis}


@keras.saving.register_keras_serializable(package="tfvid")
class SelectFrame(keras.layers.Layer):
    """Keeps frame ``index`` of axis 1: (B, L, ...) -> (B, ...) (negative indices count back)."""

    def __init__(self, index=0, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, inputs):
        return inputs[:, self.index]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "index": self.index}


@keras.saving.register_keras_serializable(package="tfvid")
class MaxOverWindows(keras.layers.Layer):
    """Temporal max pooling over the windows of each video (paper section 5.5, fig. 4c).

    Called as ``layer([features, reference])``: features (B*N, ...) hold N items per video in
    video-major order (the fold of (B, N, ...)), reference is any tensor whose first axis is
    B (the network input). Returns (B, ...) = the max over the N items. N may be dynamic.
    Because max is idempotent, repeating a video's own windows (cyclic padding of a batch)
    leaves the result unchanged.
    """

    def call(self, inputs):
        features, reference = inputs
        batch = ops.shape(reference)[0]
        rest = tuple(features.shape[1:])
        grouped = ops.reshape(features, (batch, -1) + rest)
        return ops.max(grouped, axis=1)

    def compute_output_shape(self, input_shape):
        features_shape, reference_shape = input_shape
        return (reference_shape[0],) + tuple(features_shape[1:])


def frames_to_window(clip):
    """(..., T, S, S, C) single-frame steps -> (..., 1, S, S, T*C): one window of T frames.

    Frame-major channels (channel c is frame c // C), i.e. the layout of an MDI window, so
    clips of `tfvid.data.sampling.UniformSampler(num_frames=T)` (T frames spread over the
    whole video) feed a single-dynamic-image network built with window=T, num_windows=1.
    Works on tf tensors inside tf.data (``ds.map(lambda e: {**e, "clip":
    frames_to_window(e["clip"])})``) and on numpy arrays. Flow steps (x, y) give the
    interleaved [x1, y1, x2, y2, ...] layout of flow windows.
    """
    import tensorflow as tf

    clip = tf.convert_to_tensor(clip)
    rank = clip.shape.rank
    if rank is None or rank < 4:
        raise ValueError(f"frames_to_window needs (..., T, S, S, C), got shape {clip.shape}")
    perm = list(range(rank - 4)) + [rank - 3, rank - 2, rank - 4, rank - 1]
    moved = tf.transpose(clip, perm)                                  # (..., S, S, T, C)
    shape = tf.shape(moved)
    merged = tf.reshape(moved, tf.concat([shape[:-2], [shape[-2] * shape[-1]]], 0))
    out = tf.expand_dims(merged, -4)                                  # (..., 1, S, S, T*C)
    static = clip.shape
    channels = None if static[-4] is None or static[-1] is None else static[-4] * static[-1]
    return tf.ensure_shape(out, static[:-4].concatenate([1, static[-3], static[-2], channels]))
