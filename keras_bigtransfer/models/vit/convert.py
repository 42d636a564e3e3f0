"""Published ViT checkpoints (.npz of google-research/vision_transformer and
big_vision) into `models.vit`.

Layouts accepted, as timm's reader does:
- the vision_transformer release: `embedding/kernel` (P, P, 3, D), `cls` (1, 1, D),
  `Transformer/posembed_input/pos_embedding` (1, 1 + N, D), blocks
  `Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1,
  LayerNorm_2, MlpBlock_3/Dense_{0,1}}`, `Transformer/encoder_norm`, optional
  `pre_logits`, `head`; hybrids add `conv_root`, `gn_root`, `block{b}/unit{u}/...`.
- a key prefix: `opt/target/` (pre-Linen optimizer checkpoints), `params/`,
  `params/img/` (big_vision).
- big_vision names: top-level `pos_embedding` covering the patches only (the
  class token gets no position embedding there: we give it a zero row), blocks
  `MultiHeadDotProductAttention_0`, `LayerNorm_1`, `MlpBlock_0`.
- scanned blocks `Transformer/encoderblock/...` with a leading layer axis.

Flax's attention kernels (D, H, Dh) / (H, Dh, D) are exactly the layouts of
`keras.layers.MultiHeadAttention`, so no array is reshaped except the position
table, which is resampled to the model's grid when it differs.
"""

import logging
import math
import os
import re

import numpy as np

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.layers.position_embedding import check_position_grid
from keras_bigtransfer.models import registry
from keras_bigtransfer.models.vit.model import VisionTransformer
from keras_bigtransfer.weights import assign
from keras_bigtransfer.weights.checkpoint import as_float32, put

log = logging.getLogger(__name__)

PREFIXES = ("", "opt/target/", "params/", "params/img/")
POSITION_LAYER = "Transformer_posembed_input"
_BIG_VISION_BLOCK_NAMES = {
    "MultiHeadDotProductAttention_0": "MultiHeadDotProductAttention_1",
    "LayerNorm_1": "LayerNorm_2",
    "MlpBlock_0": "MlpBlock_3",
}
_NORM = re.compile(r"(LayerNorm_\d+|encoder_norm|gn_root|gn\d+|gn_proj)$")
_ATTENTION = re.compile(r"^(.*MultiHeadDotProductAttention_\d+)/(query|key|value|out)/(kernel|bias)$")


def detect_prefix(arrays):
    for prefix in PREFIXES:
        if prefix + "embedding/kernel" in arrays:
            return prefix
    return None


def canonical_arrays(arrays):
    """{key in the vision_transformer release's names: array}, and the keys left over."""
    prefix = detect_prefix(arrays)
    if prefix is None:
        return {}, sorted(arrays)
    big_vision = (
        prefix.startswith("params/")
        or prefix + "pos_embedding" in arrays
        or prefix + "Transformer/encoderblock/LayerNorm_0/scale" in arrays
    )
    canonical, unknown = {}, []
    for key, array in arrays.items():
        if not key.startswith(prefix):
            unknown.append(key)
            continue
        name = key[len(prefix):]
        if name == "pos_embedding":
            name = "Transformer/posembed_input/pos_embedding"
        if big_vision:
            parts = name.split("/")
            name = "/".join(_BIG_VISION_BLOCK_NAMES.get(p, p) for p in parts)
        if name.startswith("Transformer/encoderblock/"):  # scanned: one array for all layers
            rest = name[len("Transformer/encoderblock/"):]
            for i, layer_array in enumerate(np.asarray(array)):
                put(canonical, f"Transformer/encoderblock_{i}/{rest}", key, layer_array)
            continue
        put(canonical, name, key, _flat_group_norm(name, array))
    return canonical, unknown


