"""What every model in the package shares: the input convention, the checks of the common
constructor arguments, and the model class that enforces both.

The constructors themselves come from `models/factory.py`, which builds on this module (and
on `models/features.py`, whose `FeatureModel` is an `ImageModel`): imports run one way."""

import contextlib
import contextvars
import json
import math
import numbers
import sys

import numpy as np
import keras

from keras_bigtransfer.layers.image_input import (
    ImageInput, check_images, conform_images, standardize_data_format, to_channels)
from keras_bigtransfer.layers.tokens import TokenPooling

POOLING_CHOICES = ("avg", "max", None)

# timm's `global_pool` values: "" is no pooling (the feature map; ViT: every token).
CNN_GLOBAL_POOLS = ("avg", "max", "")
VIT_GLOBAL_POOLS = ("token", "avg", "max", "")

# Every family names its linear classifier this; training, export and loading find it by name.
HEAD_LAYER = "head"

# The first layer of every model: the input contract (layers/image_input.py) in the graph.
IMAGE_INPUT_LAYER = "image_input"

# Set while a constructor builds a model whose every variable a checkpoint will overwrite.
_WEIGHTS_WILL_LOAD = contextvars.ContextVar("keras_bigtransfer_weights_will_load", default=False)


@contextlib.contextmanager
def weights_will_load():
    """Within this context, `InitUnlessLoaded` initializers skip their random draw.

    The constructors enter it when they build a model from weights (transformers'
    `no_init_weights` does the same for `from_pretrained`): on JAX every random initializer is
    a separately compiled op per variable shape (about 25 s of EfficientNet-Lite0's 30 s build
    on 2 CPU cores), all of it thrown away by the load. Only for a build that the strict
    loader then fills completely (`weights.assign`: a variable the checkpoint lacks is a
    `WeightsError`, so no variable is left at the placeholder).
    """
    token = _WEIGHTS_WILL_LOAD.set(True)
    try:
        yield
    finally:
        _WEIGHTS_WILL_LOAD.reset(token)


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class InitUnlessLoaded(keras.initializers.Initializer):
    """`initializer`'s values, except within `weights_will_load()`: zeros from NumPy (no
    backend op compiled per shape, as even Keras' "zeros" and "ones" are on JAX), which the
    checkpoint then overwrites.

    For variables every checkpoint of the family holds, never for ones a load may leave at
    initialization (`optional` in `weights.assign`, such as a ViT's register tokens).

    Args:
        initializer: a Keras initializer (an object, its name, or its plain config
            `{"class_name": ..., "config": ...}`).
    """

    def __init__(self, initializer):
        if isinstance(initializer, dict) and set(initializer) == {"class_name", "config"}:
            initializer = getattr(keras.initializers, initializer["class_name"])(**initializer["config"])
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        if _WEIGHTS_WILL_LOAD.get():
            # Converted with its dtype named: JAX's conversion without one compiles per shape.
            dtype = keras.backend.standardize_dtype(dtype)
            return keras.ops.convert_to_tensor(np.zeros(shape, dtype=dtype), dtype=dtype)
        return self.initializer(shape, dtype=dtype)

    def get_config(self):
        # A plain config (see `describe_head`): keras' serialize() imports TensorFlow.
        return {"initializer": {"class_name": type(self.initializer).__name__,
                                "config": self.initializer.get_config()}}


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ImageModel(keras.Model):
    """A functional Keras model that takes RGB images in [0, 1], batch-first NHWC (NCHW when
    built under `keras.config.image_data_format() == "channels_first"`: `data_format`).

    This is the TF Hub image convention, under the package's one image rule
    (`layers/image_input.py`, which fit_bit's pipeline, `eval_transform` and the CLI apply
    too): uint8 images are divided by 255; on an RGB model grayscale batches, (N, H, W) and
    (N, H, W, 1), are repeated to RGB and RGBA (or grayscale + alpha) loses its alpha, as
    Pillow's `convert("RGB")`; other integer dtypes, and channel counts the rule cannot
    convert, raise a `ValueError` that says what to pass instead; float images far outside
    [0, 1] are warned about in eager calls. The contract is the model's first layer (`ImageInput`),
    so it holds in nested, functional and exported uses too; `call` converts
    uint8 before Keras casts it to the float32 `Input` (which would make 255 of
    it 255.0). The normalization the weights expect is a layer inside the model,
    so callers never normalize.

    timm's model API is here too: `num_classes`, `num_features`, `get_classifier()`,
    `forward_features`, `forward_head(pre_logits=)`, `reset_classifier` (which returns the
    new model: a functional graph cannot change in place) and `pretrained_cfg`, kept
    through `.keras` save and load.
    """

    # Keras maps a functional graph depth-first by recursion, a few frames per layer on the
    # longest path: EfficientNet-L2 (about 1,000 layers deep) reaches Python's default limit of
    # 1,000 frames when built or loaded from a caller that is itself a few hundred frames deep
    # (pytest, notebooks). Raised, never lowered; Python-to-Python calls use no C stack in 3.11+.
    MIN_RECURSION_LIMIT = 10_000

    def __init__(self, *args, head_spec=None, pretrained_cfg=None, **kwargs):
        if sys.getrecursionlimit() < self.MIN_RECURSION_LIMIT:
            sys.setrecursionlimit(self.MIN_RECURSION_LIMIT)
        super().__init__(*args, **kwargs)
        # Plain JSON data (kept through get_config): how the head is built (`classifier_head`),
        # and timm's `pretrained_cfg` (evaluation settings, source, labels).
        self._head_spec_json = json.dumps(head_spec or {})
        self._pretrained_cfg_json = json.dumps(pretrained_cfg or {})
        self._replaced_by = None

    # -- timm's model API ------------------------------------------------------------------
    @property
    def head_spec(self):
        """How the classifier head is built: features layer, pooling, dropout, layer names."""
        return json.loads(self._head_spec_json)

    @property
    def pretrained_cfg(self):
        """timm's `pretrained_cfg` of the weights: input_size (C, H, W), crop_pct, interpolation,
        mean, std (of [0, 1] inputs; the model applies them itself), num_classes, tag, source,
        license and `label_names` when known. A copy: change it with `set_pretrained_cfg`."""
        return json.loads(self._pretrained_cfg_json)

    def set_pretrained_cfg(self, **changes):
        """Update `pretrained_cfg` (e.g. `label_names=[...]`); kept through `.keras` save and load."""
        cfg = self.pretrained_cfg
        cfg.update(changes)
        self._pretrained_cfg_json = json.dumps(cfg)

    @property
    def default_cfg(self):  # timm's older name
        return self.pretrained_cfg

    def get_classifier(self):
        """The linear classifier (the Dense layer named "head"), or None for a headless model."""
        names = {layer.name for layer in self.layers}
        return self.get_layer(HEAD_LAYER) if HEAD_LAYER in names else None

    @property
    def num_classes(self):
        """The classifier's output count; 0 for a headless model (timm's meaning)."""
        head = self.get_classifier()
        return 0 if head is None else int(head.units)

    def _spec(self, error=ValueError):
        """`head_spec`, or `error` when this model has none (a features_only model, one built
        by other code): timm's head API needs to know which layer gives the features."""
        spec = self.head_spec
        if "features" not in spec:
            raise error(f"{self.name} has no classifier head description (models built by this "
                        "package's constructors have one; features_only models do not).")
        return spec

    @property
    def num_features(self):
        """The width of the pooled features the classifier reads (timm's `num_features`).
        AttributeError for a model without a head description (so `hasattr` is False)."""
        spec = self._spec(AttributeError)
        if spec.get("pre_logits"):
            return int(self.get_layer(spec["pre_logits"]).units)
        features = self.get_layer(spec["features"]).output
        return int(features.shape[-1 if spec.get("num_prefix_tokens") is not None else channel_axis(self)])

    def forward_features(self, images):
        """The unpooled features: (N, h, w, C) for CNNs ((N, C, h, w) built channels_first), ViT's normed
        tokens (N, T, D)."""
        features = self.get_layer(self._spec()["features"]).output
        return ImageModel(self.inputs[0], features, name=self.name + "_features")(images)

    def forward_head(self, features, pre_logits=False):
        """`forward_features`' output through pooling, dropout (inference) and the classifier;
        `pre_logits=True` stops before the classifier: (N, num_features)."""
        x = features
        for name in self._spec()["head_layers"]:
            if name == HEAD_LAYER and pre_logits:
                break
            x = self.get_layer(name)(x)
        return x

    def reset_classifier(self, num_classes, global_pool=None):
        """A new classifier of `num_classes` (0: none, pooled features out), and optionally
        another `global_pool` (timm's values; None keeps the current one).

        A Keras functional graph cannot change in place, so this RETURNS the new model, which
        shares every other layer (and so every weight) with this one:
        `model = model.reset_classifier(10)`. The new head is freshly initialized (zeros for
        BiT and ViT, as they fine-tune). This model then refuses to be called, so that
        timm's in-place habit fails loudly rather than silently keeping the old head.

        Raises:
            ValueError: a bad class count or `global_pool`.
        """
        spec = self._spec()
        num_classes = integer_arg(num_classes, "num_classes", self.name, minimum=0)
        features = self.get_layer(spec["features"]).output
        pre_logits = self.get_layer(spec["pre_logits"]) if spec.get("pre_logits") else None
        outputs, new_spec = classifier_head(
            features, num_classes=num_classes,
            global_pool=spec["global_pool"] if global_pool is None else global_pool,
            drop_rate=spec["drop_rate"], classifier_activation=spec["classifier_activation"],
            kernel_initializer=_initializer(spec["head_initializer"]),
            num_prefix_tokens=spec.get("num_prefix_tokens"), pre_logits=pre_logits, spec=spec,
            name=self.name, data_format=self.data_format,
        )
        cfg = self.pretrained_cfg
        cfg["num_classes"] = num_classes
        cfg.pop("label_names", None)
        model = ImageModel(self.inputs[0], outputs, name=self.name, head_spec=new_spec, pretrained_cfg=cfg)
        self._replaced_by = model.name
        return model

    def get_config(self):
        config = super().get_config()
        config["head_spec"] = self.head_spec
        config["pretrained_cfg"] = self.pretrained_cfg
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        head_spec = config.pop("head_spec", None)
        pretrained_cfg = config.pop("pretrained_cfg", None)
        model = super().from_config(config, custom_objects=custom_objects)
        model._head_spec_json = json.dumps(head_spec or {})
        model._pretrained_cfg_json = json.dumps(pretrained_cfg or {})
        return model

    def __call__(self, inputs, *args, **kwargs):
        if self._replaced_by is not None:
            raise ValueError(
                f"{self.name}: reset_classifier returned a new model with the new head; use it "
                "(model = model.reset_classifier(...)): a Keras functional graph cannot change in place."
            )
        # Before Keras' own input checks, whose messages do not say what to pass.
        shape = getattr(inputs, "shape", None)
        if shape is None:
            inputs = np.asarray(inputs)
            shape = inputs.shape
        if getattr(inputs, "dtype", None) is not None:
            # Channels converted before Keras' Input sees them: grayscale repeated, alpha dropped.
            inputs = to_channels(inputs, check_images(inputs, self._where(), self._channels(),
                                                      data_format=self.data_format))
        return super().__call__(inputs, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        return super().predict(self._rgb_array(x), *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        return super().evaluate(self._rgb_array(x), *args, **kwargs)

    def _rgb_array(self, x):
        # NumPy channels converted before Keras' data pipeline, as __call__ does: the compiled
        # step is traced per input shape, and one relaxed over two ranks has no rank at all.
        if not isinstance(x, np.ndarray):
            return x
        return to_channels(x, check_images(x, self._where(), self._channels(), data_format=self.data_format))

    def call(self, inputs, training=None, mask=None, **kwargs):
        # Runs on every call, nested ones included (a model inside another model's graph).
        # `training` is a named parameter so that Keras passes the training flag down to
        # BatchNormalization and dropout (it is not passed to a call that only takes **kwargs).
        return super().call(conform_images(inputs, self._where(), self._channels(), data_format=self.data_format),
                            training=training, mask=mask, **kwargs)

    @property
    def data_format(self):
        """The image layout the model takes and computes in: "channels_last" (NHWC) or, when it
        was built under `keras.config.image_data_format() == "channels_first"`, "channels_first"."""
        found = getattr(self, "_data_format", None)
        if found is None:
            layer = next((layer for layer in self.layers if layer.name == IMAGE_INPUT_LAYER), None)
            found = getattr(layer, "data_format", "channels_last")
            object.__setattr__(self, "_data_format", found)  # a plain attribute, not tracked
        return found

    def _channels(self):
        channels = self.inputs[0].shape[channel_axis(self)]
        return 3 if channels is None else int(channels)

    def _where(self):
        expected = tuple(self.inputs[0].shape)
        return f"{self.name} (input shape {expected})"


def integer_arg(value, what, name, minimum=1):
    """`value` as an int if it is an integral number >= minimum (NumPy integers too), else a ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: {what} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def channel_axis(model=None):
    """The channel axis of a model's tensors (-1, or 1 for channels_first); without a model,
    of one built now (`keras.config.image_data_format()`)."""
    data_format = model.data_format if model is not None else standardize_data_format()
    return 1 if data_format == "channels_first" else -1


def spatial(input_shape):
    """(height, width) of a model's `input_shape` (without batch) in the current data format."""
    return tuple(input_shape[1:]) if channel_axis() == 1 else tuple(input_shape[:2])


def validate_common_args(*, include_top, num_classes, input_shape, pooling, name, in_chans=3):
    """Check the arguments every constructor takes; return (input_shape, num_classes).

    `input_shape` is (height, width, in_chans), or (in_chans, height, width) under
    `keras.config.image_data_format() == "channels_first"`.
    `num_classes=0` with include_top is timm's headless model (pooled features out)."""
    in_chans = integer_arg(in_chans, "in_chans", name)
    first = channel_axis() == 1
    if input_shape is None:
        input_shape = (in_chans, None, None) if first else (None, None, in_chans)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[0 if first else -1] != in_chans:
        layout = f"({in_chans}, height, width) (channels_first)" if first else f"(height, width, {in_chans})"
        raise ValueError(
            f"{name}: input_shape must be {layout} for "
            f"{'RGB images' if in_chans == 3 else f'{in_chans}-channel images (in_chans)'} "
            f"(None for any size); got {input_shape}."
        )
    if pooling not in POOLING_CHOICES:
        raise ValueError(
            f"{name}: pooling must be one of {POOLING_CHOICES}; got {pooling!r}."
        )
    if include_top:
        num_classes = integer_arg(num_classes, "num_classes (with include_top=True)", name, minimum=0)
    return input_shape, num_classes


def image_inputs(input_shape):
    """The model's input tensor: float32 images in [0, 1]."""
    return keras.Input(shape=input_shape, dtype="float32", name="images")


def input_contract(inputs):
    """`inputs` through the contract layer; every model's graph starts with it."""
    return ImageInput(channels=inputs.shape[channel_axis()], data_format=standardize_data_format(),
                      name=IMAGE_INPUT_LAYER)(inputs)


def adapt_channels(values, in_chans):
    """Per-channel RGB values (mean, std) for `in_chans` input channels, as the stem kernel is
    adapted (`adapt_input_conv`): 1 channel takes their average (timm keeps the 3-channel
    values, which its Normalize cannot apply to 1 channel); n channels tile RGB and keep n."""
    values = tuple(float(v) for v in values)
    if in_chans == len(values):
        return values
    if in_chans == 1:
        return (sum(values) / len(values),)
    return (values * math.ceil(in_chans / len(values)))[:in_chans]


def adapt_input_conv(in_chans, kernel):
    """timm's `adapt_input_conv` (timm/models/_manipulate.py) on a Keras HWIO kernel (float32
    math, cast back): 1 channel sums the RGB kernels; n channels tile them ceil(n/3) times,
    keep n and scale by 3/n, so that a grayscale (or repeated) image gives the RGB response."""
    kernel = np.asarray(kernel)
    base = kernel.shape[2]
    if in_chans == base:
        return kernel
    if base != 3:
        raise NotImplementedError(f"adapt_input_conv: the stored kernel has {base} input channels, not 3.")
    weights = kernel.astype(np.float32)
    if in_chans == 1:
        weights = weights.sum(axis=2, keepdims=True)
    else:
        weights = np.tile(weights, (1, 1, math.ceil(in_chans / base), 1))[:, :, :in_chans] * (base / in_chans)
    return weights.astype(kernel.dtype)


def classifier_head(features, *, num_classes, global_pool, drop_rate, classifier_activation,
                    kernel_initializer, num_prefix_tokens=None, pre_logits=None, spec=None, name="model",
                    data_format=None):
    """The head every family builds after its features: pool, [pre_logits], [dropout], [classifier].

    Args:
        features: (N, h, w, C) feature map, or with `num_prefix_tokens` set, ViT tokens (N, T, D).
        num_classes: classifier outputs; 0 for none (pooled features out, timm's headless model).
        global_pool: timm's: CNN "avg" | "max" | ""; ViT "token" | "avg" | "max" | "" (no pooling,
            only with num_classes=0: the features themselves).
        drop_rate: dropout before the classifier (timm's `drop_rate`).
        pre_logits: a layer applied after pooling (ViT's tanh `pre_logits`), or None.
        spec: the head spec to update (`ImageModel.head_spec`).
        data_format: the layout of a CNN's `features` (None: `keras.config.image_data_format()`).

    Returns:
        (outputs, head spec).
    """
    tokens = num_prefix_tokens is not None
    choices = VIT_GLOBAL_POOLS if tokens else CNN_GLOBAL_POOLS
    if global_pool not in choices:
        raise ValueError(f"{name}: global_pool must be one of {choices}; got {global_pool!r}.")
    if global_pool == "token" and not num_prefix_tokens:
        raise ValueError(f'{name}: global_pool="token" needs a class token.')
    if global_pool == "" and num_classes:
        raise ValueError(f'{name}: global_pool="" (no pooling) works with num_classes=0 only '
                         "(the unpooled features); got num_classes={num_classes}.")
    drop_rate = float(drop_rate or 0.0)
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"{name}: drop_rate must be in [0, 1); got {drop_rate}.")
    layers = []
    if global_pool:
        if tokens:
            layers.append(TokenPooling(global_pool, num_prefix_tokens, name="pool"))
        elif global_pool == "avg":
            layers.append(keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool"))
        else:
            layers.append(keras.layers.GlobalMaxPooling2D(data_format=data_format, name="max_pool"))
        if pre_logits is not None:
            layers.append(pre_logits)
        if num_classes:
            if drop_rate > 0:
                layers.append(keras.layers.Dropout(drop_rate, name="top_dropout"))
            layers.append(keras.layers.Dense(num_classes, activation=classifier_activation,
                                             kernel_initializer=kernel_initializer, name=HEAD_LAYER))
    x = features
    for layer in layers:
        x = layer(x)
    return x, describe_head(
        spec, global_pool=global_pool, drop_rate=drop_rate, num_prefix_tokens=num_prefix_tokens,
        classifier_activation=classifier_activation, kernel_initializer=kernel_initializer,
        pre_logits=pre_logits.name if pre_logits is not None else None,
        head_layers=[layer.name for layer in layers],
    )


def describe_head(spec, *, global_pool, drop_rate, num_prefix_tokens, classifier_activation,
                  kernel_initializer, pre_logits, head_layers):
    """`spec` (features layer, first conv) with how the head is built: `ImageModel.head_spec`,
    which `reset_classifier` and `forward_head` read. Plain JSON data."""
    # Plain configs, not keras' serialize(), which imports TensorFlow where it is installed
    # (serialization_lib's tf.available checks): models build on JAX and torch without it.
    spec = dict(spec or {})
    if classifier_activation is not None and not isinstance(classifier_activation, str):
        classifier_activation = classifier_activation.__name__
    initializer = keras.initializers.get(kernel_initializer)
    if isinstance(initializer, InitUnlessLoaded):  # a new head (`reset_classifier`) is never loaded
        initializer = initializer.initializer
    spec.update(
        global_pool=global_pool, drop_rate=float(drop_rate or 0.0), num_prefix_tokens=num_prefix_tokens,
        classifier_activation=classifier_activation,
        head_initializer={"class_name": type(initializer).__name__, "config": initializer.get_config()},
        pre_logits=pre_logits, head_layers=list(head_layers),
    )
    return spec


def _initializer(config):
    """The head initializer `describe_head` recorded."""
    return getattr(keras.initializers, config["class_name"])(**config["config"])


def pool_features(x, pooling, name="pool"):
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=name)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=name)(x)
    return x
