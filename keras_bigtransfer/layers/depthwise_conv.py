"""A depthwise convolution that XLA:CPU runs fast on JAX.

XLA:CPU lowers a grouped convolution (`feature_group_count` = channels), the op Keras'
`DepthwiseConv2D` becomes on JAX, to a slow loop: on EfficientNet-B0's depthwise shapes at
batch 16 it is 9-27x slower than the same sum written as k*k shifted multiply-adds
(`python bench/jax_depthwise.py`). This layer computes that sum on JAX and leaves every other
backend, JAX on GPUs and TPUs, and every case outside EfficientNet's (depth multiplier 1, no
dilation) to Keras.
"""

import keras


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ShiftAddDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` (the depthwise convolution of MobileNets, Howard et al.,
    arXiv:1704.04861, as EfficientNet uses it) with the same weights, config and output; on JAX with
    `depth_multiplier=1` and no dilation it computes the k x k shifted multiply-adds of the
    padded input instead of XLA's grouped convolution (the reason: the module docstring).

    Input and output as Keras' layer: (N, H, W, C) for channels_last, (N, C, H, W) for
    channels_first, any float dtype; "same" padding pads as TensorFlow and XLA do (the extra
    row/column at the bottom/right for even totals). Outputs agree with Keras' layer to float32
    rounding (tests/parity/test_depthwise_conv.py, every backend), gradients included.
    """

    def uses_shifted_sums(self):
        """True where this layer computes shifted multiply-adds: JAX on CPU, depth multiplier 1,
        no dilation. Elsewhere it is Keras' DepthwiseConv2D."""
        if keras.backend.backend() != "jax" or self.depth_multiplier != 1 or tuple(self.dilation_rate) != (1, 1):
            return False
        import jax

        return jax.default_backend() == "cpu"  # GPUs and TPUs have fast grouped convolutions

    def call(self, inputs):
        if not self.uses_shifted_sums():
            return super().call(inputs)
        import jax

        channels_last = self.data_format == "channels_last"
        spatial = (1, 2) if channels_last else (2, 3)
        dtype = inputs.dtype
        inputs = inputs.astype("float32")  # sums in float32 under mixed precision, one rounding at the end
        kernel = keras.ops.convert_to_tensor(keras.ops.cast(self.kernel, dtype), dtype="float32")  # (kh, kw, C, 1)
        kh, kw = kernel.shape[:2]
        sh, sw = self.strides
        in_hw = tuple(inputs.shape[a] for a in spatial)
        pads = (jax.lax.padtype_to_pads(in_hw, (kh, kw), (sh, sw), "SAME") if self.padding == "same"
                else [(0, 0), (0, 0)])
        config = [(0, 0, 0)] * 4
        for axis, (low, high) in zip(spatial, pads):
            config[axis] = (low, high, 0)
        padded = jax.lax.pad(inputs, jax.numpy.zeros((), "float32"), config)
        out_h = (in_hw[0] + sum(pads[0]) - kh) // sh + 1
        out_w = (in_hw[1] + sum(pads[1]) - kw) // sw + 1
        out = None
        for i in range(kh):
            for j in range(kw):
                start, limit, strides = [0] * 4, list(padded.shape), [1] * 4
                start[spatial[0]], limit[spatial[0]], strides[spatial[0]] = i, i + (out_h - 1) * sh + 1, sh
                start[spatial[1]], limit[spatial[1]], strides[spatial[1]] = j, j + (out_w - 1) * sw + 1, sw
                tap = kernel[i, j, :, 0] if channels_last else kernel[i, j, :, 0][:, None, None]
                term = jax.lax.slice(padded, start, limit, strides) * tap
                out = term if out is None else out + term
        if self.use_bias:
            bias = keras.ops.cast(keras.ops.cast(self.bias, dtype), "float32")
            out = out + (bias if channels_last else bias[:, None, None])
        out = out.astype(dtype)
        return self.activation(out) if self.activation is not None else out
