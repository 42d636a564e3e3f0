"""The model registry: every family registers itself here, and every other part asks it.

A *family* (`Family`) is one folder under `models/` (bit, efficientnet, vit): its builder,
its checkpoint converter, its feature maps, and how to recognize its checkpoints and models.
A *variant* (`Variant`) is one public constructor (`BiT_M_R50x1`, `EfficientNetB0`, `ViT_B16`):
its configuration row, default weights and upstream head. A family's `__init__.py` declares
both and hands them to `factory.register`, which registers them and binds each variant to its
constructor (`factory.make_constructor`):

    FAMILY = registry.Family(name="bit", build=..., convert=..., ...)

    def _variant(config):
        return registry.Variant(name=config.constructor_name, config=config, ...)

    BiT_S_R50x1, BiT_S_R50x3, ... = factory.register(FAMILY, map(_variant, CONFIGS.values()))

The contract every family implements the same way (docs/adding_a_family.md): `Family`'s
callables, a converter taking one `ConvertOptions` and returning one `Conversion`, and its
feature maps as a `Features` record.

"Which family" has one answer, `family_of(thing)`, whatever the thing: a variant or
constructor name (the family it was registered with: `Variant.family`), a catalogue entry
(its constructor's family), a built model (`Family.owns`) or a bare checkpoint's arrays
(`Family.detect`).

Public API (also at the package top level): `create_model(name, **kwargs)` and
`list_models(pattern=None, pretrained=False)`.

This module imports nothing from the families: they import it.
"""

import collections.abc
import dataclasses
import difflib
import fnmatch
from typing import Any, Callable, Optional

from keras_bigtransfer.weights import catalogue, hf_hub

_FAMILIES = {}  # name -> Family, in registration order
_VARIANTS = {}  # constructor name -> Variant, in registration order
_CONSTRUCTORS = {}  # constructor name -> constructor


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """The options every converter (`Family.convert`) and `Family.from_checkpoint` accept.

    One record for all families, so a misspelt option is a TypeError, never silently dropped.
    A family that does not use a family-specific option lists it not in
    `Family.convert_options`, and `check_options` refuses it when set.

    Attributes:
        kind: `weights.checkpoint.sniff_format`'s answer ("npz", "h5", "torch", "tf"), or None.
        source: the checkpoint's name in messages (its file name).
        position_grid: ViT: (rows, cols) of a non-square stored position-embedding grid, or None.
    """

    kind: Optional[str] = None
    source: str = "checkpoint"
    position_grid: Optional[tuple] = None


# ConvertOptions fields that only some families use (declared in `Family.convert_options`),
# and what they apply to (the message when another family's weights get one).
FAMILY_SPECIFIC_OPTIONS = {"position_grid": "ViT weights only (models with a position-embedding grid)"}


@dataclasses.dataclass(frozen=True)
class Conversion:
    """What a converter returns: the checkpoint mapped onto a model's variables.

    Attributes:
        assignments: {model variable path: (checkpoint key, array)}; arrays may be lazy
            (read when assigned).
        unknown: checkpoint keys no rule of the family knows.
        optional: model variable paths the checkpoint may lack (ViT's register tokens).
    """

    assignments: dict
    unknown: tuple = ()
    optional: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "unknown", tuple(self.unknown))
        object.__setattr__(self, "optional", tuple(self.optional))


@dataclasses.dataclass(frozen=True)
class Features:
    """A family's multi-scale feature maps (`features_only`; `models/features.py` reads them).

    Attributes:
        stages: (config) -> [features.Stage]: every map of a variant's model, in order.
        maps: (model, selected stages, is_last flags, *, feature_norm) -> the symbolic maps of
            a built backbone (include_top=False, pooling=None).
        default_out_indices: timm's default `out_indices` (a tuple of indices, or n: the last n).
        reductions: the maps' strides, the same for every variant (a pyramid: (2, 4, 8, 16,
            32), keyed "P1" ...), or None when every map is at the model's stride
            (`Variant.input_multiple`: ViT's encoder blocks, keyed "block0" ...).
    """

    stages: Callable
    maps: Callable
    default_out_indices: Any
    reductions: Optional[tuple] = None


