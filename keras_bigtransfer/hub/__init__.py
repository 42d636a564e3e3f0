"""The weight hub: the catalogue, verified downloads, converters and loading."""

from keras_bigtransfer.hub.catalogue import Entry, list_models
from keras_bigtransfer.hub.weights import load_weights, resolve

__all__ = ["Entry", "list_models", "load_weights", "resolve"]
