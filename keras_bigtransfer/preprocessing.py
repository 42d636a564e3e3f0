"""Image preparation outside the model (the model itself normalizes)."""

import numbers

import numpy as np

from keras_bigtransfer.layers.image_input import (MAX_IMAGE_CHANNELS, check_images, conform_images, far_outside,
                                                   warn_range)

INTERPOLATIONS = ("bilinear", "bicubic", "area", "lanczos3", "lanczos5", "nearest")


def to_numpy(x):
    """`x` (logits, images, labels) as a NumPy array, whatever produced it.

    The one conversion of every function of the package that takes arrays: NumPy arrays
    and lists pass through `np.asarray`; a tensor of the running Keras backend (a
    TensorFlow tensor, a JAX array, a PyTorch tensor, also one that requires grad or
    lives on a GPU) goes through `keras.ops.convert_to_numpy`, which detaches and copies
    it to the host. (`np.asarray` alone fails on a PyTorch tensor that requires grad:
    "Can't call numpy() on Tensor that requires grad".)
    """
    if isinstance(x, np.ndarray):
        return x
    import keras

    if keras.ops.is_tensor(x):
        return keras.ops.convert_to_numpy(x)
    if isinstance(x, (list, tuple)) and any(keras.ops.is_tensor(item) for item in x):
        return np.stack([to_numpy(item) for item in x])
    return np.asarray(x)


def _as_rgb(image, what):
    """One image as float32 RGB in [0, 1], by the package's image rule (layers/image_input.py)."""
    return conform_images(to_numpy(image), what, batch=False).astype("float32")


def _target_size(image_size, what):
    sizes = (image_size, image_size) if isinstance(image_size, numbers.Integral) else tuple(image_size)
    if len(sizes) != 2 or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
                                  for s in sizes):
        raise ValueError(f"{what}: image_size must be a positive integer or (height, width); got {image_size!r}.")
    return int(sizes[0]), int(sizes[1])


DEFAULT_CROP_PCT = 0.875
DEFAULT_INTERPOLATION = "bilinear"


def _model_entry(model):
    """The catalogue entry a built model most likely carries: its name is a tag or a tag's
    prefix (the constructors' default names), at its fixed input size when it has one."""
    from keras_bigtransfer.weights import catalogue

    name = getattr(model, "name", "") or ""
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    side = shape[1] if len(shape) == 4 and shape[1] is not None and shape[1] == shape[2] else None
    found = catalogue.find(name)
    if found is not None and (side is None or found.resolution == side):
        return found
    candidates = sorted((e for e in catalogue.list_models() if e.tag.startswith(name + "_")),
                        key=lambda e: (side is not None and e.resolution != side, e.tag))
    return candidates[0] if name and candidates else None


def eval_settings(source, defaults=(DEFAULT_CROP_PCT, DEFAULT_INTERPOLATION)):
    """(image size, crop_pct, interpolation) of a catalogue tag, `hub.Entry` or built model.

    A tag (or alias, or hf-hub: handle of a catalogued copy) gives the entry's settings, as
    timm's pretrained configurations give them; a model gives those of its catalogue entry
    (its name, its fixed input size) with its fixed input size, else `defaults`
    ((crop_pct, interpolation): 0.875, bilinear) at its fixed size or 224.
    """
    from keras_bigtransfer.weights import catalogue

    crop_default, interpolation_default = defaults
    if isinstance(source, str):
        entry = catalogue.get(source)
        return entry.resolution, entry.crop_pct or crop_default, entry.interpolation or interpolation_default
    if isinstance(source, catalogue.Entry):
        entry = source
        return entry.resolution, entry.crop_pct or crop_default, entry.interpolation or interpolation_default
    shape = tuple(source.inputs[0].shape) if getattr(source, "inputs", None) else ()
    fixed = tuple(shape[1:3]) if len(shape) == 4 and None not in shape[1:3] else None
    entry = _model_entry(source)
    size = fixed or (entry.resolution if entry else 224)
    if entry is None:
        return size, crop_default, interpolation_default
    return size, entry.crop_pct or crop_default, entry.interpolation or interpolation_default


