"""What every model in the package shares: the input convention, the checks of the common
constructor arguments, and the model class that enforces both.

The constructors themselves come from `models/factory.py`, which builds on this module (and
on `models/features.py`, whose `FeatureModel` is an `ImageModel`): imports run one way."""

import numbers
import sys

import numpy as np
import keras

from keras_bigtransfer.layers.image_input import (ImageInput, apply_grayscale_rule, check_images, grayscale_rule,
                                                   to_unit_range)

POOLING_CHOICES = ("avg", "max", None)

# Every family names its linear classifier this; training, export and loading find it by name.
HEAD_LAYER = "head"

# The first layer of every model: the input contract (layers/image_input.py) in the graph.
IMAGE_INPUT_LAYER = "image_input"


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ImageModel(keras.Model):
    """A functional Keras model that takes RGB images in [0, 1], batch-first NHWC.

    This is the TF Hub image convention. uint8 images are divided by 255; grayscale
    batches, (N, H, W) and (N, H, W, 1), are repeated to RGB (`grayscale_rule`, the rule
    of fit_bit's pipeline); other integer dtypes, and other channel counts, raise a `ValueError`
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
            # Grayscale as fit_bit takes it: (N, H, W) and (N, H, W, 1) repeated to RGB.
            channels = self.inputs[0].shape[-1] if self.inputs else 3
            inputs = apply_grayscale_rule(inputs, channels)
            check_images(inputs.shape, inputs.dtype, self._where(), channels)
        return super().__call__(inputs, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        return super().predict(self._rgb_array(x), *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        return super().evaluate(self._rgb_array(x), *args, **kwargs)

    def _rgb_array(self, x):
        # NumPy grayscale made RGB before Keras' data pipeline, as __call__ does: the compiled
        # step is traced per input shape, and one relaxed over two ranks has no rank at all.
        if not isinstance(x, np.ndarray):
            return x
        add_axis, repeats = grayscale_rule(x.shape, self.inputs[0].shape[-1] if self.inputs else 3)
        x = x[..., None] if add_axis else x
        return np.repeat(x, repeats, axis=-1) if repeats > 1 else x

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
