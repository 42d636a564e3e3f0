"""Calibration images for full-integer quantization, read and checked before any conversion.

The package's convention: float32 RGB in [0, 1] (uint8 is divided by 255), NHWC.
"""

import os
import warnings

import numpy as np

from keras_bigtransfer.preprocessing import IMAGE_EXTENSIONS, read_image_file, to_numpy

RECOMMENDED = 32  # fewer calibrate the activation ranges poorly; a warning says so
MAX_IMAGES = 1000  # more only slows the calibration down


def load_representative_data(data, shape):
    """Calibration images as float32 (N, H, W, 3) in [0, 1].

    Args:
        data: an array (N, H, W, 3) (or one image (H, W, 3)), a tf.data dataset of images or
            (images, labels) (batched or not), or a directory of image files (read
            recursively by `preprocessing.read_image_file`, and resized to `shape`).
        shape: the export's (height, width, channels), None where dynamic.
    """
    if isinstance(data, (str, os.PathLike)):
        images = _read_directory(os.fspath(data), shape)
    elif _is_dataset(data):
        images = _from_dataset(data)
    else:
        try:
            images = to_numpy(data)  # NumPy or any Keras backend's tensor
        except Exception as e:  # ragged lists and the like
            raise ValueError(f"representative_data must be an array of images, a tf.data dataset or a "
                             f"directory; got {type(data).__name__} ({e}).") from None
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != shape[-1] or images.shape[0] == 0:
        raise ValueError(f"representative_data must hold images of shape (N, height, width, {shape[-1]}); "
                         f"got an array of shape {images.shape}.")
    for axis, want in ((1, shape[0]), (2, shape[1])):
        if want is not None and images.shape[axis] != want:
            raise ValueError(f"representative_data images are {images.shape[1:3]}; the export is "
                             f"{shape[:2]}. Resize them (or pass a directory: it is resized for you).")
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    elif not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"representative_data must be float images in [0, 1] or uint8; got dtype {images.dtype}.")
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)) or images.min() < -0.01 or images.max() > 1.01:
        raise ValueError(
            f"representative_data must be in the package's [0, 1] convention; its values span "
            f"[{np.nanmin(images):.3g}, {np.nanmax(images):.3g}]. Divide 0-255 images by 255 "
            "(or pass them as uint8); the model normalizes inside.")
    if len(images) < RECOMMENDED:
        warnings.warn(f"{len(images)} calibration images: int8 accuracy is better with a few dozen "
                      f"or more ({RECOMMENDED}+ recommended).", stacklevel=3)
    return images[:MAX_IMAGES]


def _is_dataset(data):
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "as_numpy_iterator")


def _from_dataset(dataset):
    images, count = [], 0
    for element in dataset.as_numpy_iterator():
        if isinstance(element, dict):
            element = element.get("image", element.get("images"))
        elif isinstance(element, (tuple, list)):
            element = element[0]
        element = np.asarray(element)
        if element.ndim == 3:
            element = element[None]
        images.append(element)
        count += len(element)
        if count >= MAX_IMAGES:
            break
    if not images:
        raise ValueError("representative_data: the dataset yielded no images.")
    return np.concatenate(images)


def _read_directory(directory, shape):
    if not os.path.isdir(directory):
        raise ValueError(f"representative_data: {directory!r} is not a directory (of calibration images).")
    if shape[0] is None or shape[1] is None:
        raise ValueError("representative_data is a directory and the model takes any input size: pass "
                         "input_shape=(height, width) to say what size to export and calibrate at.")
    files = sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(directory)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not files:
        raise ValueError(f"representative_data: no images ({', '.join(IMAGE_EXTENSIONS)}) under {directory!r}.")
    from PIL import Image

    images = []
    for path in files[:MAX_IMAGES]:
        # The package's one reading rule (16-bit scaled, not saturated; a bad file named).
        image = Image.fromarray(read_image_file(path, what="representative_data"))
        images.append(np.asarray(image.resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.uint8))
    return np.stack(images)
