"""THE constructor factory, and the one helper that registers a family with it.

Every family's `__init__.py` declares its `registry.Family` and one `registry.Variant` per
configuration row, then calls `register`, which registers both and makes each variant's
public constructor (`make_constructor`): the same common arguments with the same defaults,
the family's options, a head sized to the weights. `build_variant` is what every constructor
runs. Imports run one way: the families import this module; it imports `features`, `loading`
and `registry`, none of which imports it.
"""

import contextlib
import dataclasses
import inspect

import keras

from keras_bigtransfer import preprocessing
from keras_bigtransfer.models import base, features, loading, registry, timm_names
from keras_bigtransfer.weights import catalogue
from keras_bigtransfer.weights.resolve import resolve_weights


def register(family, variants):
    """Register `family` and its variants; return their constructors, in the order given.

    A family's `__init__.py` binds them to module-level names (its public API, which
    `keras_bigtransfer/__init__.py` and the docs import), in the order of its `CONFIGS`:

        BiT_S_R50x1, BiT_S_R50x3, ... = factory.register(FAMILY, map(_variant, CONFIGS.values()))

    Args:
        family: the family's `registry.Family`.
        variants: its `registry.Variant`s (their `family` is set to `family.name`).

    Returns:
        A tuple of constructors (`make_constructor`), one per variant.

    Its `timm_architectures` become timm's names for its variants (`timm_names.register`).

    Raises:
        ValueError: a variant of another family, a name registered twice, or a timm
            architecture naming no variant of the family (checked before anything is registered).
    """
    variants = list(variants)
    for variant in variants:
        if variant.family not in ("", family.name):
            raise ValueError(f"{variant.name}: a {variant.family!r} variant registered with family {family.name!r}.")
    own = {variant.name for variant in variants}
    for row in family.timm_architectures:
        if not (isinstance(row, tuple) and len(row) == 3 and row[1] in own):
            raise ValueError(f"family {family.name!r}: timm architecture row {row!r} names no constructor of "
                             f"the family (its constructors: {sorted(own)}).")
    timm_names.check(family)
    registry.register_family(family)
    constructors = []
    for variant in variants:
        variant = dataclasses.replace(variant, family=family.name)
        constructors.append(registry.register_variant(variant, make_constructor(variant)))
    timm_names.register(family)
    return tuple(constructors)


# The arguments every constructor takes, with the same defaults everywhere.
COMMON_ARGS = (
    ("weights", "the variant's default weights"),
    ("revision", None),
    ("include_top", True),
    ("num_classes", None),
    ("input_shape", None),
    ("pooling", None),
    ("classifier_activation", None),
    ("name", None),
    # Multi-scale feature maps (models/features.py): timm's names.
    ("features_only", False),
    ("out_indices", None),
    ("feature_norm", False),
    ("output_dict", False),
    # timm's habits (see docs/coming_from.md); None keeps the family's default.
    ("pretrained", None),
    ("in_chans", 3),
    ("drop_rate", None),
    ("drop_path_rate", None),
    ("global_pool", None),
)
TIMM_ARGS = ("pretrained", "in_chans", "drop_rate", "drop_path_rate", "global_pool")

