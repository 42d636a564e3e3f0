"""Weight-standardized convolution (Qiao et al., arXiv:1903.10520), as used by BiT."""

import keras
from keras import ops

EPSILON_MODES = ("variance", "std")


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class WSConv2D(keras.layers.Conv2D):
    """`Conv2D` whose kernel is standardized per output channel before every call.

    Each output channel of the HWIO kernel is shifted to zero mean and scaled to
    unit (biased) variance over (H, W, in), then convolved. There is no learnable
    gain: the GroupNorm that follows every BiT convolution supplies it.

    The standardization is recomputed on every call on purpose: a cached kernel
    would go stale after `assign`, `set_weights`, loading or an optimizer step,
    and Keras has no public hook to invalidate it (nor would JAX's stateless
    predict see one). It costs little at batch 16 and up to half of a batch-1
    forward of BiT-R50x1 (bench/group_norm.py --what=ablate); for inference,
    `keras_bigtransfer.models.folding.fold_weight_standardization` makes an
    explicit copy with the kernels standardized once.

    Args:
        epsilon: the stabilizer. The official BiT code (TF2, PyTorch and JAX)
            uses 1e-10 on the variance; timm's BiT port uses 1e-8; the ViT
            hybrid's ResNet (vit_jax) uses 1e-5 on the standard deviation.
        epsilon_mode: "variance" divides by sqrt(var + epsilon) (BiT);
            "std" divides by sqrt(var) + epsilon (vit_jax's `StdConv`).
        **kwargs: everything `keras.layers.Conv2D` accepts.
    """

    def __init__(self, *args, epsilon=1e-10, epsilon_mode="variance", **kwargs):
        super().__init__(*args, **kwargs)
        if epsilon_mode not in EPSILON_MODES:
            raise ValueError(f"epsilon_mode must be one of {EPSILON_MODES}; got {epsilon_mode!r}.")
        self.epsilon = epsilon
        self.epsilon_mode = epsilon_mode

    def standardized_kernel(self, kernel=None):
        """The kernel actually convolved: what an export folds into a plain conv."""
        kernel = self.kernel if kernel is None else kernel
        dtype = kernel.dtype
        # In float32 even under mixed precision: half-precision moments over thousands of
        # weights lose most of their digits (and 1e-10 underflows in float16).
        kernel = ops.cast(kernel, "float32")
        mean, variance = ops.moments(kernel, axes=(0, 1, 2), keepdims=True)
        if self.epsilon_mode == "std":
            standardized = (kernel - mean) / (ops.sqrt(variance) + self.epsilon)
        else:
            standardized = (kernel - mean) * ops.rsqrt(variance + self.epsilon)
        return ops.cast(standardized, dtype)

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, self.standardized_kernel(kernel))

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, epsilon_mode=self.epsilon_mode)
        return config
