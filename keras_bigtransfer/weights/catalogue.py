"""The checkpoint catalogue: `weights/*.json`, shipped inside the package."""

import dataclasses
import difflib
import functools
import json
from importlib import resources
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Entry:
    """One published checkpoint."""

    tag: str
    family: str
    constructor: str
    url: str
    format: str
    pretrained_on: str
    fine_tuned_on: Optional[str]
    num_classes: int
    resolution: int
    normalization: str
    license: str
    checksum: Optional[dict] = None
    # A published file that does not hold what its name says (BiT-S-R50x3.h5, BiT-S-R101x1.h5:
    # big_transfer issue 47): why, with its source. Asking for it raises `WeightsError` with this
    # text before any download; `known_bad_use` is the tag of the file to use instead.
    known_bad: Optional[str] = None
    known_bad_use: Optional[str] = None
    aliases: tuple = ()
    # Evaluation settings, as timm's pretrained configurations give them (input size: resolution):
    # `keras_bigtransfer.preprocessing.eval_transform(images, tag)` uses them.
    crop_pct: Optional[float] = None
    interpolation: Optional[str] = None
    mean: Optional[tuple] = None
    std: Optional[tuple] = None

    @property
    def filename(self):
        """Where the file lives under the cache (and a mirror): the URL's path."""
        return self.url.split("://", 1)[1].split("/", 1)[1]


@functools.lru_cache(maxsize=None)
def _entries():
    entries = {}
    folder = resources.files("keras_bigtransfer") / "weights" / "catalogue"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".json"):
            continue
        for raw in json.loads(item.read_text())["entries"]:
            entry = Entry(**{**raw, "aliases": tuple(raw.get("aliases", ())),
                             **{k: tuple(raw[k]) for k in ("mean", "std") if raw.get(k) is not None}})
            if entry.tag in entries:
                raise ValueError(f"catalogue tag {entry.tag!r} appears twice ({item.name}).")
            entries[entry.tag] = entry
    return entries


def _loose(name):
    """A name with case, '-' and '.' ignored: for suggestions only, never for a match (two
    Hub repositories can differ only there: `vit_tiny_patch16_224.augreg_in21k_ft_in1k` and
    `vit_tiny_patch16_224_augreg_in21k_ft_in1k`)."""
    return name.strip().lower().replace("-", "_").replace(".", "_")


@functools.lru_cache(maxsize=None)
def _index():
    index = {}
    for entry in _entries().values():
        for name in (entry.tag, *entry.aliases):
            if index.get(name, entry) is not entry:
                raise ValueError(f"catalogue name {name!r} of {entry.tag} collides with {index[name].tag}.")
            index[name] = entry
    return index


def list_models(family=None):
    """The catalogue: every published checkpoint, optionally of one family.

    Raises:
        ValueError: `family` is not a family of the catalogue (naming the ones that are).
        TypeError: `family` is not a string.
    """
    if family is not None:
        if not isinstance(family, str):
            raise TypeError(f"list_models: family must be a family name (a string) or None; got {family!r}.")
        families = sorted({e.family for e in _entries().values()})
        if family not in families:
            raise ValueError(f"list_models: {family!r} is not a family of the catalogue; "
                             f"one of {', '.join(families)}.")
    return [e for e in _entries().values() if family is None or e.family == family]


def suggest(name, limit=8):
    """Catalogue names close to `name`, best first: those equal but for case, '-' and '.',
    then the closest by difflib's ratio (typos). Only ever offered in a message ("did you
    mean"): a handle or tag is matched exactly (`find`)."""
    if not isinstance(name, str):
        return []
    loose = _loose(name)
    same = sorted(n for n in _index() if _loose(n) == loose and n != name)
    by_loose = {}
    for n in _index():
        by_loose.setdefault(_loose(n), n)
    close = [by_loose[k] for k in difflib.get_close_matches(loose, list(by_loose), n=limit, cutoff=0.6)]
    return list(dict.fromkeys(c for c in same + close if c != name))[:limit]


def did_you_mean(name):
    """'; did you mean ...' for a message, or '' when nothing is close."""
    close = suggest(name)
    return f"; did you mean {' or '.join(repr(c) for c in close[:3])}?" if close else ""


def get(tag):
    """The entry for a tag or alias, matched exactly (a name differing in case, '-' or '.' is
    another name: it raises, suggesting the catalogued one).

    Raises:
        ValueError: `tag` is not a catalogue tag or alias; the message lists close names.
    """
    entry = find(tag)
    if entry is None:
        raise ValueError(
            f"{tag!r} is not in the weights catalogue" + did_you_mean(tag)
            + " keras_bigtransfer.hub.list_models() lists them all."
        )
    return entry


def find(tag):
    """The entry whose tag or alias is exactly `tag` (surrounding spaces aside), else None."""
    return _index().get(tag.strip()) if isinstance(tag, str) else None
