"""The weight hub: the catalogue, verified downloads, converters, export and import."""

from keras_bigtransfer.hub.catalogue import Entry, list_models
from keras_bigtransfer.hub.importing import load
from keras_bigtransfer.hub.publishing import export
from keras_bigtransfer.hub.weights import load_weights, resolve

__all__ = ["Entry", "export", "list_models", "load", "load_weights", "resolve"]
