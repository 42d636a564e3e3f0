"""Multi-scale feature maps from every family: backbones for detection and segmentation.

Every constructor and `create_model` take timm's `features_only=True` and `out_indices=`:
the model then returns a list of feature maps, one per selected stage, NHWC (NCHW for a model
built under `keras.config.image_data_format() == "channels_first"`), and takes
images as every model of the package does (float32 RGB in [0, 1], uint8 converted):

    backbone = keras_bigtransfer.BiT_S_R50x1(features_only=True)       # 5 maps, strides 2..32
    backbone.feature_info.channels()     # [64, 256, 512, 1024, 2048]
    backbone.feature_info.reduction()    # [2, 4, 8, 16, 32]
    c2, c3, c4, c5 = keras_bigtransfer.BiT_S_R50x1(features_only=True, out_indices=(1, 2, 3, 4))(images)
    keras_bigtransfer.create_model("vit_b16", features_only=True, out_indices=(3, 7, 11))

The stages are timm's (`feature_info` of the same model there, same order and strides):
- BiT (timm `resnetv2`): the root conv (stride 2, before the max-pool) and the output of each
  of the four blocks (strides 4, 8, 16, 32). `feature_norm=True` applies the final
  GroupNorm+ReLU to the last block's map, as timm's `forward_intermediates(norm=True)`.
- EfficientNet (timm `efficientnet`, the TF reference's `reduction_1` ... `reduction_5`):
  the last block before each drop in resolution, and the last block (strides 2 ... 32).
- ViT and the R50 hybrid (timm `forward_intermediates`): the output of selected encoder
  blocks, the patch tokens (class token and registers dropped) as (h, w, D) maps at the
  model's stride, at any resolution the model accepts; `feature_norm=True` applies the
  final LayerNorm to each. Default: the last three blocks (timm's default).

`out_indices` as timm: None the family's default (every stage; ViT: the last three blocks),
an int n the last n stages, a sequence of indices (negative ones count from the end).
`output_dict=True` returns a dict instead, keyed as keras-hub's `pyramid_outputs`: "P1" ...
"P5" for strides 2 ... 32 (convolutional families), "block0" ... for ViT blocks. Either way
the model carries `pyramid_outputs` ({key: symbolic map}) and `feature_info` (a
`FeatureInfo`: one dict per output with timm's keys `num_chs`, `reduction`, `module`, plus
`index`, `name` (the key) and `layer` (our layer whose output, or whose input tokens, it is)).

Pretrained weights load as for the classifier (the head is dropped); the maps share the
backbone's variables, so a head on top fine-tunes as any Keras model does.

Each family declares its stages on its `registry.Family` (`features`: a `registry.Features`
record: `stages(config)`, `maps(model, stages, is_last, feature_norm)`, `default_out_indices`,
`reductions`), kept next to its configuration in `models/<family>/features.py`.
"""

import collections.abc
import dataclasses
import numbers

import keras

from keras_bigtransfer.models import base


@dataclasses.dataclass(frozen=True)
class Stage:
    """One feature map a family offers.

    Attributes:
        layer: the layer (of the full backbone) whose output is the map, or (ViT) whose
            token output is reshaped into it.
        num_chs: channels.
        reduction: the stride: input side / map side (rounded up).
        name: the key of the map in a dict ("P2"; "block11").
        module: the same map's module in timm ("stages.0"), for the reader.
    """

    layer: str
    num_chs: int
    reduction: int
    name: str
    module: str


class FeatureInfo(collections.abc.Sequence):
    """What a `features_only` model returns, one dict per output, in order (timm's `feature_info`).

    Each dict: `index` (the stage's index among the family's stages), `num_chs`, `reduction`,
    `module` (timm's), `name` (the dict / `pyramid_outputs` key), `layer` (ours).
    """

    def __init__(self, dicts=()):
        self._dicts = tuple(dict(d) for d in dicts)

    def __getitem__(self, i):
        return self._dicts[i]

    def __len__(self):
        return len(self._dicts)

    def __eq__(self, other):
        return list(self) == list(other)

    def __repr__(self):
        return f"FeatureInfo({list(self._dicts)!r})"

    def channels(self):
        return [f["num_chs"] for f in self]

    def reduction(self):
        return [f["reduction"] for f in self]

    def module_name(self):
        return [f["module"] for f in self]

    def names(self):
        return [f["name"] for f in self]

    def layer_names(self):
        return [f["layer"] for f in self]

    def get_dicts(self):
        return [dict(f) for f in self]


