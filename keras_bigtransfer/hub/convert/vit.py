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
import re

import numpy as np

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.hub.checkpoint import as_float32, put

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
        put(canonical, name, key, array)
    return canonical, unknown


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
        grid = tuple(int(s) for s in position_grid)
        if len(grid) != 2 or min(grid) < 1:
            raise WeightsError(f"{source}: position_grid must be (rows, cols) of positive integers; "
                               f"got {position_grid!r}.")
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
