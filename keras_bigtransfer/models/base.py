"""What every model in the package shares: the input convention, the common
constructor arguments, and the model class that enforces both."""

import numpy as np
import keras
from keras import ops

POOLING_CHOICES = ("avg", "max", None)

# Every family names its linear classifier this; training, export and loading find it by name.
HEAD_LAYER = "head"


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ImageModel(keras.Model):
    """A functional Keras model that takes RGB images in [0, 1], batch-first NHWC.

    This is the TF Hub image convention. uint8 images are converted (divided by
    255) before they enter the graph; any other rank or channel count raises a
    `ValueError` naming the expected shape. The normalization the weights
    expect is a layer inside the model, so callers never normalize.
    """

    def __call__(self, inputs, *args, **kwargs):
        return super().__call__(self._to_unit_range(inputs), *args, **kwargs)

    def _to_unit_range(self, images):
        shape = getattr(images, "shape", None)
        if shape is None:
            images = np.asarray(images)
            shape = images.shape
        expected = tuple(self.inputs[0].shape)
        if len(shape) != 4 or (shape[-1] is not None and shape[-1] != expected[-1]):
            raise ValueError(
                f"{self.name} expects a batch of RGB images of shape (batch, height, "
                f"width, {expected[-1]}) (the model's input shape is {expected}), "
                f"float32 in [0, 1] or uint8 in [0, 255]; got shape {tuple(shape)}. "
                "Add a batch axis with images[None] for a single image."
            )
        dtype = keras.backend.standardize_dtype(images.dtype)
        if dtype == "uint8":
            return ops.cast(images, "float32") / 255.0
        return images


def validate_common_args(*, include_top, num_classes, input_shape, pooling, name):
    """Check the arguments every constructor takes; return the input shape."""
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
    if include_top and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(
            f"{name}: include_top=True needs a positive integer num_classes; "
            f"got {num_classes!r}."
        )
    return input_shape


def image_inputs(input_shape):
    """The model's input tensor: float32 images in [0, 1]."""
    return keras.Input(shape=input_shape, dtype="float32", name="images")


def pool_features(x, pooling, name="pool"):
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=name)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=name)(x)
    return x
