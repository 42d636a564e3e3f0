"""GroupNorm for channels-last images, computed the way a CPU likes it."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ChannelsLastGroupNormalization(keras.layers.GroupNormalization):
    """`keras.layers.GroupNormalization` (same weights, config and results) for NHWC input.

    Keras' layer reshapes to (batch, h, w, groups, channels / groups) and reduces
    over axes (1, 2, 4), then normalizes the 5-D tensor. Profiling BiT-R50 on CPU
    (bench/run.py) showed that path costing about 3x a BatchNorm. Here the
    per-channel sums over (h, w) are matrix products with a ones vector (GEMVs,
    faster than TF's reduction over two outer axes) and the (batch, channels)
    statistics are folded into groups.

    Numerics: the input is centred on its group mean before squaring (the
    variance is the mean of (x - mean)^2, not E[x^2] - E[x]^2, which cancels
    when a group's mean is large against its spread), and the statistics and
    the normalization run in float32 under every policy; only the result is
    cast to the compute dtype.
    """

    def __init__(self, groups=32, axis=-1, **kwargs):
        # axis=1: NCHW (models built under keras.config.image_data_format() == "channels_first").
        if axis not in (-1, 3, 1):
            raise ValueError(f"ChannelsLastGroupNormalization needs axis=-1 (channels last) or 1 "
                             f"(channels first); got {axis}.")
        super().__init__(groups=groups, axis=1 if axis == 1 else -1, **kwargs)

    def _group_mean(self, per_channel, per_group, channels):
        """(batch, channels) -> each channel's group mean, as (batch, 1, channels)."""
        grouped = ops.reshape(per_channel, (-1, self.groups, per_group))
        mean = ops.mean(grouped, axis=-1, keepdims=True)
        return ops.reshape(ops.broadcast_to(mean, ops.shape(grouped)), (-1, 1, channels))

    def call(self, inputs):
        if len(inputs.shape) != 4:
            return super().call(inputs)
        if self.axis == 1:
            return self._call_channels_first(inputs)
        channels = inputs.shape[-1]
        per_group = channels // self.groups
        shape = ops.shape(inputs)
        pixels = shape[1] * shape[2]
        x = ops.reshape(ops.cast(inputs, "float32"), (shape[0], pixels, channels))
        averager = ops.ones((1, 1, pixels), "float32") / ops.cast(pixels, "float32")
        mean = self._group_mean(ops.matmul(averager, x)[:, 0], per_group, channels)
        centred = x - mean
        variance = self._group_mean(ops.matmul(averager, ops.square(centred))[:, 0], per_group, channels)
        scale = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            scale = scale * ops.cast(self.gamma, "float32")
        y = centred * scale
        if self.center:
            y = y + ops.cast(self.beta, "float32")
        return ops.cast(ops.reshape(y, shape), self.compute_dtype)

    def _call_channels_first(self, inputs):
        """The same arithmetic on NCHW: per-channel means over the contiguous pixel axis."""
        channels = inputs.shape[1]
        per_group = channels // self.groups
        shape = ops.shape(inputs)
        x = ops.reshape(ops.cast(inputs, "float32"), (shape[0], channels, -1))
        # (batch, 1, channels) -> (batch, channels, 1): the same order in memory.
        mean = ops.reshape(self._group_mean(ops.mean(x, axis=-1), per_group, channels), (-1, channels, 1))
        centred = x - mean
        variance = ops.reshape(self._group_mean(ops.mean(ops.square(centred), axis=-1), per_group, channels),
                               (-1, channels, 1))
        scale = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            scale = scale * ops.reshape(ops.cast(self.gamma, "float32"), (channels, 1))
        y = centred * scale
        if self.center:
            y = y + ops.reshape(ops.cast(self.beta, "float32"), (channels, 1))
        return ops.cast(ops.reshape(y, shape), self.compute_dtype)
