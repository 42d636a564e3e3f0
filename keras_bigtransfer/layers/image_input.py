"""The package's one image rule, and the layer that holds it in every model's graph.

Every entry point that takes images applies this rule, with the same messages: the models
(`ImageInput`, `ImageModel`), the training pipelines (`training.data`: fit_bit, Noisy Student,
Meta Pseudo Labels), `preprocessing.eval_transform` / `center_crop`, and the CLI's `predict`
(after `preprocessing.read_image_file` decodes a file).

- Shape: a batch (batch, height, width, C) or (batch, height, width); one image
  (height, width, C) or (height, width) where an entry point takes single images. A
  batch-shaped rank-3 array whose last axis is a channel count (1 to 4) is one image without
  its batch axis and is refused, naming `images[None]`.
- Channels, for an RGB consumer (every model, unless built with `in_chans`): 3 is RGB; 1 (or
  no channel axis), grayscale, is repeated to RGB; 4 (RGBA) and 2 (grayscale + alpha) lose
  their alpha channel, then grayscale is repeated. That is Pillow's `convert("RGB")`, which
  timm's and Keras' image loaders apply to files, so an array and its PNG give the same
  input. Other counts are refused. A model built for another channel count takes exactly it.
- dtype: uint8 is [0, 255] and divided by 255; floats are taken as [0, 1]; other integer
  dtypes (int16, uint16, int32, ...) and bool are refused: their range is not implied by
  the dtype. Floats far outside [0, 1] (max > 2 or min < -1) are warned about where the
  values are visible (eager calls, NumPy, tf.data), once per model or pipeline.
- An image with no pixels (a side of 0) is refused.
- Layout: models built under `keras.config.image_data_format() == "channels_first"` take
  (batch, C, height, width) batches (the same channel rules on axis 1; no batch-less or
  channel-less forms); every other entry point takes the layouts above.
"""

import warnings
from typing import NamedTuple, Optional

import keras
import numpy as np
from keras import ops

FAR_ABOVE = 2.0
FAR_BELOW = -1.0
MAX_IMAGE_CHANNELS = 4  # a rank-3 batch whose last axis is at most this is one image (H, W, C)
ALPHA_DROPPED = {2: 1, 4: 3}  # gray+alpha, RGBA -> the colour channels Pillow's convert("RGB") keeps


class ImagePlan(NamedTuple):
    """What `check_images` decided for images of one shape and dtype (`to_channels` applies it)."""

    add_channel_axis: bool  # (N, H, W) or (H, W): grayscale without a channel axis
    keep: Optional[int]  # channels kept (alpha dropped); None: the count is known at run time only
    repeats: int  # 3: grayscale repeated to RGB; else 1
    uint8: bool  # divided by 255
    channel_axis: int = -1  # where the channels are: -1, or 1 (0 without a batch axis) for channels_first


def standardize_data_format(value=None):
    """"channels_last" or "channels_first": `value` checked, or Keras' global
    `keras.config.image_data_format()` when None (what a model built now uses)."""
    value = keras.config.image_data_format() if value is None else value
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f'data_format must be "channels_last" or "channels_first"; got {value!r}.')
    return value


def _expected(channels, batch, first=False):
    if first:
        axes = "(batch, C, height, width)" if batch else "(C, height, width)"
        what = "C = 3 (RGB), 1 (grayscale, repeated to RGB), or 4 / 2 (alpha dropped)" if channels == 3 \
            else f"C = {channels}"
        return f"channels_first {axes} images, {what}"
    axes = "(batch, height, width" if batch else "(height, width"
    if channels == 3:
        return (f"{axes}, C) or {axes}) images, C = 3 (RGB), 1 (grayscale, repeated to RGB), or 4 / 2 "
                "(RGBA / grayscale + alpha, alpha dropped)")
    return f"{axes}, {channels}) images"


