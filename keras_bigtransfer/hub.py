"""The weight hub, the facade users call: the catalogue, weights, TF Hub export and import.

    hub.list_models()      the catalogue's entries (`Entry`), optionally of one family
    hub.resolve(tag)       download (or find in the cache) a catalogue checkpoint: its path
    hub.load_weights(model, weights)   a checkpoint (tag or path) into a built model
    hub.load(handle)       a tag, checkpoint, SavedModel, TF Hub module or URL as a Keras model
    hub.export(model, path)            a TF Hub reusable SavedModel

`load` and `export` live in `keras_bigtransfer.tfhub` (TensorFlow only), imported on first use.
"""

from keras_bigtransfer.models.loading import load_weights
from keras_bigtransfer.weights import catalogue
from keras_bigtransfer.weights.catalogue import Entry, list_models
from keras_bigtransfer.weights.resolve import resolve

__all__ = ["Entry", "catalogue", "export", "list_models", "load", "load_weights", "resolve"]


def load(handle_or_path):
    """Load a model as a native, editable Keras model where we implement its family.

    See `keras_bigtransfer.tfhub.load.load` for what `handle_or_path` may be.
    """
    from keras_bigtransfer.tfhub.load import load as _load

    return _load(handle_or_path)


def export(model, path, signature="feature_vector", archive=False):
    """Write `model` as a TF Hub reusable SavedModel at `path`.

    See `keras_bigtransfer.tfhub.export.export` for the arguments.
    """
    from keras_bigtransfer.tfhub.export import export as _export

    return _export(model, path, signature=signature, archive=archive)
