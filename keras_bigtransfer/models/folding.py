"""Weight standardization folded into plain convolutions, for every export format.

A `WSConv2D` standardizes its kernel on every call; at inference the standardized
kernel is a constant, so an exported model holds it in a plain `Conv2D` and costs
what a plain ResNet costs. Backend-neutral (Keras only): the TF Hub SavedModel
export (`tfhub/export.py`) and the LiteRT, ONNX and OpenVINO exports (`deploy/`) use it.
"""

import keras

from keras_bigtransfer.layers import WSConv2D


def fold_weight_standardization(model):
    """A copy of `model` where every WSConv2D is a Conv2D holding its standardized kernel
    (nested functional models are folded too)."""

    def clone(layer):
        if isinstance(layer, WSConv2D):
            config = layer.get_config()
            config.pop("epsilon")
            config.pop("epsilon_mode")
            return keras.layers.Conv2D.from_config(config)
        if isinstance(layer, keras.Model) and getattr(layer, "inputs", None):
            return fold_weight_standardization(layer)  # copies its own weights
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


__all__ = ["fold_weight_standardization"]
