"""GroupNorm for channels-last images, computed the way a CPU likes it."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ChannelsLastGroupNormalization(keras.layers.GroupNormalization):
    """`keras.layers.GroupNormalization` (same weights, config and results) for NHWC input.

    Keras' layer reshapes to (batch, h, w, groups, channels / groups) and reduces
    over axes (1, 2, 4), then normalizes the 5-D tensor. Profiling BiT-R50 on CPU
    (bench/run.py) showed that path costing about 3x a BatchNorm. Here the
    per-channel means over (h, w) are one matrix product with a ones vector
    (a GEMV, faster than TF's reduction over two outer axes), the (batch,
    channels) statistics are folded into groups, and the image is touched by
    one scale-and-shift: y = x * scale[b, c] + shift[b, c]. The variance is
    E[x^2] - E[x]^2 in float32, as `keras.ops.moments` computes it.
    """

    def __init__(self, groups=32, axis=-1, **kwargs):
        if axis not in (-1, 3):
            raise ValueError(f"ChannelsLastGroupNormalization needs axis=-1 (channels last); got {axis}.")
        super().__init__(groups=groups, axis=-1, **kwargs)

    def call(self, inputs):
        if len(inputs.shape) != 4:
            return super().call(inputs)
        channels = inputs.shape[-1]
        per_group = channels // self.groups
        x = ops.cast(inputs, "float32")
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1] * shape[2], channels))
        averager = ops.ones((1, 1, shape[1] * shape[2]), "float32") / ops.cast(shape[1] * shape[2], "float32")
        mean = ops.matmul(averager, x)[:, 0]  # (batch, channels)
        mean_square = ops.matmul(averager, ops.square(x))[:, 0]
        mean = ops.mean(ops.reshape(mean, (-1, self.groups, per_group)), axis=-1, keepdims=True)
        mean_square = ops.mean(ops.reshape(mean_square, (-1, self.groups, per_group)), axis=-1, keepdims=True)
        inv = ops.rsqrt(ops.maximum(mean_square - ops.square(mean), 0.0) + self.epsilon)
        scale = ops.broadcast_to(inv, (ops.shape(inv)[0], self.groups, per_group))
        if self.scale:
            scale = scale * ops.reshape(ops.cast(self.gamma, "float32"), (self.groups, per_group))
        shift = -mean * scale
        if self.center:
            shift = shift + ops.reshape(ops.cast(self.beta, "float32"), (self.groups, per_group))
        scale = ops.reshape(scale, (-1, 1, 1, channels))
        shift = ops.reshape(shift, (-1, 1, 1, channels))
        dtype = self.compute_dtype
        return ops.cast(inputs, dtype) * ops.cast(scale, dtype) + ops.cast(shift, dtype)
