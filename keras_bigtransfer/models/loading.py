"""Weights into models: a constructor's `weights=`, `hub.load_weights`, and bare checkpoints.

The family of a model, its checkpoint converter and the detectors of bare checkpoints
all come from the registry; the file work (catalogue, download, readers, assignment)
from the weights layer, which names no family.
"""

import os

from keras_bigtransfer.models import registry
from keras_bigtransfer.weights import assign, catalogue, checkpoint
from keras_bigtransfer.weights.resolve import resolve


def local_path(weights):
    """The local checkpoint `weights` names: an existing file or TF checkpoint as given,
    a catalogue tag downloaded (or found in the cache) first."""
    path = os.fspath(weights)
    if os.path.exists(path) or checkpoint.tf_checkpoint_prefix(path) is not None:
        return path
    return resolve(path)


def checkpoint_classes(weights, family):
    """The class count of a checkpoint's head (`weights` a catalogue tag or a path), or None
    when it has none. A catalogue tag answers from the catalogue, without downloading."""
    entry = catalogue.find(weights) if isinstance(weights, str) and not os.path.exists(weights) else None
    if entry is not None:
        return entry.num_classes
    path = local_path(weights)
    return registry.get_family(family).head_classes(checkpoint.read_arrays(path, lazy=True))


def load_weights(model, weights, *, strict=True):
    """Load `weights` (a local checkpoint path or a catalogue tag) into `model`.

    The model's family (from the registry) picks the key map. A classifier head whose
    class count differs from the checkpoint's is zero-initialized, with a warning; the
    rest loads.

    Args:
        model: a model of a registered family.
        weights: path to a checkpoint file (or TF checkpoint), or a catalogue tag / alias.
        strict: raise `WeightsError` on any missing, unused or mis-shaped key.
    """
    family = registry.family_of(model)
    if isinstance(weights, str) and not os.path.exists(weights):
        entry = catalogue.find(weights)
        if entry is not None and entry.family != family.name:
            raise ValueError(f"{entry.tag} holds {entry.family} weights, not {family.name} weights.")
    path = local_path(weights)
    arrays = checkpoint.read_arrays(path, lazy=True)
    other = registry.detect_family(arrays)
    if other is not None and other is not family:
        raise ValueError(
            f"{os.path.basename(os.fspath(path))} holds {other.name} weights; {model.name} is a "
            f"{family.name} model."
        )
    converted, unknown, *optional = family.convert(arrays, model, checkpoint.sniff_format(path))
    return assign.assign(
        model, converted, unknown, source=os.path.basename(os.fspath(path).rstrip(os.sep)),
        strict=strict, optional=optional[0] if optional else (),
    )


def model_from_checkpoint(path_or_arrays, source=None):
    """A model built to fit a bare checkpoint (every size read off the arrays), loaded.

    Args:
        path_or_arrays: a checkpoint file, or {key: array} (a SavedModel's variables).
        source: the name used in messages (default: the file's name).

    Raises:
        ValueError: no registered family recognizes the checkpoint.
    """
    if isinstance(path_or_arrays, dict):
        arrays = path_or_arrays
        source = source or "checkpoint"
    else:
        source = source or os.fspath(path_or_arrays)
        arrays = checkpoint.read_arrays(path_or_arrays)
    family = registry.detect_family(arrays)
    if family is None or family.from_checkpoint is None:
        known = [f.name for f in registry.families() if f.detect is not None]
        raise ValueError(
            f"{source}: the checkpoint is in no published layout a registered family recognizes "
            f"({', '.join(known)}); build the model with its constructor and pass weights= instead."
        )
    return family.from_checkpoint(arrays, source)
