"""The weight hub: the catalogue, verified downloads, converters, export and import."""

from keras_bigtransfer.weights.catalogue import Entry, list_models
from keras_bigtransfer.tfhub.load import load
from keras_bigtransfer.tfhub.export import export
from keras_bigtransfer.models.loading import load_weights, resolve

__all__ = ["Entry", "export", "list_models", "load", "load_weights", "resolve"]
