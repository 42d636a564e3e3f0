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

import os
import re

import numpy as np

from keras_bigtransfer.models import registry
from keras_bigtransfer.models.efficientnet.config import constructor_name
from keras_bigtransfer.weights import assign
from keras_bigtransfer.weights.checkpoint import as_float32, put

# Arrays that exist in the published files but that our models do not hold as weights.
KERAS_IGNORED = re.compile(r"^(normalization|rescaling)(_\d+)?/")

_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def model_block_names(model):
    """A built model's block names in order (`block1a`, `block2a`, ...), read off its layers."""
    suffix = "_project_conv"
    return [layer.name[: -len(suffix)] for layer in model.layers if layer.name.endswith(suffix)]


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
        if layer.endswith("_dwconv2"):  # keras.applications' EfficientNetV2 name of `dwconv`
            layer = layer[:-1]
        put(converted, f"{layer}/{weight}", key, as_float32(array))
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
        put(converted, f"{layer}/{weight}", key, array)
    return converted, unknown


# tensorflow/tpu `efficientnet_model.py` variable names, inside the model scope
# (`efficientnet-b0/`, `efficientnet-lite0/`); the released checkpoints (AutoAugment,
# RandAugment, AdvProp, Noisy Student, Lite) all use them.
_TF_BN = r"(?:tpu_)?batch_normalization"
_TF_KEY = re.compile(
    r"^(?:[\w.-]+/)*?(?P<scope>stem|head|blocks_(?P<index>\d+))/(?P<layer>(?:se/)?[\w]+)/(?P<weight>\w+)$"
)
_TF_BN_SUFFIX = re.compile(rf"^{_TF_BN}(?:_(\d+))?$")
_EMA = "/ExponentialMovingAverage"


def convert_tf_checkpoint(arrays, names):
    """Original TF checkpoint variables -> ({our path: (key, array)}, unknown).

    Exponential-moving-average shadows, when present, replace the raw values (the
    released evaluations use them). Optimizer slots and `global_step` are ignored.
    """
    values = {}
    for key, value in arrays.items():
        if key.endswith(_EMA):
            values[key[: -len(_EMA)]] = (key, value)
        elif "/RMSProp" in key or "/Momentum" in key or key.split("/")[-1] == "global_step":
            continue
        else:
            values.setdefault(key, (key, value))
    expanded = {m.group("index") for k in values for m in [_TF_KEY.match(k)]
                if m and m.group("index") is not None and m.group("layer") == "conv2d_1"}
    converted, unknown = {}, []
    for name, (key, value) in values.items():
        path = _tf_path(name, names, expanded)
        if path is None:
            unknown.append(key)
        else:
            put(converted, path, key, as_float32(value))  # lazy: read when assigned (L2: 1.9 GB)
    return converted, unknown


def _tf_path(name, names, expanded):
    match = _TF_KEY.match(name)
    if match is None:
        return None
    scope, index, layer, weight = match.group("scope", "index", "layer", "weight")
    bn = _TF_BN_SUFFIX.match(layer)
    if weight == "depthwise_kernel":
        weight = "kernel"
    if scope in ("stem", "head"):
        target = {("stem", "conv2d"): "stem_conv", ("head", "conv2d"): "top_conv",
                  ("head", "dense"): "head"}.get((scope, layer))
        if bn and bn.group(1) is None:
            target = "stem_bn" if scope == "stem" else "top_bn"
        return f"{target}/{weight}" if target else None
    if int(index) >= len(names):
        return None
    if index in expanded:
        table = {"conv2d": "expand_conv", "depthwise_conv2d": "dwconv", "conv2d_1": "project_conv",
                 "se/conv2d": "se_reduce", "se/conv2d_1": "se_expand"}
        bns = {None: "expand_bn", "1": "bn", "2": "project_bn"}
    else:
        table = {"conv2d": "project_conv", "depthwise_conv2d": "dwconv",
                 "se/conv2d": "se_reduce", "se/conv2d_1": "se_expand"}
        bns = {None: "bn", "1": "project_bn"}
    target = bns.get(bn.group(1)) if bn else table.get(layer)
    return f"{names[int(index)]}_{target}/{weight}" if target else None


_TF_SCOPE = re.compile(r"(?:^|/)efficientnet-(b[0-7]|lite[0-4]|l2)/")


def tf_layout_variant(names):
    """'b0' ... 'lite4' when variable names follow the TF reference layout, else None."""
    variants = {m.group(1) for n in names for m in [_TF_SCOPE.search(n)] if m}
    return variants.pop() if len(variants) == 1 else None


def load_arrays(arrays, model, options):
    """The family's converter (`registry.Family.convert`) -> `registry.Conversion`: the
    reader's kind (`options.kind`) picks the key map."""
    names = model_block_names(model)
    if is_timm(arrays):  # the Hugging Face Hub copies, a local timm .safetensors or .pth
        return registry.Conversion(*from_timm(arrays))
    if options.kind == "torch":
        return registry.Conversion(*convert_pytorch(arrays, names))
    if options.kind == "tf":
        return registry.Conversion(*convert_tf_checkpoint(arrays, names))
    return registry.Conversion(*convert_keras_h5(arrays))


_HEAD_BIAS = re.compile(
    r"(?:^|/)(?:predictions|probs)/(?:.*/)?bias(?::0)?$|^_fc\.bias$|(?:^|/)head/dense/bias$|^classifier\.bias$")


def head_classes(arrays):
    """The class count of a checkpoint's head (Keras h5, PyTorch or TF names), or None."""
    for key, array in arrays.items():
        if _HEAD_BIAS.search(key) and len(array.shape) == 1:
            return int(array.shape[0])
    return None


