"""The weight hub: reading, converting and loading published checkpoints."""

from keras_bigtransfer.hub.weights import load_weights

__all__ = ["load_weights"]
