"""Activations that need an argument Keras' string names do not carry."""

import keras


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class GELU(keras.layers.Layer):
    """GELU; `approximate=True` is the tanh form.

    The official ViT (flax `nn.gelu`) uses the tanh form, timm and vit-keras the
    exact erf one; `keras.layers.Activation("gelu")` is the exact one.
    """

    def __init__(self, approximate=True, **kwargs):
        super().__init__(**kwargs)
        self.approximate = bool(approximate)

    def call(self, inputs):
        return keras.activations.gelu(inputs, approximate=self.approximate)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["approximate"] = self.approximate
        return config