def from_checkpoint(arrays, source):
    """A model with the TF reference's EfficientNet variable names (a TF Hub module's)."""
    variant = tf_layout_variant(arrays)
    if variant is None:
        raise ValueError(f"{source}: not an EfficientNet checkpoint in the TF reference layout.")
    head = next((a for k, a in arrays.items() if k.endswith("head/dense/kernel")), None)
    model = registry.get_variant(constructor_name(variant)).constructor(
        weights=None, include_top=head is not None,
        num_classes=int(head.shape[-1]) if head is not None else None,
        pooling=None if head is not None else "avg",
    )
    converted, unknown = convert_tf_checkpoint(arrays, model_block_names(model))
    return assign.assign(model, converted, unknown, source=os.path.basename(str(source)), stored=arrays)


# timm's EfficientNet names (`tf_efficientnet_*`, `tf_efficientnet_lite*`: the Hugging Face Hub
# copies `timm/tf_efficientnet_*`) -> our variable paths. timm indexes blocks per stage
# (`blocks.<stage>.<block>`), as our names do (`block<stage + 1><letter>`). The first stage
# (expand ratio 1) is timm's DepthwiseSeparableConv (conv_dw, bn1, se, conv_pw, bn2); the
# others are InvertedResidual (conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3).
# (pattern, target, transform): see `weights.keymap`.
_BN_WEIGHTS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
               ("running_var", "moving_variance"))
_FIRST = r"blocks\.(?P<s>0)\.(?P<j>\d+)\."
_LATER = r"blocks\.(?P<s>[1-9]\d*)\.(?P<j>\d+)\."
_OUR = "block{s!n}{j!l}_"


def _bn_rules(source, target):
    return tuple((source + r"\." + w, target + "/" + ours, None) for w, ours in _BN_WEIGHTS) + (
        (source + r"\.num_batches_tracked", None, None),)


def _se_rules(prefix):
    return (
        (prefix + r"se\.conv_reduce\.weight", _OUR + "se_reduce/kernel", "hwio"),
        (prefix + r"se\.conv_reduce\.bias", _OUR + "se_reduce/bias", None),
        (prefix + r"se\.conv_expand\.weight", _OUR + "se_expand/kernel", "hwio"),
        (prefix + r"se\.conv_expand\.bias", _OUR + "se_expand/bias", None),
    )


def _inverted_residual_rules(prefix):
    return (
        (prefix + r"conv_pw\.weight", _OUR + "expand_conv/kernel", "hwio"),
        *_bn_rules(prefix + "bn1", _OUR + "expand_bn"),
        (prefix + r"conv_dw\.weight", _OUR + "dwconv/kernel", "hwio_depthwise"),
        *_bn_rules(prefix + "bn2", _OUR + "bn"),
        *_se_rules(prefix),
        (prefix + r"conv_pwl\.weight", _OUR + "project_conv/kernel", "hwio"),
        *_bn_rules(prefix + "bn3", _OUR + "project_bn"),
    )


_TIMM_TOP = (
    (r"conv_stem\.weight", "stem_conv/kernel", "hwio"),
    *_bn_rules(r"bn1", "stem_bn"),
    (r"conv_head\.weight", "top_conv/kernel", "hwio"),
    *_bn_rules(r"bn2", "top_bn"),
    (r"classifier\.weight", "head/kernel", "transpose"),
    (r"classifier\.bias", "head/bias", None),
)
TIMM_KEYS = (
    *_TIMM_TOP,
    (_FIRST + r"conv_dw\.weight", _OUR + "dwconv/kernel", "hwio_depthwise"),
    *_bn_rules(_FIRST + "bn1", _OUR + "bn"),
    *_se_rules(_FIRST),
    (_FIRST + r"conv_pw\.weight", _OUR + "project_conv/kernel", "hwio"),
    *_bn_rules(_FIRST + "bn2", _OUR + "project_bn"),
    *_inverted_residual_rules(_LATER),
)
# timm's `tf_efficientnetv2_*`: stage 0 is ConvBnAct (conv, bn1: our fused block without
# expansion), stages 1-2 EdgeResidual (conv_exp, bn1, conv_pwl, bn2: fused-MBConv), the rest
# InvertedResidual, for every V2 variant (timm `_gen_efficientnetv2_*` arch_def: cn, er, er, ir...).
_V2_FUSED = r"blocks\.(?P<s>[12])\.(?P<j>\d+)\."
_V2_LATER = r"blocks\.(?P<s>[3-9]|[1-9]\d+)\.(?P<j>\d+)\."
TIMM_V2_KEYS = (
    *_TIMM_TOP,
    (_FIRST + r"conv\.weight", _OUR + "project_conv/kernel", "hwio"),
    *_bn_rules(_FIRST + "bn1", _OUR + "project_bn"),
    (_V2_FUSED + r"conv_exp\.weight", _OUR + "expand_conv/kernel", "hwio"),
    *_bn_rules(_V2_FUSED + "bn1", _OUR + "expand_bn"),
    (_V2_FUSED + r"conv_pwl\.weight", _OUR + "project_conv/kernel", "hwio"),
    *_bn_rules(_V2_FUSED + "bn2", _OUR + "project_bn"),
    *_inverted_residual_rules(_V2_LATER),
)


def is_timm(arrays):
    """Whether {key: array} is in timm's EfficientNet names."""
    return "conv_stem.weight" in arrays


def from_timm(arrays):
    """timm-named arrays -> ({our path: (key, array)}, unknown keys)."""
    from keras_bigtransfer.weights import keymap

    rules = TIMM_V2_KEYS if "blocks.0.0.conv.weight" in arrays else TIMM_KEYS
    renamed, unknown = keymap.rename(arrays, rules)
    return {path: (key, as_float32(array)) for path, (key, array) in renamed.items()}, unknown
