"""Published EfficientNet checkpoints into `models.efficientnet`.

- Keras application h5 (`efficientnetb0.h5`, `..._notop.h5`; legacy Keras 2 layout):
  `<layer>/<layer>/<weight>:0`. Our layers carry the same names, except the head
  (`predictions` there). Their `normalization` layer stores the ImageNet std where
  the variance belongs (tensorflow/tensorflow#49930); our models hold the correct
  statistics as constants, so those three arrays are read and deliberately dropped.
- EfficientNet-PyTorch state dicts (lukemelas/EfficientNet-PyTorch names:
  `_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`), OIHW kernels. `N` counts blocks
  over all stages; `models.efficientnet.block_names` gives our name for each.
"""

import re

import numpy as np

# Arrays that exist in the published files but that our models do not hold as weights.
KERAS_IGNORED = re.compile(r"^(normalization|rescaling)(_\d+)?/")

_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def _f32(array):
    return np.asarray(array, dtype=np.float32)


def convert_keras_h5(arrays):
    """{dataset path: array} of a Keras application h5 -> ({our path: (key, array)}, unknown)."""
    converted, unknown = {}, []
    for key, array in arrays.items():
        parts = key.split(":")[0].split("/")
        if len(parts) < 2:
            unknown.append(key)
            continue
        layer, weight = parts[-2], parts[-1]
        if KERAS_IGNORED.match(f"{layer}/"):
            continue
        if layer in ("predictions", "probs"):
            layer = "head"
        if weight == "depthwise_kernel":
            weight = "kernel"
        converted[f"{layer}/{weight}"] = (key, _f32(array))
    return converted, unknown


def _conv(weight, depthwise):
    """OIHW -> HWIO; depthwise (C, 1, H, W) -> (H, W, C, 1)."""
    order = (2, 3, 0, 1) if depthwise else (2, 3, 1, 0)
    return np.ascontiguousarray(_f32(weight).transpose(order))


def convert_pytorch(arrays, names):
    """An EfficientNet-PyTorch state dict -> ({our path: (key, array)}, unknown).

    Args:
        arrays: {state dict key: array}.
        names: our block names in order (`block_names(...)`).
    """
    top = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "top_conv", "_bn1": "top_bn"}
    inner = {
        "_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "dwconv",
        "_bn1": "bn", "_se_reduce": "se_reduce", "_se_expand": "se_expand",
        "_project_conv": "project_conv", "_bn2": "project_bn",
    }
    converted, unknown = {}, []
    for key, value in arrays.items():
        value = np.asarray(value)
        if key.endswith("num_batches_tracked"):
            continue
        parts = key.split(".")
        layer = weight = None
        if parts[0] in top and len(parts) == 2:
            layer, weight = top[parts[0]], parts[1]
        elif parts[0] == "_fc" and len(parts) == 2:
            layer, weight = "head", parts[1]
        elif parts[0] == "_blocks" and len(parts) == 4 and parts[1].isdigit() and parts[2] in inner:
            index = int(parts[1])
            if index < len(names):
                layer, weight = f"{names[index]}_{inner[parts[2]]}", parts[3]
        if layer is None:
            unknown.append(key)
            continue
        if layer == "head":
            array = _f32(value.T) if weight == "weight" else _f32(value)
            weight = "kernel" if weight == "weight" else weight
        elif layer.endswith("bn"):
            array, weight = _f32(value), _BN.get(weight, weight)
        elif weight == "weight":
            array, weight = _conv(value, depthwise=layer.endswith("dwconv")), "kernel"
        else:
            array = _f32(value)
        converted[f"{layer}/{weight}"] = (key, array)
    return converted, unknown
