"""StNet's temporal layers (the StNet paper, docs/stnet.md section 3, docs/stnet.md).

TemporalModelingBlock: a 3D convolution with kernel (3, 1, 1) over the feature maps of the T
super-images, inserted after res3 and res4 ("temporal modeling block", Fig. 2):

    (B, T, H, W, C) -> (B, T, H, W, C)
    variant "official" (PaddlePaddle code, the default):
        y = x + BN(ReLU(Conv3D_C->C(x)))          He-normal kernel, zero bias
    variant "paper" (section 3, "Conv3d-BN3d-ReLU"):
        y = ReLU(BN(Conv3D_C->C(x)))              kernel 1/(3C), zero bias, BN identity at init

  The paper names no residual connection, so the "paper" variant has none: at initialisation
  every output channel is the mean of the input over a 3-frame window and all C channels.
  The official code's residual makes the block the identity when its conv and BN are zero.

TemporalXceptionBlock: the temporal Xception block on (B, T, C) feature sequences (Fig. 3a):

    v = BN(x)
    long  = pointwise_W(depthwise_3(ReLU(BN(pointwise_W(depthwise_3(v))))))
    short = pointwise_W(v)
    y = ReLU(BN(long + short))                    (B, T, C) -> (B, T, W), W = width = 1024

  "depthwise_3" is the channel-wise 1D conv (kernel 3, 'same' zero padding in time, groups =
  channels) and "pointwise_W" the temporal-wise 1D conv (kernel 1, all channels -> W); all
  have biases. It works on any T (also cached per-frame features, paper Table 1).
  Trainable parameters with C = 2048, W = 1024: 5,266,432.
"""
from __future__ import annotations

import keras
from keras import ops

TEMPORAL_BLOCK_VARIANTS = ("official", "paper")
# PaddlePaddle / PyTorch BatchNorm defaults (eps 1e-5, running average keeps 0.9).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def _batch_norm(name, *, epsilon, momentum, synchronized):
    return keras.layers.BatchNormalization(axis=-1, epsilon=epsilon, momentum=momentum,
                                           synchronized=synchronized, name=name)


