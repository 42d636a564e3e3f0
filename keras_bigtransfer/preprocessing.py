"""Image preparation outside the model (the model itself normalizes)."""

import numpy as np


def center_crop(image, size, crop_pct=0.875):
    """The standard ImageNet evaluation view: resize the shorter side to size / crop_pct
    (bicubic, antialiased), then crop the central size x size square.

    Args:
        image: HWC array, uint8 in [0, 255] or float in [0, 1].
        size: output side.
        crop_pct: fraction of the resized shorter side that is kept (0.875 = 224/256).

    Returns:
        float32 array (size, size, 3) in [0, 1], ready for any model of the package.
    """
    import tensorflow as tf

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"center_crop expects an (H, W, 3) image; got shape {image.shape}.")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    scale = 1.0 / 255.0 if image.dtype == np.uint8 else 1.0
    height, width = image.shape[:2]
    factor = size / crop_pct / min(height, width)
    resized = tf.image.resize(image.astype("float32") * scale,
                              (max(size, round(height * factor)), max(size, round(width * factor))),
                              method="bicubic", antialias=True).numpy()
    top = (resized.shape[0] - size) // 2
    left = (resized.shape[1] - size) // 2
    return np.clip(resized[top:top + size, left:left + size], 0.0, 1.0)