def family_features(variant):
    """The `registry.Features` of a variant's family; ValueError when it offers none."""
    from keras_bigtransfer.models import registry

    family = registry.family_of(variant)
    if family.features is None:
        raise ValueError(f"model family {family.name!r} offers no feature maps (features_only).")
    return family.features


def take_indices(num_stages, out_indices):
    """timm's `feature_take_indices`: None all, int n the last n, a sequence as given (negatives from the end)."""
    if out_indices is None:
        out_indices = num_stages
    if isinstance(out_indices, numbers.Integral) and not isinstance(out_indices, bool):  # NumPy ints too
        out_indices = int(out_indices)
        if not 0 < out_indices <= num_stages:
            raise ValueError(f"out_indices={out_indices} (the last n stages) must be in 1..{num_stages}.")
        return list(range(num_stages - out_indices, num_stages))
    if isinstance(out_indices, (bool, str, bytes)) or not isinstance(out_indices, collections.abc.Iterable):
        raise TypeError(f"out_indices must be an int (the last n stages) or a sequence of ints; "
                        f"got {out_indices!r}.")
    out_indices = tuple(out_indices)
    taken = []
    for i in out_indices:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"out_indices={out_indices}: each index must be an int; got {i!r}.")
        if not -num_stages <= i < num_stages:
            raise ValueError(
                f"out_indices={out_indices}: each index must be an int in "
                f"{-num_stages}..{num_stages - 1} (this model has {num_stages} stages)."
            )
        taken.append(int(i) % num_stages)
    if not taken:
        raise ValueError("out_indices selects no stage.")
    return taken


def _variant(name_or_variant):
    if isinstance(name_or_variant, str):
        from keras_bigtransfer.models import registry

        return registry.get_variant(name_or_variant)
    return name_or_variant


def feature_info(name_or_variant, out_indices=None):
    """The `FeatureInfo` a `features_only` model of a variant would have, without building it.

    Args:
        name_or_variant: a constructor name in any case ("BiT_S_R50x1") or a `registry.Variant`.
        out_indices: as the constructors' (None: the family's default).
    """
    variant = _variant(name_or_variant)
    spec = family_features(variant)
    stages = spec.stages(variant.config)
    default = spec.default_out_indices
    indices = take_indices(len(stages), default if out_indices is None else out_indices)
    return FeatureInfo(
        dict(index=i, num_chs=stages[i].num_chs, reduction=stages[i].reduction,
             module=stages[i].module, name=stages[i].name, layer=stages[i].layer)
        for i in indices
    )


def endpoint(model, layer):
    """The symbolic output of a layer of `model`; a clear error when the layout changed."""
    try:
        return model.get_layer(layer).output
    except ValueError:
        raise ValueError(f"{model.name}: no layer {layer!r}; the family's feature stages no longer "
                         "match its builder.") from None


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class FeatureModel(base.ImageModel):
    """An `ImageModel` returning feature maps; `feature_info` and `pyramid_outputs` describe them.

    It always returns a list (or the dict of `output_dict=True`), one map selected included.
    """

    def call(self, inputs, training=None, mask=None, **kwargs):
        outputs = super().call(inputs, training=training, mask=mask, **kwargs)
        if isinstance(self._outputs_struct, list) and not isinstance(outputs, (list, tuple, dict)):
            return [outputs]  # Keras unpacks a one-item list
        return outputs

    def get_config(self):
        config = super().get_config()
        config["feature_info"] = [dict(f) for f in getattr(self, "feature_info", [])]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        info = config.pop("feature_info", [])
        model = super().from_config(config, custom_objects=custom_objects)
        _describe(model, FeatureInfo(info))
        return model