def eval_transform(images, image_size, crop_pct=None, interpolation=None):
    """The evaluation view of images: resize (keeping the aspect ratio, antialiased) so
    that the target divided by `crop_pct` just fits, then crop the centre.

    `image_size` may also be a catalogue tag, a `hub.Entry` or a built model: the size,
    crop_pct and interpolation are then the weights' published evaluation settings
    (`eval_settings`), so that a published top-1 can be reproduced;
    `eval_transform(images, "bit_m_r50x1_ilsvrc2012")` is 448 px, crop 1.0, bilinear.
    An explicit `crop_pct` or `interpolation` overrides the source's.

    For a square target this is the standard ImageNet evaluation: the shorter side
    becomes image_size / crop_pct (256 for 224 at 0.875), and the central
    image_size x image_size square is kept. `crop_pct=1.0` resizes the shorter side to
    the target and crops nothing from it.

    Args:
        images: one (H, W, 3) image, an (N, H, W, 3) batch, or a list of images of
            any sizes; uint8 in [0, 255] or float in [0, 1]; NumPy or any Keras
            backend's tensors. The package's image rule (layers/image_input.py), as the
            models apply it: grayscale is repeated to RGB (one (H, W) or (H, W, 1) image,
            or an (N, H, W) or (N, H, W, 1) batch: a 3-dimensional array whose last axis
            is over 4 is a grayscale batch), RGBA and grayscale + alpha lose the alpha
            channel, floats far outside [0, 1] are warned about.
        image_size: the output side, or (height, width); or a catalogue tag, `hub.Entry`
            or model whose evaluation settings to use.
        crop_pct: fraction of the resized image that is kept, in (0, 1] (default: the
            source's, else 0.875).
        interpolation: one of "bilinear", "bicubic", "area", "lanczos3", "lanczos5",
            "nearest" (default: the source's, else "bilinear").

    Returns:
        float32 NumPy array in [0, 1]: (height, width, 3) for one image, else
        (N, height, width, 3).

    Raises:
        ValueError: images the rule refuses (its one message per failure: rank, channels,
            dtype, no pixels), a bad size, crop_pct or interpolation.
    """
    import keras

    what = "eval_transform"
    from keras_bigtransfer.weights import catalogue

    if isinstance(image_size, (str, catalogue.Entry)) or getattr(image_size, "inputs", None) is not None:
        image_size, source_crop, source_interpolation = eval_settings(image_size)
        crop_pct = source_crop if crop_pct is None else crop_pct
        interpolation = source_interpolation if interpolation is None else interpolation
    else:  # a size: anything else is refused by _target_size below, as before
        crop_pct = DEFAULT_CROP_PCT if crop_pct is None else crop_pct
        interpolation = DEFAULT_INTERPOLATION if interpolation is None else interpolation
    height, width = _target_size(image_size, what)
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, numbers.Real) or not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"{what}: crop_pct must be in (0, 1]; got {crop_pct!r}.")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{what}: interpolation must be one of {INTERPOLATIONS}; got {interpolation!r}.")
    single = False
    if not isinstance(images, (list, tuple)):
        images = to_numpy(images)
        # One image: (H, W), or (H, W, C); else a batch, (N, H, W) grayscale included, as the
        # models read a rank-3 array.
        single = images.ndim == 2 or images.ndim == 3 and images.shape[-1] <= MAX_IMAGE_CHANNELS
        check_images(images, what, batch=not single)  # the batch's error, as a model gives it
    batch = [images] if single else list(images)
    if not batch:
        raise ValueError(f"{what}: no images.")
    batch = [_as_rgb(image, what) for image in batch]
    low, high = min(float(image.min()) for image in batch), max(float(image.max()) for image in batch)
    if far_outside(low, high):
        warn_range(low, high, what)

    out = []
    for image in batch:
        h, w = image.shape[:2]
        factor = max(height / crop_pct / h, width / crop_pct / w)
        resized = keras.ops.image.resize(
            image, (max(height, round(h * factor)), max(width, round(w * factor))),
            interpolation=interpolation, antialias=True, data_format="channels_last",
        )
        resized = keras.ops.convert_to_numpy(resized)
        top = (resized.shape[0] - height) // 2
        left = (resized.shape[1] - width) // 2
        # Bicubic and Lanczos overshoot; the models take [0, 1].
        out.append(np.clip(resized[top:top + height, left:left + width], 0.0, 1.0))
    return out[0] if single else np.stack(out)


