"""Segmental consensus: aggregate per-snippet class scores into one video score.

Temporal Segment Networks (the TSN paper, docs/tsn.md, section 3.2 "Aggregation
function") combine the K snippet-level scores F(T_1) ... F(T_K) with a consensus function G
applied to the class scores (logits) BEFORE the softmax. Five functions are defined:

    avg        g_i = 1/K sum_k f_i^k                         (default, best on UCF101)
    max        g_i = max_k f_i^k
    topk       g_i = mean of the k largest f_i^k, per class  (k = ``top_k``)
    weighted   g_i = sum_k w_k f_i^k, w learned, init 1/K    (data independent)
    attention  g_i = sum_k A(T_k) f_i^k,  A(T_k) = softmax_k(w_att . R_k)  (eq. 9)

where R_k is the snippet's pooled feature ("the activation of the last hidden layer").

Shapes: logits (B, K, classes) -> (B, classes). The attention mode is called with a list
``layer([logits, features])`` where features is (B, K, D). Only "weighted" needs a static K.

Example (docs/tsn.md): segment logits [[1, 2], [3, 0], [2, 2]] give
avg [2, 1.333], max [3, 2], top-2 [2.5, 2.0], weights [0.2, 0.3, 0.5] -> [2.1, 1.4].
"""
import keras
from keras import ops

CONSENSUS_MODES = ("avg", "max", "topk", "weighted", "attention")


@keras.saving.register_keras_serializable(package="tfvid")
class SegmentConsensus(keras.layers.Layer):
    """Aggregates axis 1 of (B, K, classes) segment logits into (B, classes) video logits.

    Args:
      mode: one of ``CONSENSUS_MODES``.
      top_k: number of largest segment scores averaged per class in "topk" mode. When a clip
        has fewer than ``top_k`` segments, all of them are averaged.
      num_segments: K, needed by "weighted" (one learned weight per segment). When None it is
        taken from the static input shape at build time.
    """

    def __init__(self, mode="avg", top_k=2, num_segments=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in CONSENSUS_MODES:
            raise ValueError(
                f"SegmentConsensus: unknown mode {mode!r}; choose one of {CONSENSUS_MODES}")
        if int(top_k) < 1:
            raise ValueError(f"SegmentConsensus: top_k must be >= 1, got {top_k}")
        self.mode = mode
        self.top_k = int(top_k)
        self.num_segments = None if num_segments is None else int(num_segments)

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        if self.mode == "attention":
            if not (isinstance(input_shape, (list, tuple)) and len(input_shape) == 2
                    and isinstance(input_shape[0], (list, tuple))):
                raise ValueError("SegmentConsensus(mode='attention') is called as "
                                 "layer([logits (B, K, classes), features (B, K, D)])")
            feat_dim = input_shape[1][-1]
            if feat_dim is None:
                raise ValueError("SegmentConsensus(mode='attention') needs a static feature "
                                 "dimension D in features (B, K, D)")
            # Zero init: uniform attention at the start, i.e. the average consensus.
            self.attention_kernel = self.add_weight(
                name="attention_kernel", shape=(int(feat_dim),),
                initializer="zeros", trainable=True)
        elif self.mode == "weighted":
            if self.num_segments is None:
                self.num_segments = input_shape[1]
            if self.num_segments is None:
                raise ValueError("SegmentConsensus(mode='weighted') needs num_segments "
                                 "(a fixed K): pass num_segments or use a static K")
            if input_shape[1] is not None and input_shape[1] != self.num_segments:
                raise ValueError(f"SegmentConsensus: num_segments={self.num_segments} but "
                                 f"the input has K={input_shape[1]} segments")
            self.segment_weights = self.add_weight(
                name="segment_weights", shape=(self.num_segments,),
                initializer=keras.initializers.Constant(1.0 / self.num_segments),
                trainable=True)
        self.built = True

    # ------------------------------------------------------------------- call
    def call(self, inputs):
        if self.mode == "attention":
            logits, features = inputs
            return self._attention(logits, features)
        if isinstance(inputs, (list, tuple)):
            raise ValueError(f"SegmentConsensus(mode={self.mode!r}) takes one tensor "
                             "(B, K, classes), not a list")
        x = inputs
        if self.mode == "avg":
            return ops.mean(x, axis=1)
        if self.mode == "max":
            return ops.max(x, axis=1)
        if self.mode == "topk":
            # Sort ascending along K and average the last k (all of them if K < k).
            ranked = ops.sort(x, axis=1)
            return ops.mean(ranked[:, -self.top_k:, :], axis=1)
        # weighted: sum_k w_k f^k
        w = ops.cast(self.segment_weights, x.dtype)
        return ops.einsum("bkc,k->bc", x, w)

    def _attention(self, logits, features):
        w = ops.cast(self.attention_kernel, features.dtype)
        scores = ops.einsum("bkd,d->bk", features, w)          # e_k = w_att . R_k
        attn = ops.softmax(scores, axis=1)                      # A(T_k), softmax over K
        attn = ops.cast(attn, logits.dtype)
        return ops.einsum("bkc,bk->bc", logits, attn)

    def compute_output_shape(self, input_shape):
        if self.mode == "attention":
            input_shape = input_shape[0]
        return (input_shape[0], input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, top_k=self.top_k, num_segments=self.num_segments)
        return config