@keras.saving.register_keras_serializable(package="tfvid")
class TemporalModelingBlock(keras.layers.Layer):
    """StNet temporal modelling block: (B, T, H, W, C) -> (B, T, H, W, C), any T.

    Args:
      variant: "official" (Conv3D -> ReLU -> BN, added to the input; He init) or "paper"
        (Conv3D -> BN -> ReLU, no residual; kernel 1/(3C)). See the module docstring.
      kernel_size: temporal kernel size (3 in the paper), 'same' zero padding in time.
      epsilon, momentum: of the BatchNormalization (PaddlePaddle defaults).
      synchronized: BatchNormalization(synchronized=...) for multi-replica training.
    """

    def __init__(self, variant="official", kernel_size=3, epsilon=BN_EPSILON,
                 momentum=BN_MOMENTUM, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        if variant not in TEMPORAL_BLOCK_VARIANTS:
            raise ValueError(f"TemporalModelingBlock: unknown variant {variant!r}; choose one "
                             f"of {TEMPORAL_BLOCK_VARIANTS}")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"TemporalModelingBlock: kernel_size must be odd and positive, "
                             f"got {kernel_size}")
        self.variant = variant
        self.kernel_size = int(kernel_size)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.synchronized = bool(synchronized)
        self.conv = None
        self.bn = None

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(f"TemporalModelingBlock expects (B, T, H, W, C) inputs, got shape "
                             f"{tuple(input_shape)}")
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("TemporalModelingBlock needs a static channel dimension C")
        if self.variant == "official":
            init = keras.initializers.HeNormal()
        else:  # the paper: weights 1 / (3 C) (kernel_size x C inputs per output), biases 0
            init = keras.initializers.Constant(1.0 / (self.kernel_size * channels))
        self.conv = keras.layers.Conv3D(channels, (self.kernel_size, 1, 1), padding="same",
                                        use_bias=True, kernel_initializer=init,
                                        bias_initializer="zeros", name="conv")
        self.bn = _batch_norm("bn", epsilon=self.epsilon, momentum=self.momentum,
                              synchronized=self.synchronized)
        self.conv.build(input_shape)
        self.bn.build(input_shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        y = self.conv(inputs)
        if self.variant == "official":
            y = self.bn(ops.relu(y), training=training)
            return inputs + y
        return ops.relu(self.bn(y, training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(variant=self.variant, kernel_size=self.kernel_size, epsilon=self.epsilon,
                      momentum=self.momentum, synchronized=self.synchronized)
        return config


@keras.saving.register_keras_serializable(package="tfvid")
class TemporalXceptionBlock(keras.layers.Layer):
    """Temporal Xception block (StNet Fig. 3a): (B, T, C) -> (B, T, width), any T.

    Args:
      width: output channels W of every temporal-wise (pointwise) conv (1024 in the paper).
      kernel_size: temporal kernel of the two channel-wise convs (3), 'same' zero padding.
      epsilon, momentum, synchronized: of the three BatchNormalizations.
    Sub-layers (weight names): bn_in, long_dw1, long_pw1, long_bn, long_dw2, long_pw2,
    short_pw, bn_out.
    """

    def __init__(self, width=1024, kernel_size=3, epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                 synchronized=False, **kwargs):
        super().__init__(**kwargs)
        if int(width) < 1:
            raise ValueError(f"TemporalXceptionBlock: width must be positive, got {width}")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"TemporalXceptionBlock: kernel_size must be odd and positive, "
                             f"got {kernel_size}")
        self.width = int(width)
        self.kernel_size = int(kernel_size)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.synchronized = bool(synchronized)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"TemporalXceptionBlock expects (B, T, C) inputs with a static C, "
                             f"got shape {tuple(input_shape)}")
        w, k = self.width, self.kernel_size

        def bn(name):
            return _batch_norm(name, epsilon=self.epsilon, momentum=self.momentum,
                               synchronized=self.synchronized)

        def depthwise(name):
            return keras.layers.DepthwiseConv1D(k, padding="same", use_bias=True, name=name)

        def pointwise(name):  # a kernel-1 conv over time == a Dense on the last axis
            return keras.layers.Dense(w, use_bias=True, name=name)

        self.bn_in, self.long_bn, self.bn_out = bn("bn_in"), bn("long_bn"), bn("bn_out")
        self.long_dw1, self.long_dw2 = depthwise("long_dw1"), depthwise("long_dw2")
        self.long_pw1, self.long_pw2 = pointwise("long_pw1"), pointwise("long_pw2")
        self.short_pw = pointwise("short_pw")
        shape_c = tuple(input_shape)
        shape_w = shape_c[:-1] + (w,)
        for layer, shape in ((self.bn_in, shape_c), (self.long_dw1, shape_c),
                             (self.long_pw1, shape_c), (self.long_bn, shape_w),
                             (self.long_dw2, shape_w), (self.long_pw2, shape_w),
                             (self.short_pw, shape_c), (self.bn_out, shape_w)):
            layer.build(shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        v = self.bn_in(inputs, training=training)
        long = self.long_pw1(self.long_dw1(v))
        long = ops.relu(self.long_bn(long, training=training))
        long = self.long_pw2(self.long_dw2(long))
        short = self.short_pw(v)
        return ops.relu(self.bn_out(long + short, training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.width,)

    def get_config(self):
        config = super().get_config()
        config.update(width=self.width, kernel_size=self.kernel_size, epsilon=self.epsilon,
                      momentum=self.momentum, synchronized=self.synchronized)
        return config


def txb_param_count(channels: int, width: int = 1024, kernel_size: int = 3) -> int:
    """Trainable parameters of a TemporalXceptionBlock on C = ``channels`` features (BN moving
    statistics excluded): 5,266,432 for C = 2048, W = 1024."""
    c, w, k = int(channels), int(width), int(kernel_size)
    bn = 2 * c + 2 * w + 2 * w                       # bn_in, long_bn, bn_out (gamma, beta)
    depthwise = (k * c + c) + (k * w + w)            # long_dw1, long_dw2
    pointwise = 2 * (c * w + w) + (w * w + w)        # long_pw1, short_pw, long_pw2
    return bn + depthwise + pointwise