COMMON_DOC = """
    Args:
        weights: a catalogue tag (default {default!r}, downloaded and verified on first
            use; `keras_bigtransfer.list_models(pretrained=True)` lists them), {named}, None
            (random init), a path to a published checkpoint of the family, or a Hugging
            Face Hub handle (`hf-hub:timm/<name>[@revision]` or `hf://timm/<name>`).
        revision: Hub weights only: a branch, tag or commit (as timm and keras-hub take it);
            with other weights, or a handle naming another revision, a ValueError.
        include_top: add global pooling and a linear classifier head.
        num_classes: head size. Default: the class count of the weights (the catalogue
            entry's, or the checkpoint file's head), else {num_classes} (upstream). Another count
            than the weights' gives a new, zero-initialized head (quietly, as timm). 0: no
            classifier, the pooled features (N, num_features) out (timm's `num_classes=0`).
        input_shape: (height, width, 3){multiple}; default (None, None, 3), any size.
        pooling: with include_top=False: "avg", "max" or None (the feature map){pooling}.
        classifier_activation: None returns logits.
        name: the model's name (default {name!r}).
        features_only: return the multi-scale feature maps instead (a list, one per
            selected stage; see `keras_bigtransfer.models.features`): the head and
            `pooling` are dropped, `model.feature_info` describes each map.
        out_indices: with features_only: the stages (timm's meaning; None: the family's default).
        feature_norm: with features_only: the final norm on the maps (timm's `norm=True`).
        output_dict: with features_only: a dict keyed "P2", ... (keras-hub's `pyramid_outputs`).
        pretrained: timm's: True keeps `weights` (default: the default weights), False means
            weights=None.
        in_chans: input channels; the stem kernel is adapted from the RGB weights as timm's
            `adapt_input_conv` does (1: summed; n: RGB tiled and scaled by 3/n), and the
            model's mean/std with it (1 channel: their average).
        drop_rate: dropout before the classifier (timm's; default: the family's).
        drop_path_rate: stochastic depth, rising over the blocks to this rate (timm's).
        global_pool: timm's pooling before the head: {global_pools}; "" with
            num_classes=0 gives the unpooled features.
{options}
    Returns:
        A `keras_bigtransfer.ImageModel` taking float32 RGB images in [0, 1] (uint8 is converted).
"""


def make_constructor(variant):
    """THE constructor factory: the public constructor of a registered variant.

    Every family's constructors come from here, so they take the same common arguments
    (`COMMON_ARGS`) with the same defaults, plus the family's options
    (`variant.options`: ((name, default), ...)), and size the head to their weights.
    The docstring is `variant.summary`, the common arguments' and `variant.options_doc`.

    Args:
        variant: a `registry.Variant`.
    """
    options = dict(variant.options)

    def constructor(*, weights=variant.default_weights, revision=None, include_top=True, num_classes=None,
                    input_shape=None, pooling=None, classifier_activation=None, name=None,
                    features_only=False, out_indices=None, feature_norm=False, output_dict=False,
                    pretrained=None, in_chans=3, drop_rate=None, drop_path_rate=None, global_pool=None,
                    **kwargs):
        features = dict(features_only=features_only, out_indices=out_indices, feature_norm=feature_norm,
                        output_dict=output_dict)
        if pretrained is not None:  # timm: True = the default weights, False = none
            if pretrained not in (True, False):
                raise ValueError(f"{variant.name}: pretrained must be True or False; got {pretrained!r}.")
            if not pretrained:
                if weights not in (None, variant.default_weights):
                    raise ValueError(f"{variant.name}: pretrained=False contradicts weights={weights!r}.")
                weights = None
            elif weights is None:
                raise ValueError(f"{variant.name}: pretrained=True contradicts weights=None.")
        unknown = sorted(set(kwargs) - set(options))
        if unknown:
            raise TypeError(
                f"{variant.name}() got unexpected keyword argument(s) {unknown}; it takes "
                f"{[a for a, _ in COMMON_ARGS] + list(options)}."
            )
        return build_variant(
            variant, weights=weights, revision=revision, include_top=include_top, num_classes=num_classes,
            input_shape=input_shape, pooling=pooling, classifier_activation=classifier_activation,
            name=name, **features, in_chans=in_chans, drop_rate=drop_rate, drop_path_rate=drop_path_rate,
            global_pool=global_pool, **{**options, **kwargs},
        )

    constructor.__name__ = constructor.__qualname__ = variant.name
    constructor.__module__ = f"keras_bigtransfer.models.{variant.family}"
    parameters = [
        inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY,
                          default=variant.default_weights if arg == "weights" else default)
        for arg, default in COMMON_ARGS
    ] + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in options.items()]
    constructor.__signature__ = inspect.Signature(parameters)
    multiple = f", multiples of {variant.input_multiple}" if variant.input_multiple > 1 else ""
    options_doc = variant.options_doc
    named = dict(variant.named_weights)
    extra_pooling = registry.get_family(variant.family).token_pooling  # ((name, what it is), ...)
    constructor.__doc__ = variant.summary.rstrip() + "\n" + COMMON_DOC.format(
        default=variant.default_weights,
        named=" or ".join(f"{k!r} ({v})" for k, v in named.items()) or '"imagenet" (none published)',
        global_pools=", ".join(f'"{p}"' for p in [p for p, _ in extra_pooling] + ["avg", "max"]),
        num_classes=variant.num_classes, multiple=multiple,
        pooling="".join(f', or "{p}" ({what})' for p, what in extra_pooling),
        name=variant.default_name, options=options_doc.rstrip() + "\n" if options_doc else "",
    )
    return constructor