def rank_message(shape, where, channels=3, batch=True, first=False):
    """The one message for images of the wrong rank."""
    hint = " Add a batch axis with images[None] for a single image." if batch and len(shape) == 3 else ""
    return f"{where} takes {_expected(channels, batch, first)}; got shape {shape}.{hint}"


def channels_message(got, where, channels=3, batch=True, first=False):
    """The one message for a channel count the rule cannot convert."""
    if first:  # most often channels-last images given to a channels_first model
        return (f"{where} takes {_expected(channels, batch, first)}; got {got} channels on axis "
                f"{1 if batch else 0}. For (batch, height, width, C) images, transpose them "
                "(images.transpose(0, 3, 1, 2)) or build the model under channels_last.")
    return (f"{where} takes {_expected(channels, batch)}; got {got} channel{'' if got == 1 else 's'}."
            + (" Pass RGB images." if channels == 3 else ""))


def dtype_message(dtype, where):
    """The one message for a dtype whose range is not known."""
    return (f"{where} takes uint8 images in [0, 255] or float images in [0, 1]; got dtype {dtype}, whose "
            "range the dtype does not imply. Convert to uint8, or to float in [0, 1] (e.g. "
            "images.astype('float32') / 65535 for 16-bit images).")


def range_message(low, high, where):
    """The one warning for float images far outside [0, 1]."""
    return (f"{where}: float images range over [{low:g}, {high:g}], far outside the [0, 1] the package "
            "takes. Divide 0-255 images by 255 (uint8 images are divided for you, unless a wrapper such "
            "as keras.Sequential([model]) cast them to float first: give it keras.Input(shape, "
            "dtype='uint8')).")


def far_outside(low, high):
    """Whether a float image range [low, high] is surely not a [0, 1] image."""
    return high > FAR_ABOVE or low < FAR_BELOW


def warn_range(low, high, where, stacklevel=3):
    """`range_message` as a UserWarning."""
    warnings.warn(range_message(low, high, where), UserWarning, stacklevel=stacklevel)


def check_images(images, where="images", channels=3, batch=True, data_format="channels_last"):
    """Check images against the package's image rule (module docstring) and say how to convert them.

    Args:
        images: anything with `shape` and `dtype`: a NumPy array, any Keras backend's tensor, a
            `keras.KerasTensor`, a `tf.TensorSpec`. The shape may hold None (checked where known).
        where: who takes the images, the start of every message ("train_data", a model's name).
        channels: the channel count of the consumer (3: RGB; a model's `in_chans`).
        batch: a batch (N, H, W[, C]) is expected; False: one image (H, W[, C]).
        data_format: "channels_first": (N, C, H, W) (or (C, H, W)) only, C checked on axis 1 (0).

    Returns:
        An `ImagePlan`: add a channel axis, channels kept, repeats, uint8 to divide by 255.

    Raises:
        ValueError: one line (`rank_message`, `channels_message`, `dtype_message`, or an image
            with no pixels) naming what was wrong and what to pass.
    """
    try:
        shape = tuple(images.shape)
    except ValueError:  # unknown rank (a graph traced for inputs of several ranks): at run time
        shape = None
    rank = 4 if batch else 3
    first = data_format == "channels_first"
    if shape is None:
        add_axis, got = False, None
    elif first:
        if len(shape) != rank:
            raise ValueError(rank_message(shape, where, channels, batch, first))
        add_axis, got = False, shape[rank - 3]
    elif len(shape) == rank:
        add_axis, got = False, shape[-1]
    elif len(shape) == rank - 1 and not (
            batch and shape[-1] is not None and (shape[-1] <= MAX_IMAGE_CHANNELS or shape[-1] == channels)):
        add_axis, got = True, 1
    else:
        raise ValueError(rank_message(shape, where, channels, batch))
    if got is None:
        keep = None
    elif channels == 3 and 1 <= got <= MAX_IMAGE_CHANNELS:
        keep = ALPHA_DROPPED.get(got, got)
    elif got == channels:
        keep = got
    else:
        raise ValueError(channels_message(got, where, channels, batch, first))
    if shape is not None and 0 in (shape[-2:] if add_axis or first else shape[-3:-1]):
        raise ValueError(f"{where}: the images have no pixels (shape {shape}).")
    dtype = keras.backend.standardize_dtype(images.dtype)
    if "int" in dtype and dtype != "uint8" or dtype == "bool":
        raise ValueError(dtype_message(dtype, where))
    return ImagePlan(add_axis, keep, 3 if channels == 3 and keep == 1 else 1, dtype == "uint8",
                     rank - 3 if first else -1)