# flax < 0.3.6 saved GroupNorm scale/bias as (1, 1, 1, C) (google/flax#1721): the R50+ViT
# hybrids of that time (google-research/vision_transformer#156; its loader squeezes them since
# PR 157, `checkpoint._fix_groupnorm`; timm's `_n2p` flattens them too).
_GROUP_NORM_PARAM = re.compile(r"(?:^|/)gn(?:\d+|_root|_proj)/(?:scale|bias)$")


def _flat_group_norm(name, array):
    shape = tuple(np.shape(array))
    if len(shape) > 1 and all(d == 1 for d in shape[:-1]) and _GROUP_NORM_PARAM.search(name):
        return array.reshape((shape[-1],))
    return array


def model_path(name):
    """The Keras variable path of a canonical key."""
    if name == "cls":
        return "cls/tokens"
    match = _ATTENTION.match(name)
    if match:
        layer, part, weight = match.groups()
        part = "attention_output" if part == "out" else part
        return f"{layer.replace('/', '_')}/{part}/{weight}"
    layer, weight = name.rsplit("/", 1)
    if _NORM.search(layer):
        weight = {"scale": "gamma", "bias": "beta"}.get(weight, weight)
    return layer.replace("/", "_") + "/" + weight


def _grid_of(rows):
    side = math.isqrt(rows)
    return (side, side) if side * side == rows else None


def stored_grid(rows, grid_size, num_prefix_tokens, position_grid=None, source="checkpoint"):
    """(grid, prefix rows) of a stored position table of `rows` rows.

    The rule, in order: an explicit `position_grid` (rows, cols), with or without a
    class row; else the model's own grid `grid_size`, when the rows match it (with the
    model's prefix count first, then the other); else a square grid (without, then with
    a class row). A non-square grid that differs from the model's cannot be told from
    its row count alone (280 = 14 x 20 = 10 x 28), so it needs `position_grid`.
    `grid_size` None: no model grid to match (a model built from the checkpoint).
    """
    if position_grid is not None:
        grid = check_position_grid(position_grid)
        prefix = rows - grid[0] * grid[1]
        if prefix not in (0, 1):
            raise WeightsError(
                f"{source}: position_grid {grid[0]}x{grid[1]} has {grid[0] * grid[1]} cells but the "
                f"stored position embedding has {rows} rows (expected the cells, plus 1 with a class row)."
            )
        return grid, prefix
    for prefix in (num_prefix_tokens, 1 - num_prefix_tokens) if grid_size is not None else ():
        if rows - prefix == grid_size[0] * grid_size[1]:
            return tuple(grid_size), prefix
    for prefix in (0, 1):
        grid = _grid_of(rows - prefix)
        if grid is not None:
            return grid, prefix
    model = f"the model's {grid_size[0]}x{grid_size[1]} grid nor " if grid_size is not None else ""
    raise WeightsError(
        f"{source}: position embedding of {rows} rows is neither {model}a square grid (with or "
        "without a class row); pass position_grid=(rows, cols), the grid it was trained at "
        "(e.g. (14, 20) for 224x320 images at patch 16)."
    )


def fit_position_table(table, layer, source="checkpoint", position_grid=None):
    """A published (1, [1 +] N, D) table made to fit `layer` (a PositionEmbedding).

    The stored grid is found by `stored_grid`'s rule and resampled (square or not) to
    the layer's grid when they differ.
    """
    from keras_bigtransfer.layers.position_embedding import resample_table

    table = np.asarray(table, dtype=np.float32).reshape((1, -1, table.shape[-1]))
    wanted = layer.num_prefix_tokens
    grid, prefix = stored_grid(table.shape[1], layer.grid_size, wanted, position_grid, source)
    if prefix < wanted:  # big_vision: the class token had no position embedding
        table = np.concatenate([np.zeros_like(table[:, :1]), table], axis=1)
    elif prefix > wanted:
        table = table[:, 1:]
    if grid != layer.grid_size:
        log.info(
            "%s: position embedding resampled from a %dx%d to a %dx%d grid (%s).",
            source, *grid, *layer.grid_size, layer.interpolation,
        )
        table = np.asarray(resample_table(table, grid, layer.grid_size, wanted, layer.interpolation))
    return table