def _describe(model, info):
    # Plain attributes: Keras would track a list or dict (as TrackedList / TrackedDict).
    object.__setattr__(model, "feature_info", info)
    outputs = model.output
    if isinstance(outputs, dict):
        pyramid = {n: outputs[n] for n in info.names()}
    else:
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        pyramid = {f["name"]: t for f, t in zip(info, outputs)}
    object.__setattr__(model, "pyramid_outputs", pyramid)
    return model


def features_model(backbone, variant, *, out_indices=None, feature_norm=False, output_dict=False, name=None):
    """The multi-scale feature extractor of a built backbone (shares its variables).

    Args:
        backbone: the variant's model, built with include_top=False, pooling=None.
        variant: its `registry.Variant` (or constructor name).
        out_indices: the stages (timm's meaning; None: the family's default).
        feature_norm: the final norm on the maps (BiT: the last one; ViT: each).
        output_dict: return a dict keyed by `feature_info` names instead of a list.
        name: the model's name (default the backbone's).
    """
    variant = _variant(variant)
    spec = family_features(variant)
    stages = spec.stages(variant.config)
    info = feature_info(variant, out_indices)
    selected = [stages[f["index"]] for f in info]
    is_last = [f["index"] == len(stages) - 1 for f in info]
    maps = spec.maps(backbone, selected, is_last, feature_norm=feature_norm)
    axis = base.channel_axis(backbone)  # the maps are in the backbone's data format
    for f, tensor in zip(info, maps):
        if tensor.shape[axis] != f["num_chs"]:
            raise ValueError(f"{backbone.name}: the map at {f['layer']} has {tensor.shape[axis]} channels, "
                             f"its stage says {f['num_chs']}.")
    outputs = {f["name"]: t for f, t in zip(info, maps)} if output_dict else list(maps)
    if len(set(info.names())) != len(info) and output_dict:
        raise ValueError(f"output_dict=True needs distinct stages; out_indices={out_indices!r} repeats one.")
    model = FeatureModel(backbone.input, outputs, name=name or backbone.name)
    return _describe(model, info)


BEGIN, END = "<!-- features table: begin -->", "<!-- features table: end -->"


def markdown_tables():
    """The docs' stride/channel tables of every registered variant, read off `feature_info`."""
    from keras_bigtransfer.models import registry

    cnn = ["| Variant | " + " | ".join(f"`{i}`" for i in range(5)) + " |", "|---" * 6 + "|"]
    vit = ["| Variant | blocks (`out_indices` 0 ... n-1) | channels | stride | default `out_indices` |",
           "|---|---|---|---|---|"]
    for variant in registry.variants():
        spec = family_features(variant)
        info = feature_info(variant, len(spec.stages(variant.config)))
        if spec.reductions is None:  # one map per encoder block, all at the model's stride
            default = [f["index"] for f in feature_info(variant)]
            vit.append(f"| `{variant.name}` | {len(info)} | {info[0]['num_chs']} | {info[0]['reduction']} "
                       f"| {tuple(default)} |")
        else:
            cells = [f"{f['name']}: {f['num_chs']} @ /{f['reduction']}" for f in info]
            cnn.append(f"| `{variant.name}` | " + " | ".join(cells) + " |")
    return ("Convolutional families (default `out_indices`: all five), each cell *key: channels @ /stride*:\n\n"
            + "\n".join(cnn) + "\n\nViT and the hybrid (one map per encoder block):\n\n" + "\n".join(vit) + "\n")


def write_docs(path):
    """Replace the text between the table markers of `path` (docs/backbones.md) with `markdown_tables()`."""
    with open(path) as f:
        text = f.read()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + markdown_tables() + END + tail)


__all__ = ["FeatureInfo", "FeatureModel", "Stage", "feature_info", "features_model", "take_indices"]

if __name__ == "__main__":  # python -m keras_bigtransfer.models.features docs/backbones.md
    import sys

    write_docs(sys.argv[1])