def center_crop(image, size, crop_pct=0.875):
    """The standard ImageNet evaluation view of one image: resize the shorter side to
    size / crop_pct (bicubic, antialiased), then crop the central size x size square.

    This is `eval_transform(image, size, crop_pct, interpolation="bicubic")`, the view
    the CLI's `predict` uses too.

    Args:
        image: HWC array, uint8 in [0, 255] or float in [0, 1].
        size: output side.
        crop_pct: fraction of the resized shorter side that is kept (0.875 = 224/256).

    Returns:
        float32 array (size, size, 3) in [0, 1], ready for any model of the package.
    """
    image = to_numpy(image)
    check_images(image, "center_crop", batch=False)
    return eval_transform(image, size, crop_pct=crop_pct, interpolation="bicubic")


# --- image files: the one rule every reader of the package follows --------------------------------

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _is_16_bit(image):
    # Pillow opens 16-bit grayscale as "I;16*", or as "I" (32-bit ints holding 0..65535) for PNG.
    return image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG")


def _open(path, what):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ValueError(f"{what}: {path} is not an image file Pillow can read.") from None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ValueError(f"{what}: {path} is a damaged image ({type(e).__name__}: {e}).") from None
    if image.mode in ("I", "F") and not _is_16_bit(image):
        mode = image.mode
        image.close()
        raise ValueError(f"{what}: {path} is a 32-bit {'float' if mode == 'F' else 'integer'} image (mode {mode}); "
                         "the package reads 8- and 16-bit image files. Convert it to 8 or 16 bits.")
    return image


def image_file_size(path, what="image"):
    """(height, width) of an image file, from its header, after the checks of `read_image_file`
    that need no decoding (not an image, an unsupported 32-bit mode).

    Raises:
        ValueError: one line naming the file.
    """
    with _open(path, what) as image:
        return image.size[::-1]


def read_image_file(path, what="image"):
    """An image file as uint8 RGB (H, W, 3): the one reading rule of the package.

    Calibration directories (`deploy`), class folders (`training.data`) and the CLI's
    `predict` read files through it, so an image means the same everywhere:

    * 8-bit files as they are; grayscale, palette ("P", transparency included), LA, RGBA and
      CMYK through Pillow's `convert("RGB")` (alpha is dropped, as Keras' and timm's loaders do);
    * 16-bit files (grayscale PNG / TIFF, "I;16" or "I") scaled from [0, 65535] to [0, 255]
      (value * 255 / 65535, rounded): the same image in 8 bits, not saturated;
    * 32-bit integer and float files (modes "I", "F" outside PNG) are refused: their range is
      not known.

    Raises:
        ValueError: one line naming the file (not an image, damaged, truncated, unsupported mode).
        FileNotFoundError, IsADirectoryError, PermissionError: as `open`.
    """
    with _open(path, what) as image:
        try:
            if _is_16_bit(image):
                values = np.asarray(image).astype(np.float64)
                gray = np.clip(np.round(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=-1)
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # Pillow warns on a direct P -> RGB with transparency
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated or corrupt past the header
            raise ValueError(f"{what}: {path} is a damaged image ({type(e).__name__}: {e}).") from None
