"""Folding the segment (time) axis into the batch axis and back: the reshapes around a 2D backbone
that runs once on every snippet / frame of a clip (TSN, StNet, DIN, dynamic image networks).

    (B, K, *rest) -> FoldSegments -> (B*K, *rest) -> backbone -> UnfoldSegments -> (B, K, ...)
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfvid")
class FoldSegments(keras.layers.Layer):
    """Merges the batch and segment axes: (B, K, *rest) -> (B*K, *rest); rest must be static."""

    def call(self, inputs):
        return ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))

    def compute_output_shape(self, input_shape):
        b, k = input_shape[0], input_shape[1]
        merged = b * k if (b is not None and k is not None) else None
        return (merged,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="tfvid")
class UnfoldSegments(keras.layers.Layer):
    """Splits the merged axis again: call as layer([x (B*K, *rest), reference (B, K, ...)])
    -> (B, K, *rest), with B and K read from the reference tensor (K may be dynamic)."""

    def call(self, inputs):
        x, reference = inputs
        k = reference.shape[1]
        if k is None:
            k = ops.shape(reference)[1]
        return ops.reshape(x, (-1, k) + tuple(x.shape[1:]))

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (ref_shape[0], ref_shape[1]) + tuple(x_shape[1:])
