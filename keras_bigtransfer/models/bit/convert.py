"""Published BiT checkpoints (google-research/big_transfer) into `models.bit`, and back.

Two formats carry the same names:
- `.npz` (PyTorch/JAX release): keys like `resnet/block1/unit01/a/standardized_conv2d/kernel`,
  HWIO kernels, head as a 1x1 conv `resnet/head/conv2d/{kernel,bias}`.
- TF2 `.h5` (Keras 2 `save_weights`): one HDF5 group per top-level layer, datasets named
  by variable name (`.../block1/unit01/a/group_norm/gamma:0`), head as `head/dense`.

Our layers are named after the canonical key with "/" replaced by "_", so the key map is
mechanical; only the head changes layout (1x1 conv kernel to Dense kernel).
"""

import os
import re

import numpy as np

from keras_bigtransfer.models import registry
from keras_bigtransfer.models.bit.config import DEPTHS
from keras_bigtransfer.models.bit.model import ResNetV2
from keras_bigtransfer.weights import assign
from keras_bigtransfer.weights.atomic import atomic_file
from keras_bigtransfer.weights.checkpoint import as_float32, put

# The part of a key (after any prefix such as `resnet/` or an h5 group) that names a weight.
# Some published files name kernels `standardized_conv2d_<n>` (big_vision's bit_paper.py
# `maybe_convert_big_transfer_format` renames them: "some files containing weird naming").
CANONICAL = re.compile(
    r"(root_block/standardized_conv2d(?:_\d+)?/kernel"
    r"|block\d+/unit\d+/[abc]/(?:proj/)?(?:standardized_conv2d(?:_\d+)?/kernel|group_norm/(?:gamma|beta))"
    r"|group_norm/(?:gamma|beta)"
    r"|head/(?:conv2d|dense)/(?:kernel|bias))$"
)


def canonical_key(key):
    """`resnet/block1/unit01/a/group_norm/gamma:0` -> `block1/unit01/a/group_norm/gamma`."""
    match = CANONICAL.search(key.split(":")[0])
    return _NUMBERED_CONV.sub("/standardized_conv2d/", "/" + match.group(1))[1:] if match else None


_NUMBERED_CONV = re.compile(r"/standardized_conv2d_\d+/")


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
    path = os.fspath(path)
    arrays = to_published(model)
    with atomic_file(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path


def load_arrays(arrays, model, options):
    """The family's converter (`registry.Family.convert`) -> `registry.Conversion`: every BiT
    format maps by name, whatever `options.kind` (timm's names, from the Hugging Face Hub or a
    local .safetensors, first to the published ones)."""
    arrays, unknown = from_timm(arrays)
    converted, more = convert(arrays)
    return registry.Conversion(converted, unknown + more)


def detect(arrays):
    """Whether {key: array} holds BiT weights under the published names, or timm's (names only)."""
    return is_timm(arrays) or any(canonical_key(key) == "root_block/standardized_conv2d/kernel" for key in arrays)


def head_classes(arrays):
    """The class count of the checkpoint's head (its bias' length), or None without a head."""
    if TIMM_HEAD_BIAS in arrays:
        return int(arrays[TIMM_HEAD_BIAS].shape[-1])
    for key, array in arrays.items():
        canonical = canonical_key(key)
        if canonical is not None and canonical.startswith("head/") and canonical.endswith("/bias"):
            return int(array.shape[-1])
    return None


def _depth_width(converted):
    """(units per block, depth or None, width) of converted BiT weights; None without a root conv."""
    root = converted.get("root_block_standardized_conv2d/kernel")
    if root is None:
        return None
    units = {}
    for p in converted:
        if p.startswith("block"):
            block, unit = p.split("_")[:2]
            units.setdefault(int(block[5:]), set()).add(unit)
    counts = tuple(len(units[b]) for b in sorted(units))
    depth = next((d for d, c in DEPTHS.items() if c == counts), None)
    return counts, depth, root[1].shape[-1] // 64


def identify(arrays):
    """"BiT_M_R<depth>x<width>" for a BiT checkpoint (depth and width read off it; BiT-S and
    BiT-M of one architecture share a layout), or None."""
    arrays, _ = from_timm(arrays)
    converted, _ = convert(arrays)
    found = _depth_width(converted)
    if found is None or found[1] is None:
        return None
    return f"BiT_M_R{found[1]}x{found[2]}"


def from_checkpoint(arrays, options):
    """A BiT model built to fit published weights (depth, width and head read off them);
    `options`: a `registry.ConvertOptions` (its `source` names the file in messages)."""
    source = options.source
    arrays, timm_unknown = from_timm(arrays)
    converted, unknown = convert(arrays)
    unknown = timm_unknown + unknown
    found = _depth_width(converted)
    if found is None:
        raise ValueError(f"{source}: not a BiT checkpoint (no root_block/standardized_conv2d/kernel).")
    counts, depth, width = found
    if depth is None:
        raise ValueError(f"{source}: BiT weights with units per block {counts} match no ResNet depth.")
    head = converted.get("head/kernel")
    model = ResNetV2(
        depth, width, include_top=head is not None,
        num_classes=int(head[1].shape[-1]) if head is not None else 1,
        pooling=None if head is not None else "avg", name=f"bit_r{depth}x{width}",
    )
    return assign.assign(model, converted, unknown, source=os.path.basename(str(source)), stored=arrays)


# timm's ResNetV2 names (`resnetv2_*_bit`: the Hugging Face Hub copies `timm/resnetv2_50x1_bit.*`,
# timm's checkpoint_filter_fn) -> the published .npz names. (pattern, target, transform): see
# `weights.keymap`. timm counts stages and blocks from 0 and letters convs 1-3.
TIMM_KEYS = (
    (r"stem\.conv\.weight", "resnet/root_block/standardized_conv2d/kernel", "hwio"),
    (r"stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.conv(?P<c>[123])\.weight",
     "resnet/block{s!n}/unit{b!n:02d}/{c!L}/standardized_conv2d/kernel", "hwio"),
    (r"stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.norm(?P<c>[123])\.weight",
     "resnet/block{s!n}/unit{b!n:02d}/{c!L}/group_norm/gamma", None),
    (r"stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.norm(?P<c>[123])\.bias",
     "resnet/block{s!n}/unit{b!n:02d}/{c!L}/group_norm/beta", None),
    (r"stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.downsample\.conv\.weight",
     "resnet/block{s!n}/unit{b!n:02d}/a/proj/standardized_conv2d/kernel", "hwio"),
    (r"norm\.weight", "resnet/group_norm/gamma", None),
    (r"norm\.bias", "resnet/group_norm/beta", None),
    (r"head\.fc\.weight", "resnet/head/conv2d/kernel", "hwio"),  # a 1x1 conv, as published
    (r"head\.fc\.bias", "resnet/head/conv2d/bias", None),
)
TIMM_ROOT = "stem.conv.weight"
TIMM_HEAD_BIAS = "head.fc.bias"


def is_timm(arrays):
    """Whether {key: array} is in timm's ResNetV2 names (not a hybrid ViT's backbone)."""
    return TIMM_ROOT in arrays


def from_timm(arrays):
    """timm-named arrays -> ({published key: array}, timm keys no rule knows); others unchanged."""
    if not is_timm(arrays):
        return arrays, []
    from keras_bigtransfer.weights import keymap

    renamed, unknown = keymap.rename(arrays, TIMM_KEYS)
    return {key: array for key, (_, array) in renamed.items()}, unknown