@dataclasses.dataclass(frozen=True)
class Family:
    """What the rest of the package needs to know about one model family: the contract.

    Attributes:
        name: "bit", "efficientnet", "vit": its folder under `models/`, the `family` of its
            catalogue entries and of its variants.
        build: (config, *, weights_entry, include_top, num_classes, input_shape, pooling,
            classifier_activation, name, in_chans, **options) -> a Keras model (random init).
            `weights_entry` is the catalogue entry of the weights about to load, or None.
        convert: (arrays, model, options: ConvertOptions) -> Conversion.
        head_classes: (arrays) -> the class count of a checkpoint's classifier head,
            or None when it has none. Read off key names and shapes only.
        owns: (model) -> whether a built model is this family's (read off its layers).
        detect: (arrays) -> whether a bare checkpoint (or a SavedModel's variables) is in
            this family's published layout; None when the family cannot say.
        from_checkpoint: (arrays, options: ConvertOptions) -> a model built to fit the arrays,
            loaded; None when the family cannot build one from the arrays alone.
        identify: (arrays) -> the constructor name whose architecture a bare checkpoint
            fits (read off key names and shapes), or None; names the right variant when
            a file does not fit the model it was loaded into.
        convert_options: the `FAMILY_SPECIFIC_OPTIONS` its converter uses (("position_grid",)).
        features: its feature maps (`Features`), or None when it offers none.
        layout_rules: ((variable-path regex, sharded axes), ...): its model-parallel layout
            (`keras_bigtransfer.distribution`); () when it has none.
        token_pooling: the pooling it offers besides "avg" and "max", with what it is
            ((("token", "the class token"),) for ViT): the constructors' `pooling` / `global_pool`.
        to_published: (model, path) -> path: writes the model in the family's published
            checkpoint format (BiT's .npz); None when there is none.
        export_formats: file extensions `to_published` writes (".npz",).
        timm_options: ((timm's argument, the family's option), ...): what `drop_rate` and
            `drop_path_rate` set in this family's builder.
        timm_builds: ((option, value), ...): the builder options under which this family's
            model computes what timm's does (ViT: exact GELU); a model built from a timm
            repository's config.json takes them unless the caller sets them.
        timm_architectures: ((timm architecture, constructor name, timm's default `arch.tag`
            or None), ...): timm's names for this family's variants (`models/timm_names.py`
            reads them), as timm 1.0.x's `default_cfgs` spell them; the default tag is timm's
            first for the architecture, given only where the catalogue has it (None: the
            variant's own default weights). Each constructor must be one of the family's
            variants (`factory.register` checks).
    """

    name: str
    build: Callable
    convert: Callable
    head_classes: Callable
    owns: Callable
    detect: Optional[Callable] = None
    from_checkpoint: Optional[Callable] = None
    identify: Optional[Callable] = None
    convert_options: tuple = ()
    features: Optional[Features] = None
    layout_rules: tuple = ()
    token_pooling: tuple = ()
    to_published: Optional[Callable] = None
    export_formats: tuple = ()
    timm_options: tuple = ()
    timm_builds: tuple = ()
    timm_architectures: tuple = ()

    def __post_init__(self):
        unknown = set(self.convert_options) - set(FAMILY_SPECIFIC_OPTIONS)
        if unknown:
            raise ValueError(f"family {self.name!r}: convert_options {sorted(unknown)} are not "
                             f"ConvertOptions fields; family-specific ones: {sorted(FAMILY_SPECIFIC_OPTIONS)}.")

    def check_options(self, options):
        """Raise ValueError when `options` (a `ConvertOptions`) sets a family-specific option
        this family does not use (position_grid for BiT weights); return them."""
        for field, applies_to in FAMILY_SPECIFIC_OPTIONS.items():
            if getattr(options, field) is not None and field not in self.convert_options:
                raise ValueError(f"{field} applies to {applies_to}, not to {self.name} weights.")
        return options