def to_channels(images, plan, concatenate=None):
    """`images` with the channels `plan` asks for: channel axis added, alpha dropped, grayscale
    repeated. NumPy arrays stay NumPy; other tensors go through `keras.ops` unless `concatenate`
    (e.g. `tf.concat` in a tf.data pipeline) is given."""
    if concatenate is None:
        concatenate = np.concatenate if isinstance(images, np.ndarray) else ops.concatenate
    axis = plan.channel_axis
    if plan.add_channel_axis:
        images = images[..., None]
    if plan.keep is not None and images.shape[axis] != plan.keep:
        images = images[..., :plan.keep] if axis == -1 else images[(slice(None),) * axis + (slice(0, plan.keep),)]
    if plan.repeats > 1:
        # Not ops.repeat: TensorFlow's loses the static shape in a graph (predict).
        images = concatenate([images] * plan.repeats, axis=axis)
    return images


def conform_images(images, where, channels=3, batch=True, data_format="channels_last"):
    """`images` checked and converted by the rule: channels as the consumer takes them, uint8
    as float32 / 255; floats keep their dtype (the range is not checked here: `warn_range`)."""
    plan = check_images(images, where, channels, batch, data_format)
    images = to_channels(images, plan)
    if not plan.uint8:
        return images
    return images.astype("float32") / 255.0 if isinstance(images, np.ndarray) else ops.cast(images, "float32") / 255.0


def concrete_range(images):
    """(min, max) as Python floats when the values exist (eager), else None (a graph or trace)."""
    try:
        return float(ops.convert_to_numpy(ops.min(images))), float(ops.convert_to_numpy(ops.max(images)))
    except Exception:  # symbolic tensors of every backend refuse conversion, each its own way
        return None


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class ImageInput(keras.layers.Layer):
    """First layer of every model: applies the image rule (module docstring) and brings
    images to [0, 1] floats.

    The shape and dtype checks raise a `ValueError` wherever the shape is known (eager
    calls, `predict`, tracing); the range warning needs values, so it fires in eager calls
    only, once per layer.

    Note that a model's `keras.Input` is float32 and Keras casts whatever enters it;
    `ImageModel` converts uint8 before that cast. A wrapper that casts first
    (`keras.Sequential([model])` infers a float32 input) hands 0-255 floats on:
    give it `keras.Input(shape, dtype="uint8")`.

    Args:
        channels: the channel count the model takes (3, RGB).
        data_format: "channels_last" (batch, H, W, C) or "channels_first" (batch, C, H, W);
            None: `keras.config.image_data_format()` when the layer is made.
    """

    def __init__(self, channels=3, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.data_format = standardize_data_format(data_format)
        self._warned_range = False

    def _where(self):
        return f"{self.name} (the model's input)"

    def call(self, images):
        images = conform_images(images, self._where(), self.channels, data_format=self.data_format)
        if not self._warned_range:
            values = concrete_range(images)
            if values is not None and far_outside(*values):
                self._warned_range = True
                warn_range(*values, self.name)
        return ops.cast(images, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        plan = check_images(keras.KerasTensor(input_shape), self._where(), self.channels,
                            data_format=self.data_format)
        shape = list(input_shape) + ([1] if plan.add_channel_axis else [])
        axis = plan.channel_axis
        shape[axis] = shape[axis] if plan.keep is None else plan.keep * plan.repeats
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, data_format=self.data_format)
        return config