def convert(arrays, model, source="checkpoint", position_grid=None):
    """Map published ViT arrays to `model`.

    `position_grid`: (rows, cols) of the stored position grid, when it is not square
    and differs from the model's (see `stored_grid`).

    Returns ({model path: (key, array)}, unknown keys, paths the checkpoint may lack).
    """
    canonical, unknown = canonical_arrays(arrays)
    layer_names = {layer.name for layer in model.layers}
    converted = {}
    for name, (key, array) in canonical.items():
        if name.startswith("pre_logits/") and "pre_logits" not in layer_names:
            # Official fine-tuning drops the i21k representation layer; so do we unless asked.
            log.info("%s: %s dropped (the model has no pre_logits layer).", source, key)
            continue
        if "/" not in name and name != "cls":  # no layer/weight name: not one of ours
            unknown.append(key)
            continue
        put(converted, model_path(name), key, as_float32(array))

    position_key = POSITION_LAYER + "/pos_embedding"
    if position_key in converted and POSITION_LAYER in layer_names:
        key, table = converted[position_key]
        converted[position_key] = (
            key, fit_position_table(table, model.get_layer(POSITION_LAYER), source, position_grid)
        )

    head = converted.get("head/kernel")
    if head is not None and not np.any(np.asarray(head[1])):
        log.warning(
            "%s: the published head is all zeros (the ImageNet-21k release zeroed it on purpose); "
            "use the model as a backbone or fine-tune a new head.", source,
        )
    optional = ["registers/tokens"] if "registers" in layer_names else []
    return converted, unknown, optional


def load_arrays(arrays, model, options):
    """The family's converter (`registry.Family.convert`) -> `registry.Conversion`: every
    published layout is an .npz; timm's names (the Hugging Face Hub copies, a local
    .safetensors) are renamed to them first. `options.position_grid`: (rows, cols) of a
    non-square stored position grid (see `stored_grid`)."""
    arrays, unknown = from_timm(arrays)
    converted, more, optional = convert(arrays, model, source=options.source, position_grid=options.position_grid)
    return registry.Conversion(fit_attention(converted, model), unknown + more, optional)


def detect(arrays):
    """Whether {key: array} is a published ViT checkpoint (any accepted layout, timm's names too)."""
    return is_timm(arrays) or detect_prefix(arrays) is not None


def head_classes(arrays):
    """The class count of the checkpoint's head, or None without one."""
    if is_timm(arrays):
        head = arrays.get("head.bias")
        return int(head.shape[-1]) if head is not None else None
    prefix = detect_prefix(arrays)
    head = arrays.get((prefix or "") + "head/bias")
    return int(head.shape[-1]) if head is not None else None