@dataclasses.dataclass(frozen=True)
class Variant:
    """One public constructor.

    Attributes:
        name: the constructor's name ("BiT_M_R50x1"); also its attribute on the package.
        config: the family's configuration row (a frozen dataclass from `<family>/config.py`).
        architecture: variants with the same architecture share checkpoints
            ("R50x1" for BiT-S-R50x1 and BiT-M-R50x1; the constructor name elsewhere).
        default_weights: the catalogue tag `weights=` defaults to, or None.
        num_classes: the upstream head's class count (used without weights).
        native_resolution: the image side the default weights were trained or fine-tuned at.
        input_multiple: height and width must be multiples of this (ViT: the patch size
            times the hybrid stem's stride; 1 for convolutional families).
        reference: the independent implementation whose parameter count it matches,
            "timm:<model name>" or "keras.applications:<class name>", or None.
        default_name: the Keras model name when `name=None` ("bit_m_r50x1").
        weights_unavailable: when set, passing weights raises ValueError with this message
            (BiT-L: never released).
        options: the family-specific keyword arguments and their defaults.
        summary: the first line(s) of the constructor's docstring.
        options_doc: the docstring lines (8-space indent) of `options`.
        named_weights: (("imagenet", tag), ("imagenet21k", tag)): the catalogue tags that
            keras.applications' `weights="imagenet"` (the family's ILSVRC-2012 classifier)
            and `"imagenet21k"` mean for this variant, where published.
        num_params: the parameter count at the upstream head (Keras' `count_params()`:
            BatchNorm statistics included), or None; the harness checks it where given and
            must have it above its `.keras` round-trip limit (200M).
        family: the family's name ("bit"): `factory.register` sets it.
    """

    name: str
    config: Any
    architecture: str
    default_weights: Optional[str]
    num_classes: int
    native_resolution: int
    input_multiple: int = 1
    reference: Optional[str] = None
    default_name: Optional[str] = None
    weights_unavailable: Optional[str] = None
    options: tuple = ()  # ((name, default), ...)
    summary: str = ""
    options_doc: str = ""
    named_weights: tuple = ()
    num_params: Optional[int] = None
    family: str = ""

    @property
    def constructor(self):
        return _CONSTRUCTORS[self.name]


def register_family(family):
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ValueError(f"model family {family.name!r} is registered twice.")
    _FAMILIES[family.name] = family
    return family


def register_variant(variant, constructor):
    """Register `variant` with its constructor (see `factory.make_constructor`); return the constructor."""
    if variant.family not in _FAMILIES:
        raise ValueError(f"{variant.name}: register family {variant.family!r} first.")
    key = variant.name.lower()
    clash = next((n for n in _VARIANTS if n.lower() == key), None)
    if clash is not None:
        raise ValueError(f"constructor {variant.name!r} is registered twice (as {clash!r}).")
    _VARIANTS[variant.name] = variant
    _CONSTRUCTORS[variant.name] = constructor
    constructor.variant = variant
    return constructor


def families():
    """The registered families, in registration order."""
    return list(_FAMILIES.values())