# keras.applications' and keras-hub's names for a family's ImageNet weights (`Variant.named_weights`).
NAMED_WEIGHTS = ("imagenet", "imagenet21k")


def named_weights(variant, weights):
    """The catalogue tag that `weights="imagenet"` / `"imagenet21k"` means for `variant`, or
    `weights` unchanged; ValueError naming what is published when the variant has none."""
    if not (isinstance(weights, str) and weights in NAMED_WEIGHTS):
        return weights
    named = dict(variant.named_weights)
    if weights not in named:
        have = ", ".join(f"{k!r} ({v})" for k, v in named.items()) or "none"
        raise ValueError(f"{variant.name}: no {weights!r} weights are published for it; named weights: {have}.")
    return named[weights]


def _timm_options(variant, options, drop_rate, drop_path_rate):
    """timm's `drop_rate` / `drop_path_rate` as the family's own option names."""
    family = registry.get_family(variant.family)
    names = dict(family.timm_options)
    for timm_name, value in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
        if value is None:
            continue
        ours = names.get(timm_name)
        if ours is None:
            raise ValueError(f"{variant.name}: {timm_name} is not supported by {variant.family} models.")
        default = dict(variant.options).get(ours)
        if ours in options and options[ours] not in (value, default):
            raise ValueError(f"{variant.name}: {timm_name}={value} contradicts {ours}={options[ours]}.")
        options[ours] = value
    return options


def pretrained_cfg(variant, model, entry, weights):
    """timm's `pretrained_cfg` for a built model (`weights` a `ResolvedWeights` or None): the
    evaluation settings of its weights' catalogue entry (`preprocessing.eval_settings`, the data timm's configurations give), else
    those of the variant's default weights (whose mean/std the model applies in any case)."""
    # Without weights, the default weights' settings (timm: the default tag's configuration).
    reference = entry or (catalogue.find(variant.default_weights) if variant.default_weights else None)
    if reference is not None:
        size, crop_pct, interpolation = preprocessing.eval_settings(reference)
    else:
        size, crop_pct, interpolation = (variant.native_resolution, preprocessing.DEFAULT_CROP_PCT,
                                         preprocessing.DEFAULT_INTERPOLATION)
    in_chans = model.inputs[0].shape[base.channel_axis(model)]
    mean = std = None
    if reference is not None and reference.mean is not None:
        mean, std = base.adapt_channels(reference.mean, in_chans), base.adapt_channels(reference.std, in_chans)
    source = entry.url if entry is not None else (weights.weights if weights is not None else None)
    return dict(
        architecture=variant.name, tag=entry.tag if entry is not None else None, source=source,
        license=entry.license if entry is not None else None, input_size=(in_chans, size, size),
        crop_pct=crop_pct, interpolation=interpolation, mean=mean, std=std, num_classes=model.num_classes,
        first_conv=model.head_spec.get("first_conv"), classifier=base.HEAD_LAYER,
    )


def _adapt_in_chans(rgb, model):
    """Copy every weight of `rgb` into `model` (the same graph for other input channels), the
    stem kernel through `adapt_input_conv`."""
    first = model.head_spec["first_conv"] + "/"
    source = {v.path: v for v in rgb.weights}
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(source[variable.path])
        if variable.path.startswith(first) and value.ndim == 4:
            value = base.adapt_input_conv(variable.shape[2], value)
        variable.assign(value)


