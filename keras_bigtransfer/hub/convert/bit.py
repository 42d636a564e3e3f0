"""Published BiT checkpoints (google-research/big_transfer) into `models.bit`.

Two formats carry the same names:
- `.npz` (PyTorch/JAX release): keys like `resnet/block1/unit01/a/standardized_conv2d/kernel`,
  HWIO kernels, head as a 1x1 conv `resnet/head/conv2d/{kernel,bias}`.
- TF2 `.h5` (Keras 2 `save_weights`): one HDF5 group per top-level layer, datasets named
  by variable name (`.../block1/unit01/a/group_norm/gamma:0`), head as `head/dense`.

Our layers are named after the canonical key with "/" replaced by "_", so the key map is
mechanical; only the head changes layout (1x1 conv kernel to Dense kernel).
"""

import re

import numpy as np

from keras_bigtransfer.atomic import atomic_file
from keras_bigtransfer.hub.checkpoint import as_float32, put

# The part of a key (after any prefix such as `resnet/` or an h5 group) that names a weight.
CANONICAL = re.compile(
    r"(root_block/standardized_conv2d/kernel"
    r"|block\d+/unit\d+/[abc]/(?:proj/)?(?:standardized_conv2d/kernel|group_norm/(?:gamma|beta))"
    r"|group_norm/(?:gamma|beta)"
    r"|head/(?:conv2d|dense)/(?:kernel|bias))$"
)


def canonical_key(key):
    """`resnet/block1/unit01/a/group_norm/gamma:0` -> `block1/unit01/a/group_norm/gamma`."""
    match = CANONICAL.search(key.split(":")[0])
    return match.group(1) if match else None


def model_path(canonical):
    """The Keras variable path of a canonical BiT key."""
    layer, weight = canonical.rsplit("/", 1)
    if layer.startswith("head/"):
        return "head/" + weight
    return layer.replace("/", "_") + "/" + weight


def convert(arrays):
    """Map {checkpoint key: array} to ({model path: (key, array)}, unknown keys)."""
    converted, unknown = {}, []
    for key, array in arrays.items():
        canonical = canonical_key(key)
        if canonical is None:
            unknown.append(key)
            continue
        if canonical.startswith("head/") and canonical.endswith("kernel") and array.ndim == 4:
            array = array.reshape(array.shape[-2:])  # 1x1 conv (1, 1, C, K) -> Dense (C, K)
        put(converted, model_path(canonical), key, as_float32(array))
    return converted, unknown


_LAYER = re.compile(r"^(?:(root_block|block\d+_unit\d+_[abc](?:_proj)?)_)?(standardized_conv2d|group_norm)$")


def to_published(model, prefix="resnet/"):
    """A BiT model's weights under the published .npz keys (the inverse of `convert`).

    The file this gives (`numpy.savez(path, **arrays)`) loads in the official
    PyTorch/JAX code and in timm, so a fine-tuned model can travel back to them.
    The head is written as the published 1x1 conv; a model without a head
    writes none.
    """
    arrays = {}
    for variable in model.weights:
        layer, weight = variable.path.rsplit("/", 1)
        value = np.asarray(variable.numpy(), dtype=np.float32)
        if layer == "head":
            if weight == "kernel":
                value = value.reshape((1, 1) + value.shape)
            arrays[f"{prefix}head/conv2d/{weight}"] = value
            continue
        match = _LAYER.match(layer)
        if match is None:
            raise ValueError(f"{model.name}: layer {layer!r} is not part of the BiT checkpoint layout.")
        scope, kind = match.groups()
        scope = scope.replace("_", "/").replace("root/block", "root_block") + "/" if scope else ""
        arrays[f"{prefix}{scope}{kind}/{weight}"] = value
    return arrays


def save_npz(model, path):
    """Write `to_published(model)` to `path` atomically (whole or not at all)."""
    arrays = to_published(model)
    with atomic_file(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path