def get_family(name):
    """The `Family` of that name ("bit"); ValueError listing the known ones."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; registered: {sorted(_FAMILIES)}.") from None


def variants(family=None):
    """The registered variants (of one family), in registration order."""
    return [v for v in _VARIANTS.values() if family is None or v.family == family]


def _constructor_key(name):
    return name.strip().lower().replace("-", "_")


def find_variant(name):
    """The `Variant` of a constructor name in any case ("bit_m_r50x1"), or None."""
    if name in _VARIANTS:
        return _VARIANTS[name]
    key = _constructor_key(name)
    return next((v for n, v in _VARIANTS.items() if n.lower() == key), None)


def _unknown(name, what):
    from keras_bigtransfer.models import timm_names

    candidates = {e.tag: e.tag for e in catalogue.list_models()}
    candidates.update({n: n for n in timm_names.names()})
    candidates.update({n.lower(): n for n in _VARIANTS})
    close = difflib.get_close_matches(_constructor_key(name), list(candidates), n=5, cutoff=0.5)
    hint = f" Closest matches: {[candidates[c] for c in close]}." if close else ""
    return ValueError(
        f"{name!r} is not a {what}.{hint} keras_bigtransfer.list_models() lists the constructors and timm's "
        "architecture names, list_models(pretrained=True) the catalogue tags and timm's arch.tag names."
    )


def get_variant(name):
    """The `Variant` of a constructor name in any case; ValueError with the closest matches."""
    variant = find_variant(name)
    if variant is None:
        raise _unknown(name, "registered model")
    return variant


def create_model(name, **kwargs):
    """Build a model by constructor name or catalogue tag.

    Args:
        name: a constructor name in any case ("BiT_M_R50x1", "bit_m_r50x1", "vit_b16"),
            or a catalogue tag or alias ("bit_m_r50x1_ilsvrc2012"), which also picks
            those weights and, through them, the head's class count (a headless `*_notop`
            tag gives the backbone with average pooling). A constructor name wins where
            a string is both. A catalogued Hugging Face handle at a revision
            ("hf-hub:timm/<name>@<revision>") builds that entry's constructor with those weights;
            any other timm repository ("hf-hub:timm/<repo>[@rev]", "hf://timm/<repo>") is built
            from its config.json as timm does (its `architecture` names the constructor; its
            `num_classes` and `pretrained_cfg`: input size, crop_pct, interpolation, mean, std,
            label names, become the model's `pretrained_cfg`). `hub.load` of a name or handle
            comes here too.
            timm's names, exactly as timm spells them (`models/timm_names.py`): an architecture
            ("tf_efficientnet_lite0", "resnetv2_50x1_bit") builds our variant with the weights
            of timm's default tag where catalogued; "arch.tag" builds with those weights.
        **kwargs: the constructor's arguments (`weights=`, `revision=`, `num_classes=`,
            `input_shape=`, timm's `pretrained=`, `in_chans=`, `drop_rate=`, ...); an explicit
            `weights=` overrides the tag's, `pretrained=False` drops it.

    Raises:
        ValueError: `name` is neither, the message listing the closest matches; a Hub
            repository whose config.json names an architecture of no registered family.
    """
    if not isinstance(name, str):
        raise TypeError(f"create_model: name must be a string; got {type(name).__name__}.")
    from keras_bigtransfer.models import timm_names

    variant = find_variant(name)
    if variant is not None:
        return variant.constructor(**kwargs)
    if kwargs.get("pretrained") is False:  # timm: no weights, whatever the name's tag
        kwargs.setdefault("weights", None)
    if hf_hub.is_handle(name):  # hf-hub:org/name[@rev], hf://org/name: one path, hub.load's too
        return _create_from_hub(name, kwargs)
    timm_name = timm_names.resolve(name) if catalogue.find(name) is None else None
    if timm_name is not None:
        constructor, weights = timm_name
        if weights is not None:
            kwargs.setdefault("weights", weights)
        return get_variant(constructor).constructor(**kwargs)
    entry = catalogue.find(name)
    if entry is not None:
        kwargs.setdefault("weights", entry.tag)
        if entry.num_classes == 0 and kwargs["weights"] == entry.tag:
            # A headless checkpoint (`*_notop`): the backbone with average pooling.
            kwargs.setdefault("include_top", False)
            kwargs.setdefault("pooling", "avg")
        return get_variant(entry.constructor).constructor(**kwargs)
    raise _unknown(name, "registered model or a catalogue tag")


def is_model_name(name):
    """Whether `create_model` takes `name` as a model's name (a constructor, a catalogue tag or
    alias, a timm architecture or `arch.tag`, a Hub handle) rather than refusing it outright."""
    from keras_bigtransfer.models import timm_names

    return isinstance(name, str) and (
        find_variant(name) is not None or catalogue.find(name) is not None or hf_hub.is_handle(name)
        or name.partition(".")[0] in timm_names.ARCHITECTURES)


def _create_from_hub(handle, kwargs):
    """A Hub repository as a model: a catalogued one (at any revision) as its entry says, any
    other timm repository of a known architecture from its `config.json`, as timm's
    `create_model("hf-hub:...")` does; the weights resolved once and handed to the constructor."""
    from keras_bigtransfer.weights.resolve import resolve_weights

    # revision= names the handle's revision; beside an explicit weights=, it is theirs.
    resolved = resolve_weights(handle, None if "weights" in kwargs else kwargs.pop("revision", None))
    config = None
    if resolved.entry is None:  # not catalogued: timm's config.json (at that revision) describes it
        config = hf_hub.config(resolved.weights)
        if config is None:
            return _from_weights_alone(handle, resolved, kwargs)
        resolved = dataclasses.replace(resolved, entry=_timm_config_entry(resolved, config))
        for option, value in get_family(resolved.entry.family).timm_builds:
            kwargs.setdefault(option, value)  # the model computes what timm's does
    entry = resolved.entry
    kwargs.setdefault("weights", resolved)
    if kwargs["weights"] is resolved and entry.num_classes == 0:
        # A headless checkpoint: the backbone with average pooling.
        kwargs.setdefault("include_top", False)
        kwargs.setdefault("pooling", "avg")
    model = get_variant(entry.constructor).constructor(**kwargs)
    labels = (config or {}).get("pretrained_cfg", {}).get("label_names")
    if labels and kwargs["weights"] is resolved and getattr(model, "num_classes", None) == len(labels):
        model.set_pretrained_cfg(label_names=list(labels))
    return model


def _timm_config_entry(resolved, config):
    """A catalogue entry for an uncatalogued timm repository, from its `config.json` (timm's
    `save_for_hf`: `architecture`, `num_classes`, `pretrained_cfg`)."""
    from keras_bigtransfer.models import timm_names

    handle = resolved.weights
    architecture = config.get("architecture") if isinstance(config, dict) else None
    constructor = timm_names.hub_constructor(architecture)
    if constructor is None:
        raise ValueError(
            f"{handle}: its config.json names timm architecture {architecture!r}, which no registered "
            f"family ({', '.join(_FAMILIES)}) builds; keras_bigtransfer.list_models() lists the timm "
            "architectures it does."
        )
    cfg = config.get("pretrained_cfg") or {}
    repository = "hf-hub:" + hf_hub.parse(handle)[0]
    num_classes = config.get("num_classes", cfg.get("num_classes", 1000))
    return catalogue.Entry(
        tag=repository, family=get_variant(constructor).family, constructor=constructor, url=repository,
        format="timm", pretrained_on=cfg.get("tag") or "unknown", fine_tuned_on=None,
        num_classes=int(num_classes), resolution=int((cfg.get("input_size") or (3, 224, 224))[-1]),
        normalization="the repository's config.json", license=cfg.get("license") or "unknown",
        crop_pct=cfg.get("crop_pct"), interpolation=cfg.get("interpolation"),
        mean=tuple(cfg["mean"]) if cfg.get("mean") else None, std=tuple(cfg["std"]) if cfg.get("std") else None,
    )


def model_from_arrays(arrays, source, *, position_grid=None, reading=None):
    """The model a bare checkpoint's arrays describe (every size read off them), loaded by the
    family whose published layout they are in (`Family.detect`, then `Family.from_checkpoint`).

    Args:
        arrays: {key: array or LazyArray}; `reading` (a context manager) wraps the data reads.
        source: the name used in messages. position_grid: ViT's (rows, cols), or None.

    Raises:
        ValueError: no registered family recognizes the layout, or an option it does not take.
    """
    import contextlib

    family = family_of(arrays, None)
    if family is None or family.from_checkpoint is None:
        known = [f.name for f in families() if f.detect is not None]
        raise ValueError(
            f"{source}: the checkpoint is in no published layout a registered family recognizes "
            f"({', '.join(known)}); build the model with its constructor and pass weights= instead."
        )
    options = family.check_options(ConvertOptions(source=source, position_grid=position_grid))
    with reading if reading is not None else contextlib.nullcontext():
        return family.from_checkpoint(arrays, options)


def _from_weights_alone(handle, resolved, kwargs):
    """A Hub repository without a config.json: the model its weights' layout describes (every
    size read off the arrays), as `hub.load` of a checkpoint file; it takes no arguments."""
    from keras_bigtransfer.errors import OfflineError
    from keras_bigtransfer.weights import checkpoint

    if kwargs:
        raise ValueError(f"{handle}: the repository has no config.json (timm's), so the model is built from "
                         f"its weights alone and takes no arguments; got {sorted(kwargs)}.")
    try:
        arrays = resolved.arrays
    except OfflineError as e:  # nothing cached: it may not even exist
        raise ValueError(f"{_unknown(handle, 'registered model or a catalogue tag')} Neither its config.json "
                         f"nor its weights are in the Hugging Face cache: {e}") from None
    return model_from_arrays(arrays, handle, reading=checkpoint.reading(resolved.path))


def list_models(pattern=None, pretrained=False):
    """Sorted model names matching a glob (or any of a list of globs), case-insensitively.

    Args:
        pattern: an `fnmatch` glob ("bit_m_*", "*vit*", "resnetv2_50x1*"), or a list of
            them (the union, as timm's `filter`); None lists everything.
        pretrained: list weights instead: the catalogue's tags and timm's `arch.tag` names
            (a tag-less pattern also matches `pattern.*`, as timm's `include_tags`).
            Without it: the constructors and timm's architecture names.

    Every name builds with `create_model(name)`.
    """
    from keras_bigtransfer.models import timm_names

    if pretrained:
        names = [e.tag for e in catalogue.list_models()] + timm_names.names(pretrained=True)
    else:
        names = list(_VARIANTS) + timm_names.names()
    if pattern is not None:
        patterns = [pattern] if isinstance(pattern, str) else pattern
        if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
            raise TypeError(f"list_models: pattern must be a glob string or a list of them; got {pattern!r}.")
        patterns = list(patterns)
        if pretrained:
            patterns += [p + ".*" for p in patterns if "." not in p]
        names = [n for n in names if any(fnmatch.fnmatchcase(n.lower(), p.lower()) for p in patterns)]
    return sorted(set(names))


_NONE = object()


def family_of(thing, default=_NONE):
    """THE answer to "which family": the `Family` of

    - a `Variant` or a constructor name (any case): the family it was registered with;
    - a catalogue entry (`weights.catalogue.Entry`): its constructor's family (the entry's
      own `family` field says the same: tests/families/test_harness.py checks);
    - a built model: the family whose `owns(model)` claims it (read off its layers);
    - a bare checkpoint's {key: array} (a Mapping): the family whose `detect(arrays)`
      recognizes its published layout.

    Raises:
        ValueError: none claims it and no `default` was given (else `default` is returned).
    """
    found = None
    if isinstance(thing, Variant):
        found = _FAMILIES[thing.family]
    elif isinstance(thing, str):
        found = _FAMILIES[get_variant(thing).family]
    elif isinstance(thing, catalogue.Entry):
        variant = find_variant(thing.constructor)
        found = _FAMILIES[variant.family] if variant is not None else None
    elif isinstance(thing, collections.abc.Mapping):
        found = next((f for f in _FAMILIES.values() if f.detect is not None and f.detect(thing)), None)
    else:
        found = next((f for f in _FAMILIES.values() if f.owns(thing)), None)
    if found is not None:
        return found
    if default is not _NONE:
        return default
    what = ("a checkpoint" if isinstance(thing, collections.abc.Mapping)
            else repr(getattr(thing, "name", None) or getattr(thing, "tag", None) or thing))
    raise ValueError(f"{what} is not of a registered family ({', '.join(_FAMILIES)}).")