def from_checkpoint(arrays, options):
    """A ViT (or hybrid) built to fit published .npz weights: every size read off the arrays.

    `options`: a `registry.ConvertOptions`. A square stored position grid gives a model of any
    input size pretrained at that grid; a non-square one needs `options.position_grid`
    (rows, cols) and gives a model built for images of exactly that grid.
    """
    source, position_grid = options.source, options.position_grid
    arrays, timm_unknown = from_timm(arrays)  # timm's names (a .safetensors/.pth) first
    canonical, _ = canonical_arrays(arrays)
    shape = {name: np.shape(array) for name, (_, array) in canonical.items()}
    embedding = shape["embedding/kernel"]
    blocks = {name.split("/")[1] for name in shape if name.startswith("Transformer/encoderblock_")}
    units = {}
    for name in shape:
        if name.startswith("block") and "/unit" in name:
            block, unit = name.split("/")[:2]
            units.setdefault(int(block[5:]), set()).add(unit)
    resnet_layers = tuple(len(units[b]) for b in sorted(units)) or None
    attention = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/"
    head = shape.get("head/kernel")
    has_class_token = "cls" in shape
    rows = shape["Transformer/posembed_input/pos_embedding"][-2]
    stride = embedding[0] * (2 ** (len(resnet_layers) + 1) if resnet_layers else 1)
    grid, _ = stored_grid(rows, None, int(has_class_token), position_grid,
                          os.path.basename(str(source)))
    size = {"pretrained_resolution": grid[0] * stride}
    if grid[0] != grid[1]:
        size["input_shape"] = (grid[0] * stride, grid[1] * stride, 3)
    model = VisionTransformer(
        patch_size=embedding[0], hidden_size=embedding[-1],
        mlp_size=shape["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"][-1],
        num_heads=_heads(shape[attention + "query/kernel"]), num_layers=len(blocks),
        resnet_layers=resnet_layers, include_top=head is not None,
        num_classes=head[-1] if head is not None else 1, pooling=None if head is not None else "avg",
        classifier="token" if has_class_token else "gap",
        representation_size=shape["pre_logits/kernel"][-1] if "pre_logits/kernel" in shape else None,
        name="vit", **size,
    )
    name = os.path.basename(str(source))
    converted, unknown, optional = convert(arrays, model, source=name, position_grid=position_grid)
    converted = fit_attention(converted, model)
    return assign.assign(model, converted, timm_unknown + unknown, source=name, optional=optional, stored=arrays)


# Heads per width of the published ViTs (vit_jax configs: Ti, S, B, L, H). timm's fused qkv
# kernel (D, D) does not say how many heads it has; the published (D, H, D/H) one does.
_HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


