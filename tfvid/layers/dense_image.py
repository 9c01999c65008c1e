"""DenseImage Network's multi-width temporal convolution (the DIN paper, docs/din.md
section 3.2; docs/din.md).

A DenseImage X is the (T, K) matrix whose rows are the per-frame feature vectors in temporal
order (paper: T = 8 frames, K = 256). For each temporal width h, M filters span h consecutive
rows and all K columns; each is applied at every window i = 1 .. T-h+1 ('valid' in time),
followed by a ReLU and a max over the windows:

    c^h_{i,m} = ReLU(w_{m,h} . x_{i:i+h-1} + b_m)        o^h_m = max_i c^h_{i,m}

A filter of width h over all K columns is exactly a 1D convolution over time with kernel h and
K input channels, so each width is one ``Conv1D(M, h, padding="valid")``:

    (B, T, K) -> [ (B, M) for h in widths ]          T >= max(widths)

Trainable parameters: sum_h (h K M + M); for K = M = 256 and h = 2..6: 1,312,000.
"""
from __future__ import annotations

import keras
from keras import ops


def _check_widths(owner, widths):
    widths = tuple(int(h) for h in widths)
    if not widths:
        raise ValueError(f"{owner}: widths must name at least one temporal width")
    if any(h < 1 for h in widths):
        raise ValueError(f"{owner}: temporal widths must be positive, got {widths}")
    if len(set(widths)) != len(widths):
        raise ValueError(f"{owner}: temporal widths must be distinct, got {widths}")
    return widths


def check_frames_for_widths(owner, num_frames, widths):
    """ValueError naming the widest h and T when ``num_frames`` (T) frames are fewer than the
    widest temporal filter (a 'valid' convolution of width h needs T >= h); None passes."""
    if num_frames is None:
        return
    widest = max(widths)
    if int(num_frames) < widest:
        raise ValueError(f"{owner}: temporal width h={widest} needs at least {widest} frames "
                         f"('valid' convolution in time), but T=num_frames={int(num_frames)}; "
                         f"use widths <= {int(num_frames)} or more frames")


@keras.saving.register_keras_serializable(package="tfvid")
class DenseImageConv(keras.layers.Layer):
    """Multi-width temporal convolution + max over time on a DenseImage (DIN section 3.2).

    Input (B, T, K); output a list with one (B, filters) tensor per width, in ``widths``
    order: the width-h features c^h = [o^h_1 .. o^h_M].

    Args:
      widths: temporal widths h (the paper: 2, 3, 4, 5, 6).
      filters: M filters per width (256).
      activation: applied before the max over time (ReLU in the paper).
    A static T must be >= max(widths) (ValueError at build time). With a dynamic T the check
    runs at call time (a TensorFlow assertion; it fails the step instead of returning the
    max over an empty window set).
    Sub-layers (weight names): ``conv_h<h>`` for every width.
    """

    def __init__(self, widths=(2, 3, 4, 5, 6), filters=256, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.widths = _check_widths("DenseImageConv", widths)
        if int(filters) < 1:
            raise ValueError(f"DenseImageConv: filters must be positive, got {filters}")
        self.filters = int(filters)
        self.activation = keras.activations.get(activation)
        self._activation_config = keras.activations.serialize(self.activation)
        self.convs = [keras.layers.Conv1D(self.filters, h, padding="valid", use_bias=True,
                                          activation=None, name=f"conv_h{h}")
                      for h in self.widths]
        # tf.train.Checkpoint (the train loop's checkpoints, resume, evaluate's restore) does
        # not see layers held in a Python list of a Keras 3 layer: name each conv as a
        # checkpoint dependency too (the .weights.h5 layout is unchanged).
        if hasattr(self, "_track_trackable"):
            for conv in self.convs:
                self._track_trackable(conv, name=conv.name, overwrite=True)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"DenseImageConv expects (B, T, K) inputs with a static K, got "
                             f"shape {tuple(input_shape)}")
        check_frames_for_widths("DenseImageConv", input_shape[1], self.widths)
        for conv in self.convs:
            conv.build(tuple(input_shape))
        super().build(input_shape)

    def call(self, inputs):
        widest = max(self.widths)
        if inputs.shape[1] is not None:
            check_frames_for_widths("DenseImageConv", inputs.shape[1], self.widths)
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf
            tf.debugging.assert_greater_equal(
                tf.shape(inputs)[1], widest,
                message=f"DenseImageConv: temporal width h={widest} needs at least {widest} "
                        f"frames (T >= max(widths))")
        outputs = []
        for conv in self.convs:
            c = self.activation(conv(inputs))               # (B, T - h + 1, M)
            outputs.append(ops.max(c, axis=1))              # (B, M)
        return outputs

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], self.filters) for _ in self.widths]

    def get_config(self):
        config = super().get_config()
        config.update(widths=list(self.widths), filters=self.filters,
                      activation=self._activation_config)
        return config


def dense_image_conv_param_count(channels: int, widths=(2, 3, 4, 5, 6), filters: int = 256) -> int:
    """Trainable parameters of a DenseImageConv on K = ``channels`` columns:
    sum_h (h K M + M); 1,312,000 for K = M = 256 and h = 2..6."""
    k, m = int(channels), int(filters)
    return sum(int(h) * k * m + m for h in widths)
