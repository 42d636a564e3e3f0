"""THE constructor factory, and the one helper that registers a family with it.

Every family's `__init__.py` declares its `registry.Family` and one `registry.Variant` per
configuration row, then calls `register`, which registers both and makes each variant's
public constructor (`make_constructor`): the same common arguments with the same defaults,
the family's options, a head sized to the weights. `build_variant` is what every constructor
runs. Imports run one way: the families import this module; it imports `features`, `loading`
and `registry`, none of which imports it.
"""

import inspect
import os

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.models import features, loading, registry
from keras_bigtransfer.weights import catalogue, hf_hub


def register(family, variants):
    """Register `family` and its variants; return their constructors, in the order given.

    A family's `__init__.py` binds them to module-level names (its public API, which
    `keras_bigtransfer/__init__.py` and the docs import), in the order of its `CONFIGS`:

        BiT_S_R50x1, BiT_S_R50x3, ... = factory.register(FAMILY, map(_variant, CONFIGS.values()))

    Args:
        family: the family's `registry.Family`.
        variants: its `registry.Variant`s (each `family` must be `family.name`).

    Returns:
        A tuple of constructors (`make_constructor`), one per variant.

    Raises:
        ValueError: a variant of another family, or a name registered twice.
    """
    registry.register_family(family)
    constructors = []
    for variant in variants:
        if variant.family != family.name:
            raise ValueError(f"{variant.name}: a {variant.family!r} variant registered with family {family.name!r}.")
        constructors.append(registry.register_variant(variant, make_constructor(variant)))
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
)

COMMON_DOC = """
    Args:
        weights: a catalogue tag (default {default!r}, downloaded and verified on first
            use; `keras_bigtransfer.list_models(pretrained=True)` lists them), None
            (random init), a path to a published checkpoint of the family, or a Hugging
            Face Hub handle (`hf-hub:timm/<name>[@revision]`).
        revision: Hub weights only: a branch, tag or commit (as timm and keras-hub take it);
            with other weights, or a handle naming another revision, a ValueError.
        include_top: add global pooling and a linear classifier head.
        num_classes: head size. Default: the class count of the weights (the catalogue
            entry's, or the checkpoint file's head), else {num_classes} (upstream). Asking for
            another count than the weights' zero-initializes the head, with a warning.
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
                    features_only=False, out_indices=None, feature_norm=False, output_dict=False, **kwargs):
        features = dict(features_only=features_only, out_indices=out_indices, feature_norm=feature_norm,
                        output_dict=output_dict)
        unknown = sorted(set(kwargs) - set(options))
        if unknown:
            raise TypeError(
                f"{variant.name}() got unexpected keyword argument(s) {unknown}; it takes "
                f"{[a for a, _ in COMMON_ARGS] + list(options)}."
            )
        return build_variant(
            variant, weights=weights, revision=revision, include_top=include_top, num_classes=num_classes,
            input_shape=input_shape, pooling=pooling, classifier_activation=classifier_activation,
            name=name, **features, **{**options, **kwargs},
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
    constructor.__doc__ = variant.summary.rstrip() + "\n" + COMMON_DOC.format(
        default=variant.default_weights, num_classes=variant.num_classes, multiple=multiple,
        pooling=', or "token" (the class token)' if variant.family == "vit" else "",
        name=variant.default_name, options=options_doc.rstrip() + "\n" if options_doc else "",
    )
    return constructor


def build_variant(variant, *, weights, revision=None, include_top, num_classes, input_shape, pooling,
                  classifier_activation, name, features_only=False, out_indices=None,
                  feature_norm=False, output_dict=False, **options):
    """What every constructor does: check the weights, size the head, build, load."""
    weights = hf_hub.pin(weights, revision)  # `revision=` into the handle, refused for other weights

    if features_only:  # the backbone, loaded, then its maps (models/features.py)
        features.feature_info(variant, out_indices)  # bad out_indices fail before a download
        backbone = build_variant(variant, weights=weights, include_top=False, num_classes=None,
                                 input_shape=input_shape, pooling=None, classifier_activation=None,
                                 name=name, **options)
        return features.features_model(backbone, variant, out_indices=out_indices,
                                       feature_norm=feature_norm, output_dict=output_dict)
    if out_indices is not None or feature_norm or output_dict:
        raise ValueError(f"{variant.name}: out_indices, feature_norm and output_dict need features_only=True.")

    if weights is not None and variant.weights_unavailable:
        raise ValueError(variant.weights_unavailable)
    entry, pinned = None, False
    if isinstance(weights, str) and not os.path.exists(weights):
        entry = catalogue.find(weights)
        if entry is None:  # a catalogued Hub repository at a revision: its checks and resolution
            entry = hf_hub.catalogue_entry(weights)
            pinned = entry is not None
    if entry is not None:
        if entry.family != variant.family:
            raise ValueError(f"{entry.tag} holds {entry.family} weights, not {variant.family} weights.")
        owner = registry.find_variant(entry.constructor)
        if owner is None or owner.architecture != variant.architecture:
            raise ValueError(
                f"{entry.tag} holds weights for {entry.constructor}, not for a {variant.name} "
                f"model; use keras_bigtransfer.{entry.constructor}(weights={entry.tag!r})."
            )
        if entry.known_bad:  # before building or downloading anything
            raise WeightsError(f"weights={weights!r}: {entry.known_bad}")
    if num_classes is None:
        if include_top and weights is not None:
            # Another revision may hold another head: its class count is read off its file.
            num_classes = entry.num_classes if entry is not None and not pinned else loading.checkpoint_classes(
                weights, variant.family)
        if not num_classes:  # no weights, or weights without a head (a `_notop` entry has 0)
            num_classes = variant.num_classes
    family = registry.get_family(variant.family)
    model = family.build(
        variant.config, weights_entry=entry, include_top=include_top, num_classes=num_classes,
        input_shape=input_shape, pooling=pooling, classifier_activation=classifier_activation,
        name=name or variant.default_name, **options,
    )
    if weights is not None:
        loading.load_weights(model, weights)
    return model
