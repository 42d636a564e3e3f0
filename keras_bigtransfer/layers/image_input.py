"""The image input contract of every model, as a layer in its graph.

The rule (shared with fit_bit's input pipeline):

- shape (batch, height, width, 3), RGB; grayscale, (batch, height, width) or
  (batch, height, width, 1), is repeated to 3 channels (`grayscale_rule`, which fit_bit's
  pipeline and `preprocessing` apply too); 2 or 4 channels (with alpha) are refused,
  naming the fix;
- uint8 is divided by 255; any other integer dtype (uint16, int32, int64, ...) is
  refused: its range is not implied by the dtype;
- floats are taken as [0, 1]; where their values are visible (eager calls), images
  far outside it (max > 2 or min < -1) are warned about once per layer.
"""

import warnings

import keras
from keras import ops

FAR_ABOVE = 2.0
FAR_BELOW = -1.0
MAX_IMAGE_CHANNELS = 4  # a rank-3 array whose last axis is at most this is one image (H, W, C)


def grayscale_rule(shape, channels=3, batch=True):
    """The package's one grayscale rule, on a static shape: (add_channel_axis, repeats).

    Images of `shape` get a trailing channel axis when `add_channel_axis`, then their
    channel axis repeated `repeats` times (1: left as they are). Shared by the models
    (`ImageModel`), fit_bit's input pipeline (`training.data`) and `preprocessing`, so a
    model takes what fit_bit trained it on.

    - A batch (`batch=True`) of rank 3 is (N, H, W) grayscale, unless its last axis is a
      channel count (1 to 4: gray, gray+alpha, RGB, RGBA; or `channels`): then it is one
      image without a batch axis (not converted: the shape check asks for the batch axis).
      One image (`batch=False`) of rank 2 is (H, W).
    - One channel is repeated to 3 for an RGB model (`channels=3`); a model of another
      channel count (1 included) takes its channels as they are.
    - Anything else is returned as it is ((False, 1)); `check_images` judges it.
    """
    try:
        shape = tuple(shape)
    except ValueError:  # a tf.TensorShape of unknown rank: nothing to decide on
        return False, 1
    rank = 4 if batch else 3
    one_image = batch and len(shape) == 3 and shape[-1] is not None and (
        shape[-1] <= MAX_IMAGE_CHANNELS or shape[-1] == channels)
    add_axis = len(shape) == rank - 1 and not one_image
    got = 1 if add_axis else (shape[-1] if len(shape) == rank else None)
    return add_axis, (3 if channels == 3 and got == 1 else 1)


def apply_grayscale_rule(images, channels=3):
    """A batch of images (any backend's tensor, NumPy, or a symbolic `KerasTensor`) by
    `grayscale_rule`: (N, H, W) and (N, H, W, 1) become (N, H, W, 3) on an RGB model."""
    add_axis, repeats = grayscale_rule(images.shape, channels)
    if add_axis:
        images = ops.expand_dims(images, -1)
    if repeats > 1:
        # Not ops.repeat: TensorFlow's loses the static shape in a graph (predict).
        images = ops.concatenate([images] * repeats, axis=-1)
    return images


def check_images(shape, dtype, where, channels=3):
    """Raise a `ValueError` if images of this shape and dtype break the contract."""
    try:
        shape = tuple(shape)
    except ValueError:  # unknown rank (a graph traced for inputs of several ranks): at run time
        shape = (None,) * 4
    dtype = keras.backend.standardize_dtype(dtype)
    expected = f"(batch, height, width, {channels})"
    if len(shape) != 4:
        hint = " Add a batch axis with images[None] for a single image." if len(shape) == 3 else ""
        raise ValueError(
            f"{where} expects a batch of RGB images of shape {expected}, float in [0, 1] "
            f"or uint8 in [0, 255]; got shape {shape}.{hint}"
        )
    got = shape[-1]
    if got is not None and got != channels:
        if got == 1:
            fix = f"Repeat the channel to {channels}, e.g. np.repeat(images, {channels}, axis=-1)."
        elif got in (2, 4):
            fix = "Drop the alpha channel with images[..., :3]."
        else:
            fix = "Pass RGB images."
        raise ValueError(
            f"{where} expects RGB images of shape {expected}; got shape {shape} "
            f"({got} channel{'' if got == 1 else 's'}). {fix}"
        )
    if "int" in dtype and dtype != "uint8" or dtype == "bool":
        raise ValueError(
            f"{where} takes uint8 images in [0, 255] or float images in [0, 1]; got dtype "
            f"{dtype}, whose range the dtype does not imply. Convert to uint8, or to float "
            "in [0, 1] (e.g. images.astype('float32') / 65535 for 16-bit images)."
        )


def to_unit_range(images, where, channels=3):
    """Check `images` against the contract; uint8 becomes float32 / 255, floats pass as they are."""
    check_images(images.shape, images.dtype, where, channels)
    if keras.backend.standardize_dtype(images.dtype) == "uint8":
        return ops.cast(images, "float32") / 255.0
    return images


def concrete_range(images):
    """(min, max) as Python floats when the values exist (eager), else None (a graph or trace)."""
    try:
        return float(ops.convert_to_numpy(ops.min(images))), float(ops.convert_to_numpy(ops.max(images)))
    except Exception:  # symbolic tensors of every backend refuse conversion, each its own way
        return None


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ImageInput(keras.layers.Layer):
    """First layer of every model: checks images and brings them to [0, 1] floats.

    See the module docstring for the rule. The shape and dtype checks raise a
    `ValueError` wherever the shape is known (eager calls, `predict`, tracing);
    the range warning needs values, so it fires in eager calls only.

    Note that a model's `keras.Input` is float32 and Keras casts whatever enters it;
    `ImageModel` converts uint8 before that cast. A wrapper that casts first
    (`keras.Sequential([model])` infers a float32 input) hands 0-255 floats on:
    give it `keras.Input(shape, dtype="uint8")`.

    Args:
        channels: the channel count the model takes (3, RGB).
    """

    def __init__(self, channels=3, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self._warned_range = False

    def call(self, images):
        images = to_unit_range(images, f"{self.name} (the model's input)", self.channels)
        if not self._warned_range:
            values = concrete_range(images)
            if values is not None and (values[1] > FAR_ABOVE or values[0] < FAR_BELOW):
                self._warned_range = True
                warnings.warn(
                    f"{self.name}: float images range over [{values[0]:g}, {values[1]:g}], far outside "
                    "the [0, 1] the model takes. Divide 0-255 images by 255 (uint8 images are "
                    "divided for you, unless a wrapper such as keras.Sequential([model]) cast them "
                    "to float first: give it keras.Input(shape, dtype='uint8')).",
                    UserWarning,
                    stacklevel=2,
                )
        return ops.cast(images, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        check_images(input_shape, "float32", f"{self.name} (the model's input)", self.channels)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config
