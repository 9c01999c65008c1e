"""tfvid.layers: standalone, serialisable Keras layers shared by the models."""
from .consensus import CONSENSUS_MODES, SegmentConsensus
from .partial_bn import PartialBNResult, apply_partial_bn, batch_norm_layers
from .temporal import (TEMPORAL_BLOCK_VARIANTS, TemporalModelingBlock, TemporalXceptionBlock,
                       txb_param_count)
from .rank_pooling import (ApproximateRankPooling, arp_coefficients, arp_weights,
                           caffenet_normalize, dynamic_image_to_uint8)
from .dense_image import DenseImageConv, dense_image_conv_param_count
from .fusion import WeightedAverage
from .segments import FoldSegments, UnfoldSegments
from .temporal_attention import (ATTENTION_ACTIVATIONS, ColumnPooling, PoolAttention, ScaleRows,
                                 TemporalAttention)
from .window_pooling import (REDUCE_MODES, MaxOverWindows, ParametricPooling, SelectFrame,
                             TemporalReduce, frames_to_window)