def _heads(query_kernel_shape):
    if len(query_kernel_shape) == 3:
        return query_kernel_shape[1]
    width = query_kernel_shape[0]
    return _HEADS_BY_WIDTH.get(width, max(1, width // 64))


# timm's VisionTransformer names (`vit_*`, the R50 hybrids `vit_base_r50_s16_*`: the Hugging
# Face Hub copies `timm/vit_*`) -> the vision_transformer release's names. timm's fused
# `attn.qkv` becomes `.../qkv/{kernel,bias}`, split by `split_qkv`; attention kernels are then
# shaped to the model's heads by `fit_attention`. (pattern, target, transform): `weights.keymap`.
_BLOCK = r"blocks\.(?P<i>\d+)\."
_ENC = "Transformer/encoderblock_{i}/"
_RES = r"patch_embed\.backbone\.stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\."
TIMM_KEYS = (
    (r"cls_token", "cls", None),
    (r"pos_embed", "Transformer/posembed_input/pos_embedding", None),
    (r"patch_embed\.proj\.weight", "embedding/kernel", "hwio"),
    (r"patch_embed\.proj\.bias", "embedding/bias", None),
    (_BLOCK + r"norm1\.weight", _ENC + "LayerNorm_0/scale", None),
    (_BLOCK + r"norm1\.bias", _ENC + "LayerNorm_0/bias", None),
    (_BLOCK + r"norm2\.weight", _ENC + "LayerNorm_2/scale", None),
    (_BLOCK + r"norm2\.bias", _ENC + "LayerNorm_2/bias", None),
    (_BLOCK + r"attn\.qkv\.weight", _ENC + "MultiHeadDotProductAttention_1/qkv/kernel", "transpose"),
    (_BLOCK + r"attn\.qkv\.bias", _ENC + "MultiHeadDotProductAttention_1/qkv/bias", None),
    (_BLOCK + r"attn\.proj\.weight", _ENC + "MultiHeadDotProductAttention_1/out/kernel", "transpose"),
    (_BLOCK + r"attn\.proj\.bias", _ENC + "MultiHeadDotProductAttention_1/out/bias", None),
    (_BLOCK + r"mlp\.fc1\.weight", _ENC + "MlpBlock_3/Dense_0/kernel", "transpose"),
    (_BLOCK + r"mlp\.fc1\.bias", _ENC + "MlpBlock_3/Dense_0/bias", None),
    (_BLOCK + r"mlp\.fc2\.weight", _ENC + "MlpBlock_3/Dense_1/kernel", "transpose"),
    (_BLOCK + r"mlp\.fc2\.bias", _ENC + "MlpBlock_3/Dense_1/bias", None),
    (r"norm\.weight", "Transformer/encoder_norm/scale", None),
    (r"norm\.bias", "Transformer/encoder_norm/bias", None),
    (r"head\.weight", "head/kernel", "transpose"),
    (r"head\.bias", "head/bias", None),
    # The hybrid's ResNet (timm ResNetV2, preact=False): vit_jax's names.
    (r"patch_embed\.backbone\.stem\.conv\.weight", "conv_root/kernel", "hwio"),
    (r"patch_embed\.backbone\.stem\.norm\.weight", "gn_root/scale", None),
    (r"patch_embed\.backbone\.stem\.norm\.bias", "gn_root/bias", None),
    (_RES + r"conv(?P<r>[123])\.weight", "block{s!n}/unit{b!n}/conv{r}/kernel", "hwio"),
    (_RES + r"norm(?P<r>[123])\.weight", "block{s!n}/unit{b!n}/gn{r}/scale", None),
    (_RES + r"norm(?P<r>[123])\.bias", "block{s!n}/unit{b!n}/gn{r}/bias", None),
    (_RES + r"downsample\.conv\.weight", "block{s!n}/unit{b!n}/conv_proj/kernel", "hwio"),
    (_RES + r"downsample\.norm\.weight", "block{s!n}/unit{b!n}/gn_proj/scale", None),
    (_RES + r"downsample\.norm\.bias", "block{s!n}/unit{b!n}/gn_proj/bias", None),
)


def is_timm(arrays):
    """Whether {key: array} is in timm's VisionTransformer names."""
    return "patch_embed.proj.weight" in arrays


def _lazy_slice(array, index, axis, parts=3):
    from keras_bigtransfer.weights.lazy import LazyArray

    shape = list(array.shape)
    size = shape[axis] // parts
    shape[axis] = size
    take = (slice(None),) * (axis % len(array.shape)) + (slice(index * size, (index + 1) * size),)
    return LazyArray(lambda: np.ascontiguousarray(np.asarray(array)[take]), shape, array.dtype)


def split_qkv(arrays):
    """`.../qkv/kernel` (D, 3D) and `.../qkv/bias` (3D,) -> query, key and value (lazily)."""
    out = {}
    for key, array in arrays.items():
        scope, _, weight = key.rpartition("/qkv/")
        if not _:
            out[key] = array
            continue
        for index, part in enumerate(("query", "key", "value")):
            out[f"{scope}/{part}/{weight}"] = _lazy_slice(array, index, axis=-1)
    return out


def from_timm(arrays):
    """timm-named arrays -> ({published key: array}, timm keys no rule knows); others unchanged."""
    if not is_timm(arrays):
        return arrays, []
    from keras_bigtransfer.weights import keymap

    renamed, unknown = keymap.rename(arrays, TIMM_KEYS)
    return split_qkv({key: array for key, (_, array) in renamed.items()}), unknown


def fit_attention(converted, model):
    """Attention kernels and biases given flat ((D, D), (D,): timm's) shaped to the model's
    heads ((D, H, Dh), (H, Dh), (H, Dh, D)); the published layouts already are."""
    shapes = {v.path: tuple(v.shape) for v in model.weights}
    out = {}
    for path, (key, array) in converted.items():
        want = shapes.get(path)
        if ("MultiHeadDotProductAttention" in path and want is not None and tuple(array.shape) != want
                and int(np.prod(array.shape)) == int(np.prod(want))):
            array = array.reshape(want)
        out[path] = (key, array)
    return out
