"""What every model in the package shares: the input convention, the common
constructor arguments, and the model class that enforces both."""

import numbers
import sys

import numpy as np
import keras

from keras_bigtransfer.layers.image_input import ImageInput, check_images, to_unit_range

POOLING_CHOICES = ("avg", "max", None)

# Every family names its linear classifier this; training, export and loading find it by name.
HEAD_LAYER = "head"

# The first layer of every model: the input contract (layers/image_input.py) in the graph.
IMAGE_INPUT_LAYER = "image_input"


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ImageModel(keras.Model):
    """A functional Keras model that takes RGB images in [0, 1], batch-first NHWC.

    This is the TF Hub image convention. uint8 images are divided by 255; other
    integer dtypes, and images without exactly 3 channels, raise a `ValueError`
    that says what to pass instead; float images far outside [0, 1] are warned
    about in eager calls. The contract is the model's first layer (`ImageInput`),
    so it holds in nested, functional and exported uses too; `call` converts
    uint8 before Keras casts it to the float32 `Input` (which would make 255 of
    it 255.0). The normalization the weights expect is a layer inside the model,
    so callers never normalize.
    """

    # Keras maps a functional graph depth-first by recursion, a few frames per layer on the
    # longest path: EfficientNet-L2 (about 1,000 layers deep) reaches Python's default limit of
    # 1,000 frames when built or loaded from a caller that is itself a few hundred frames deep
    # (pytest, notebooks). Raised, never lowered; Python-to-Python calls use no C stack in 3.11+.
    MIN_RECURSION_LIMIT = 10_000

    def __init__(self, *args, **kwargs):
        if sys.getrecursionlimit() < self.MIN_RECURSION_LIMIT:
            sys.setrecursionlimit(self.MIN_RECURSION_LIMIT)
        super().__init__(*args, **kwargs)

    def __call__(self, inputs, *args, **kwargs):
        # Before Keras' own input checks, whose messages do not say what to pass.
        shape = getattr(inputs, "shape", None)
        if shape is None:
            inputs = np.asarray(inputs)
            shape = inputs.shape
        if getattr(inputs, "dtype", None) is not None:
            check_images(shape, inputs.dtype, self._where())
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        # Runs on every call, nested ones included (a model inside another model's graph).
        # `training` is a named parameter so that Keras passes the training flag down to
        # BatchNormalization and dropout (it is not passed to a call that only takes **kwargs).
        return super().call(to_unit_range(inputs, self._where()), training=training, mask=mask, **kwargs)

    def _where(self):
        expected = tuple(self.inputs[0].shape)
        return f"{self.name} (input shape {expected})"


def integer_arg(value, what, name, minimum=1):
    """`value` as an int if it is an integral number >= minimum (NumPy integers too), else a ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: {what} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def validate_common_args(*, include_top, num_classes, input_shape, pooling, name):
    """Check the arguments every constructor takes; return (input_shape, num_classes)."""
    if input_shape is None:
        input_shape = (None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"{name}: input_shape must be (height, width, 3) for RGB images "
            f"(None for any size); got {input_shape}."
        )
    if pooling not in POOLING_CHOICES:
        raise ValueError(
            f"{name}: pooling must be one of {POOLING_CHOICES}; got {pooling!r}."
        )
    if include_top:
        num_classes = integer_arg(num_classes, "num_classes (with include_top=True)", name)
    return input_shape, num_classes


def image_inputs(input_shape):
    """The model's input tensor: float32 images in [0, 1]."""
    return keras.Input(shape=input_shape, dtype="float32", name="images")


def input_contract(inputs):
    """`inputs` through the contract layer; every model's graph starts with it."""
    return ImageInput(name=IMAGE_INPUT_LAYER)(inputs)


def pool_features(x, pooling, name="pool"):
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=name)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=name)(x)
    return x


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


def make_constructor(variant, *, summary, options_doc=""):
    """THE constructor factory: the public constructor of a registered variant.

    Every family's constructors come from here, so they take the same common arguments
    (`COMMON_ARGS`) with the same defaults, plus the family's options
    (`variant.options`: ((name, default), ...)), and size the head to their weights.

    Args:
        variant: a `registry.Variant`.
        summary: the docstring's first line(s).
        options_doc: docstring lines (8-space indent) for the family's options.
    """
    import inspect

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
    constructor.__doc__ = summary.rstrip() + "\n" + COMMON_DOC.format(
        default=variant.default_weights, num_classes=variant.num_classes, multiple=multiple,
        pooling=', or "token" (the class token)' if variant.family == "vit" else "",
        name=variant.default_name, options=options_doc.rstrip() + "\n" if options_doc else "",
    )
    return constructor


def build_variant(variant, *, weights, revision=None, include_top, num_classes, input_shape, pooling,
                  classifier_activation, name, features_only=False, out_indices=None,
                  feature_norm=False, output_dict=False, **options):
    """What every constructor does: check the weights, size the head, build, load."""
    import os

    from keras_bigtransfer.weights import hf_hub

    weights = hf_hub.pin(weights, revision)  # `revision=` into the handle, refused for other weights

    if features_only:  # the backbone, loaded, then its maps (models/features.py)
        from keras_bigtransfer.models import features

        features.feature_info(variant, out_indices)  # bad out_indices fail before a download
        backbone = build_variant(variant, weights=weights, include_top=False, num_classes=None,
                                 input_shape=input_shape, pooling=None, classifier_activation=None,
                                 name=name, **options)
        return features.features_model(backbone, variant, out_indices=out_indices,
                                       feature_norm=feature_norm, output_dict=output_dict)
    if out_indices is not None or feature_norm or output_dict:
        raise ValueError(f"{variant.name}: out_indices, feature_norm and output_dict need features_only=True.")

    from keras_bigtransfer.models import loading, registry
    from keras_bigtransfer.weights import catalogue

    if weights is not None and variant.weights_unavailable:
        raise ValueError(variant.weights_unavailable)
    entry = None
    if isinstance(weights, str) and not os.path.exists(weights):
        entry = catalogue.find(weights)
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
            from keras_bigtransfer.errors import WeightsError

            raise WeightsError(f"weights={weights!r}: {entry.known_bad}")
    if num_classes is None:
        if include_top and weights is not None:
            num_classes = entry.num_classes if entry is not None else loading.checkpoint_classes(
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
