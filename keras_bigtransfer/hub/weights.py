"""Resolve a constructor's `weights=` argument and load it into the model."""

import os

from keras_bigtransfer.hub import assign, checkpoint
from keras_bigtransfer.hub.convert import bit

CONVERTERS = {"bit": bit.convert}


def load_weights(model, weights, *, family, strict=True):
    """Load `weights` (a local checkpoint path or a catalogue tag) into `model`."""
    if family not in CONVERTERS:
        raise ValueError(f"No converter for family {family!r}; known: {sorted(CONVERTERS)}.")
    path = os.fspath(weights)
    if not os.path.isfile(path):
        path = _resolve_tag(path)
    arrays = checkpoint.read_arrays(path)
    converted, unknown = CONVERTERS[family](arrays)
    return assign.assign(model, converted, unknown, source=os.path.basename(path), strict=strict)


def _resolve_tag(tag):
    raise ValueError(
        f"weights={tag!r} is not an existing file. Pass None, or the path of a "
        "published checkpoint (.npz or .h5)."
    )
