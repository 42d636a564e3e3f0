"""Weight-standardized convolution (Qiao et al., arXiv:1903.10520), as used by BiT."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class WSConv2D(keras.layers.Conv2D):
    """`Conv2D` whose kernel is standardized per output channel before every call.

    Each output channel of the HWIO kernel is shifted to zero mean and scaled to
    unit (biased) variance over (H, W, in), then convolved. There is no learnable
    gain: the GroupNorm that follows every BiT convolution supplies it.

    Args:
        epsilon: added to the variance. The official BiT code (TF2, PyTorch and
            JAX) uses 1e-10; timm's BiT port uses 1e-8.
        **kwargs: everything `keras.layers.Conv2D` accepts.
    """

    def __init__(self, *args, epsilon=1e-10, **kwargs):
        super().__init__(*args, **kwargs)
        self.epsilon = epsilon

    def standardized_kernel(self, kernel=None):
        """The kernel actually convolved: what an export folds into a plain conv."""
        kernel = self.kernel if kernel is None else kernel
        mean, variance = ops.moments(kernel, axes=(0, 1, 2), keepdims=True)
        return (kernel - mean) * ops.rsqrt(variance + self.epsilon)

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, self.standardized_kernel(kernel))

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config
