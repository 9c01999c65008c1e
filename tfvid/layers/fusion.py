"""Late fusion of stream scores inside one Keras model (the four-stream dynamic image network,
tfvid.models.four_stream)."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfvid")
class WeightedAverage(keras.layers.Layer):
    """Weighted average of same-shaped inputs: layer([x_1, ..., x_n]) = sum w_i x_i / sum w_i.

    ``stream_weights``: n finite, non-negative weights, not all zero (normalised here).
    """

    def __init__(self, stream_weights, **kwargs):
        super().__init__(**kwargs)
        values = [float(w) for w in stream_weights]
        if not values or any(not (w >= 0 and w < float("inf")) for w in values) \
                or sum(values) <= 0:
            raise ValueError(f"WeightedAverage: weights must be finite, non-negative and not "
                             f"all zero, got {values}")
        self.stream_weights = values

    def call(self, inputs):
        if len(inputs) != len(self.stream_weights):
            raise ValueError(f"WeightedAverage: {len(inputs)} inputs for "
                             f"{len(self.stream_weights)} weights")
        total = sum(self.stream_weights)
        out = None
        for w, x in zip(self.stream_weights, inputs):
            term = x * ops.cast(w / total, x.dtype)
            out = term if out is None else out + term
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "stream_weights": list(self.stream_weights)}
