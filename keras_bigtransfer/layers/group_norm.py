"""GroupNorm for images (channels last, or first with axis=1), computed the way each backend likes it."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ImageGroupNormalization(keras.layers.GroupNormalization):
    """`keras.layers.GroupNormalization` (same weights, config and results) for image batches,
    NHWC or NCHW.

    Input: (batch, height, width, channels), or (batch, channels, height, width)
    with axis=1 (a model built channels_first), channels divisible by `groups`;
    output: the same shape in the layer's compute dtype. Other ranks fall back
    to `keras.layers.GroupNormalization`. Wu & He, "Group Normalization",
    ECCV 2018 (arXiv:1803.08494).

    One layer, one config; the kernel behind it depends on the backend
    (paired benchmarks: bench/group_norm.py):

    - TensorFlow: the per-channel sums over (h, w) are matrix products with a
      ones vector (GEMVs, faster than TF's reduction over two outer axes; Keras'
      5-D reshape-and-reduce cost about 3x a BatchNorm), folded into groups.
    - JAX: plain reductions over the (batch, pixels, groups, channels / groups)
      view, which XLA fuses with the normalization.
    - PyTorch: ATen's fused `group_norm` on the channels-last view
      `x.permute(0, 3, 1, 2)` (no copy), after subtracting each group's mean:
      ATen's channels-last CPU kernel computes E[x^2] - E[x]^2, which loses
      every digit once a group's mean is 1000x its spread; on centred input
      that formula is the centred variance.

    Numerics, on every backend: the input is centred on its group mean before
    squaring (the variance is the mean of (x - mean)^2, not E[x^2] - E[x]^2)
    and the statistics and the normalization run in float32 under every
    policy; only the result is cast to the compute dtype.
    """

    def __init__(self, groups=32, axis=-1, **kwargs):
        # axis=1: NCHW (models built under keras.config.image_data_format() == "channels_first").
        if axis not in (-1, 3, 1):
            raise ValueError(f"ImageGroupNormalization needs axis=-1 (channels last) or 1 "
                             f"(channels first); got {axis}.")
        super().__init__(groups=groups, axis=1 if axis == 1 else -1, **kwargs)

    def call(self, inputs):
        if len(inputs.shape) != 4:
            return super().call(inputs)
        backend = keras.backend.backend()
        channels_first = self.axis == 1
        if backend == "torch":
            outputs = self._normalize_torch(inputs, channels_first=channels_first)
        elif channels_first:
            outputs = self._normalize_channels_first(inputs)
        elif backend == "jax":
            outputs = self._normalize_reduce(inputs)
        else:
            outputs = self._normalize_matmul(inputs)
        return ops.cast(outputs, self.compute_dtype)

    def _normalized(self, centred, variance, shape):
        """centred / sqrt(variance + epsilon) * gamma + beta in float32; gamma is folded into
        the small per-(sample, channel) scale first, so the activation is multiplied once
        (fewer passes, and the rounding a traced SavedModel reproduces)."""
        scale = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            scale = scale * ops.reshape(ops.cast(self.gamma, "float32"), shape)
        y = centred * scale
        if self.center:
            y = y + ops.reshape(ops.cast(self.beta, "float32"), shape)
        return y

    def _group_mean(self, per_channel, per_group, channels):
        """(batch, channels) -> each channel's group mean, as (batch, 1, channels)."""
        grouped = ops.reshape(per_channel, (-1, self.groups, per_group))
        mean = ops.mean(grouped, axis=-1, keepdims=True)
        return ops.reshape(ops.broadcast_to(mean, ops.shape(grouped)), (-1, 1, channels))

    def _normalize_matmul(self, inputs):
        """NHWC -> normalized NHWC (float32): channel sums as GEMVs with a ones vector."""
        channels = inputs.shape[-1]
        per_group = channels // self.groups
        shape = ops.shape(inputs)
        pixels = shape[1] * shape[2]
        x = ops.reshape(ops.cast(inputs, "float32"), (shape[0], pixels, channels))
        averager = ops.ones((1, 1, pixels), "float32") / ops.cast(pixels, "float32")
        mean = self._group_mean(ops.matmul(averager, x)[:, 0], per_group, channels)
        centred = x - mean
        variance = self._group_mean(ops.matmul(averager, ops.square(centred))[:, 0], per_group, channels)
        y = self._normalized(centred, variance, (channels,))
        return ops.reshape(y, shape)

    def _normalize_reduce(self, inputs):
        """NHWC -> normalized NHWC (float32): reductions over (pixels, channels in group)."""
        channels = inputs.shape[-1]
        per_group = channels // self.groups
        shape = ops.shape(inputs)
        x = ops.reshape(ops.cast(inputs, "float32"), (shape[0], -1, self.groups, per_group))
        # Pixels first, then the group's channels: shorter float32 sums than one reduction.
        mean = ops.mean(ops.mean(x, axis=1, keepdims=True), axis=3, keepdims=True)
        centred = x - mean
        variance = ops.mean(ops.mean(ops.square(centred), axis=1, keepdims=True), axis=3, keepdims=True)
        y = self._normalized(centred, variance, (self.groups, per_group))
        return ops.reshape(y, shape)

    def _normalize_channels_first(self, inputs):
        """NCHW -> normalized NCHW (float32): per-channel means over the contiguous pixel axis."""
        channels = inputs.shape[1]
        per_group = channels // self.groups
        shape = ops.shape(inputs)
        x = ops.reshape(ops.cast(inputs, "float32"), (shape[0], channels, -1))
        # (batch, 1, channels) -> (batch, channels, 1): the same order in memory.
        mean = ops.reshape(self._group_mean(ops.mean(x, axis=-1), per_group, channels), (-1, channels, 1))
        centred = x - mean
        variance = ops.reshape(self._group_mean(ops.mean(ops.square(centred), axis=-1), per_group, channels),
                               (-1, channels, 1))
        y = self._normalized(centred, variance, (channels, 1))
        return ops.reshape(y, shape)

    def _normalize_torch(self, inputs, channels_first=False):
        """NHWC (or NCHW) -> normalized, same layout (float32): ATen's group_norm.

        ATen's kernel is natively NCHW; `x.permute(0, 3, 1, 2)` of an NHWC tensor is a
        channels-last view it reads in place, and its result permuted back is NHWC again.
        """
        import torch.nn.functional as F

        x = ops.cast(inputs, "float32")
        if not channels_first:
            x = x.permute(0, 3, 1, 2)
        batch, channels = x.shape[:2]
        # Centring first keeps ATen's one-pass variance exact (see the class docstring).
        mean = x.mean(dim=(2, 3)).reshape(batch, self.groups, -1).mean(dim=2, keepdim=True)
        centred = x - mean.expand(batch, self.groups, channels // self.groups).reshape(batch, channels, 1, 1)
        weight = ops.cast(self.gamma, "float32") if self.scale else None
        bias = ops.cast(self.beta, "float32") if self.center else None
        y = F.group_norm(centred, self.groups, weight, bias, self.epsilon)
        return y if channels_first else y.permute(0, 2, 3, 1)


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ChannelsLastGroupNormalization(ImageGroupNormalization):
    """`ImageGroupNormalization` under its name before session 13 (it took NCHW input too, so the
    name was wrong): `.keras` files saved with that name still load, and old imports still work."""
