"""Weights into models: a constructor's `weights=`, `hub.load_weights`, and bare checkpoints.

The family of a model, its checkpoint converter and the detectors of bare checkpoints
all come from the registry; the file work (catalogue, download, readers, assignment)
from the weights layer, which names no family.
"""

import dataclasses
import os

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.models import registry
from keras_bigtransfer.weights import assign, checkpoint
from keras_bigtransfer.weights.resolve import refuse_known_bad, resolve_weights


def checkpoint_classes(weights, family):
    """The class count of a checkpoint's head (`weights` a catalogue tag, a path, a Hub handle or
    a `ResolvedWeights`), or None when it has none. A catalogue entry answers without downloading;
    a file (or another revision of a catalogued repository) is read once, headers only."""
    weights = resolve_weights(weights)
    if weights.entry is not None and not weights.pinned:
        return weights.entry.num_classes
    return registry.get_family(family).head_classes(weights.arrays)


def load_weights(model, weights, *, revision=None, strict=True, position_grid=None, new_head=False):
    """Load `weights` (a local checkpoint path, a catalogue tag, a Hub handle or the
    `ResolvedWeights` a constructor made of one) into `model`, all or nothing.

    The model's family (from the registry) picks the key map. Names, shapes and dtypes
    are checked from the file's headers, then every array is read and checked, and only
    then is the model changed: on any error it is as before. A classifier head whose
    class count differs from the checkpoint's is zero-initialized, with a warning; the
    rest loads.

    Args:
        model: a model of a registered family.
        weights: path to a checkpoint file (or TF checkpoint), a catalogue tag / alias, a
            Hugging Face Hub handle (`hf-hub:org/name[@revision]`), or a
            `weights.resolve.ResolvedWeights` (resolved once by the caller, not again here).
        revision: Hub weights only: the branch, tag or commit (as `@revision` in the handle).
        strict: raise `WeightsError` on any missing, unused or mis-shaped key.
        position_grid: ViT only: (rows, cols) of the stored position-embedding grid,
            needed when it is not square and differs from the model's grid.
        new_head: the model's class count was asked for: a checkpoint head of another
            class count is replaced without a warning (as timm does).

    Raises:
        WeightsError: the file cannot be read or does not fit (one line naming the file
            for unreadable files; every problem listed for files that do not fit).
        ValueError: `revision` with weights not from the Hub, or with a handle naming another.
        TypeError, ValueError: `position_grid` is not two positive integers.
    """
    from keras_bigtransfer.layers.position_embedding import check_position_grid

    position_grid = check_position_grid(position_grid)  # a bad argument, not a bad file
    weights = resolve_weights(weights, revision)  # once: entry, revision, known-bad; file on first use
    if weights is None:
        raise TypeError("load_weights: weights must be a checkpoint path, a catalogue tag or a Hub handle; got None.")
    family = registry.family_of(model)
    options = family.check_options(registry.ConvertOptions(position_grid=position_grid))  # before any file work
    if weights.family is not None and weights.family != family.name:
        raise ValueError(f"{weights.entry.tag} holds {weights.family} weights, not {family.name} weights.")
    path, source, kind = weights.path, weights.source, weights.format
    arrays = weights.arrays  # headers only; a WeightsError names the file
    other = registry.family_of(arrays, None)
    if other is not None and other is not family:
        raise ValueError(
            f"{os.path.basename(os.fspath(path))} holds {other.name} weights; {model.name} is a "
            f"{family.name} model."
        )
    options = dataclasses.replace(options, kind=kind, source=source)
    with checkpoint.reading(path):  # converting and assigning read the data
        conversion = family.convert(arrays, model, options)
        try:
            return assign.assign(
                model, conversion.assignments, conversion.unknown, source=source,
                strict=strict, optional=conversion.optional, stored=arrays, new_head=new_head,
            )
        except WeightsError as error:
            raise _other_variant(error, family, arrays, model, source) from None


def _other_variant(error, family, arrays, model, source, shown=5):
    """A file of another variant (EfficientNetB3 weights into EfficientNetB0) fails with
    hundreds of shape mismatches: name the variant the file fits, and show only a few."""
    text = str(error)
    if "shape mismatches" not in text or family.identify is None:
        return error
    try:
        fits = family.identify(arrays)
    except Exception:  # identification is a courtesy: the original error stands
        return error
    ours = model.pretrained_cfg.get("architecture") if hasattr(model, "pretrained_cfg") else None
    ours_variant = registry.find_variant(ours) if ours else None
    fits_variant = registry.find_variant(fits) if fits else None
    if fits_variant is None or (ours_variant is not None and ours_variant.architecture == fits_variant.architecture):
        return error
    lines = text.splitlines()
    problems = [line for line in lines[1:] if line.startswith("  ")]
    # The first conv's line first: its width tells the architecture apart at a glance.
    first = getattr(model, "head_spec", {}).get("first_conv") if hasattr(model, "head_spec") else None
    if first:
        problems.sort(key=lambda line: f"({first}/" not in line)
    listing = "\n".join(problems[:shown])
    more = f"\n    ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return WeightsError(
        f"{source} holds {fits} weights, not weights for {model.name}"
        f"{f' ({ours})' if ours else ''}: build keras_bigtransfer.{fits}(weights=...) instead.\n"
        f"First of {len(problems)} problems:\n{listing}{more}"
    )


def model_from_checkpoint(path_or_arrays, source=None, *, position_grid=None):
    """A model built to fit a bare checkpoint (every size read off the arrays), loaded.

    Args:
        path_or_arrays: a checkpoint file, or {key: array} (a SavedModel's variables).
        source: the name used in messages (default: the file's name).
        position_grid: for a ViT checkpoint whose position grid is not square, its
            (rows, cols): the model is then built for images of that grid.

    Raises:
        ValueError: no registered family recognizes the checkpoint.
        WeightsError: the file cannot be read, or its arrays do not fit.
    """
    if isinstance(path_or_arrays, dict):
        return registry.model_from_arrays(path_or_arrays, source or "checkpoint", position_grid=position_grid)
    source = source or os.fspath(path_or_arrays)
    refuse_known_bad(path_or_arrays)
    # Lazy: names and shapes are checked (and the model built) before data is read.
    arrays = checkpoint.read_arrays(path_or_arrays, lazy=True)
    return registry.model_from_arrays(arrays, source, position_grid=position_grid,
                                     reading=checkpoint.reading(path_or_arrays))
