"""Weight standardization folded into plain convolutions, for every export format.

A `WSConv2D` standardizes its kernel on every call; at inference the standardized
kernel is a constant, so an exported model holds it in a plain `Conv2D` and costs
what a plain ResNet costs. Backend-neutral (Keras only): the TF Hub SavedModel
export (`tfhub/export.py`) and the LiteRT, ONNX and OpenVINO exports (`deploy/`) use it.
"""

import keras
import numpy as np

from keras_bigtransfer.layers import WSConv2D


def fold_weight_standardization(model, constant_normalization=False):
    """A copy of `model` where every WSConv2D is a Conv2D holding its standardized kernel
    (nested functional models are folded too).

    With `constant_normalization`, a `Normalization` layer given its mean and variance also
    becomes the `Rescaling` it is at inference (x / std - mean / std), so its statistics are
    constants of the graph rather than tensors the traced function captures (tf2onnx turns
    captured tensors into extra model inputs).
    """

    def clone(layer):
        if isinstance(layer, WSConv2D):
            config = layer.get_config()
            config.pop("epsilon")
            config.pop("epsilon_mode")
            return keras.layers.Conv2D.from_config(config)
        if isinstance(layer, keras.Model) and getattr(layer, "inputs", None):
            return fold_weight_standardization(layer, constant_normalization)  # copies its own weights
        if constant_normalization and _fixed_normalization(layer):
            mean = np.asarray(layer.mean, "float64").reshape(-1)
            std = np.maximum(np.sqrt(np.asarray(layer.variance, "float64").reshape(-1)), keras.backend.epsilon())
            return keras.layers.Rescaling((1.0 / std).tolist(), offset=(-mean / std).tolist(), name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        # Input layers hold nothing (and clone_model may rename them).
        if not layer.weights or isinstance(layer, keras.Model):
            continue
        target = folded.get_layer(layer.name)
        if isinstance(layer, WSConv2D):
            target.kernel.assign(layer.standardized_kernel())
            if layer.use_bias:
                target.bias.assign(layer.bias)
        else:
            target.set_weights(layer.get_weights())
    return folded


def _fixed_normalization(layer):
    """A channels-last Normalization with its statistics given (not adapted, not inverted)."""
    return (isinstance(layer, keras.layers.Normalization) and layer.input_mean is not None
            and not layer.invert and tuple(layer.axis) in ((-1,), (3,)) and layer.mean is not None)


__all__ = ["fold_weight_standardization"]