def build_variant(variant, *, weights, revision=None, include_top, num_classes, input_shape, pooling,
                  classifier_activation, name, features_only=False, out_indices=None,
                  feature_norm=False, output_dict=False, in_chans=3, drop_rate=None, drop_path_rate=None,
                  global_pool=None, **options):
    """What every constructor does: check the weights, size the head, build, load."""
    if weights is not None and variant.weights_unavailable:  # before the name is looked up
        raise ValueError(variant.weights_unavailable)
    # Resolved once (catalogue entry, revision, known-bad; the file on first use) and passed down.
    weights = resolve_weights(named_weights(variant, weights), revision)
    in_chans = base.integer_arg(in_chans, "in_chans", variant.name)
    options = _timm_options(variant, dict(options), drop_rate, drop_path_rate)

    if features_only:  # the backbone, loaded, then its maps (models/features.py)
        features.feature_info(variant, out_indices)  # bad out_indices fail before a download
        backbone = build_variant(variant, weights=weights, include_top=False, num_classes=None,
                                 input_shape=input_shape, pooling=None, classifier_activation=None,
                                 name=name, in_chans=in_chans, **options)
        return features.features_model(backbone, variant, out_indices=out_indices,
                                       feature_norm=feature_norm, output_dict=output_dict)
    if out_indices is not None or feature_norm or output_dict:
        raise ValueError(f"{variant.name}: out_indices, feature_norm and output_dict need features_only=True.")

    new_head = num_classes is not None  # asked for: a head other than the weights' is no surprise
    if include_top and num_classes is not None and not isinstance(num_classes, bool) and num_classes == 0:
        if global_pool == "":  # timm: no classifier, no pooling -> the feature map
            include_top, global_pool = False, None
    if not include_top and global_pool is not None:  # timm's name for keras.applications' pooling
        if pooling is not None and pooling != global_pool:
            raise ValueError(f"{variant.name}: global_pool={global_pool!r} contradicts pooling={pooling!r}.")
        pooling, global_pool = global_pool or None, None
    if global_pool is not None:
        options["global_pool"] = global_pool

    if in_chans != 3 and weights is not None:
        # The RGB model loads the weights as published; the stem is then adapted as timm does.
        rgb_shape = None if input_shape is None else tuple(input_shape)[:2] + (3,)
        rgb = build_variant(variant, weights=weights, include_top=include_top, num_classes=num_classes,
                            input_shape=rgb_shape, pooling=pooling, classifier_activation=classifier_activation,
                            name=name, **options)
        with base.weights_will_load():  # `_adapt_in_chans` sets every variable
            model = build_variant(variant, weights=None, include_top=include_top,
                                  num_classes=rgb.num_classes if include_top else None, input_shape=input_shape,
                                  pooling=pooling, classifier_activation=classifier_activation, name=name,
                                  in_chans=in_chans, **options)
        _adapt_in_chans(rgb, model)
        cfg = rgb.pretrained_cfg
        cfg.update(input_size=[in_chans] + list(cfg["input_size"][1:]),
                   mean=model.pretrained_cfg["mean"], std=model.pretrained_cfg["std"])
        model.set_pretrained_cfg(**cfg)
        return model

    entry = weights.entry if weights is not None else None
    if entry is not None:  # before building or downloading anything
        if entry.family != variant.family:
            raise ValueError(f"{entry.tag} holds {entry.family} weights, not {variant.family} weights.")
        owner = registry.find_variant(entry.constructor)
        if owner is None or owner.architecture != variant.architecture:
            raise ValueError(
                f"{entry.tag} holds weights for {entry.constructor}, not for a {variant.name} "
                f"model; use keras_bigtransfer.{entry.constructor}(weights={entry.tag!r})."
            )
    if num_classes is None:
        if include_top and weights is not None:
            # The entry's count; another revision, or a file, is read (headers only, once).
            num_classes = loading.checkpoint_classes(weights, variant.family)
        if not num_classes:  # no weights, or weights without a head (a `_notop` entry has 0)
            num_classes = variant.num_classes
    family = registry.get_family(variant.family)
    # Random draws the checkpoint would overwrite are skipped (`base.weights_will_load`); the
    # strict load below refuses a checkpoint lacking any variable.
    with base.weights_will_load() if weights is not None else contextlib.nullcontext():
        model = family.build(
            variant.config, weights_entry=entry, include_top=include_top, num_classes=num_classes,
            input_shape=input_shape, pooling=pooling, classifier_activation=classifier_activation,
            name=name or variant.default_name, in_chans=in_chans, **options,
        )
    if weights is not None:
        loading.load_weights(model, weights, new_head=new_head)
    model.set_pretrained_cfg(**pretrained_cfg(variant, model, entry, weights))
    return model
