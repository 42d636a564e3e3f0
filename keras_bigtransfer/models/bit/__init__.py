"""Big Transfer (BiT): the family's registration and its constructors.

`config.py` holds the variants (`BiTConfig` rows), `model.py` the ResNetV2 builder,
`convert.py` the published formats (.npz, TF2 .h5, TF Hub SavedModel variables).
"""

from keras_bigtransfer.models import factory, registry
from keras_bigtransfer.models.bit import convert, features
from keras_bigtransfer.models.bit.config import CONFIGS, DEPTHS, FLAVOURS, TIMM_ARCHITECTURES, BiTConfig
from keras_bigtransfer.models.bit.model import LAYOUT_RULES, ResNetV2, bottleneck_unit, build, owns
from keras_bigtransfer.weights import catalogue

FAMILY = registry.Family(
    name="bit",
    build=build,
    convert=convert.load_arrays,
    head_classes=convert.head_classes,
    owns=owns,
    detect=convert.detect,
    from_checkpoint=convert.from_checkpoint,
    identify=convert.identify,
    features=features.FEATURES,
    layout_rules=LAYOUT_RULES,
    to_published=convert.save_npz,
    export_formats=(".npz",),
    timm_options=(("drop_rate", "dropout_rate"), ("drop_path_rate", "drop_path_rate")),
    timm_architectures=TIMM_ARCHITECTURES,
)


def _variant(config):
    """The registry entry of one configuration row (its constructor's defaults and docstring)."""
    default_name = config.published.lower().replace("-", "_")
    released = config.flavour != "L"
    default_weights = default_name if released else None
    entry = catalogue.find(default_weights) if default_weights else None
    return registry.Variant(
        name=config.constructor_name,
        config=config,
        architecture=config.architecture,
        default_weights=default_weights,
        num_classes=config.upstream_classes,
        native_resolution=entry.resolution if entry else 224,
        input_multiple=1,
        reference=f"timm:resnetv2_{config.depth}x{config.width}_bit",
        num_params=config.num_params,
        default_name=default_name,
        weights_unavailable=None if released else (
            f"{config.published} weights were never released (BiT-L was trained on the "
            "private JFT-300M dataset); build the architecture with weights=None, "
            f"or use BiT-M-{config.architecture} (ImageNet-21k) weights."
        ),
        # BiT-S: trained on ILSVRC-2012; BiT-M: ImageNet-21k, and its ILSVRC-2012 fine-tune.
        named_weights=() if not released else (
            (("imagenet", default_name),) if config.flavour == "S" else
            (("imagenet", default_name + "_ilsvrc2012"), ("imagenet21k", default_name))),
        summary=(f"{config.published}: ResNet-{config.depth} with width x{config.width}, pretrained on "
                 f"{config.upstream} ({config.upstream_classes} classes)."),
    )


# The public constructors, in the order of CONFIGS (the harness checks each name's variant).
(BiT_S_R50x1, BiT_S_R50x3, BiT_S_R101x1, BiT_S_R101x3, BiT_S_R152x2, BiT_S_R152x4, BiT_M_R50x1,
 BiT_M_R50x3, BiT_M_R101x1, BiT_M_R101x3, BiT_M_R152x2, BiT_M_R152x4, BiT_L_R152x4) = factory.register(
    FAMILY, map(_variant, CONFIGS.values()))

__all__ = list(CONFIGS) + [
    "BiTConfig", "CONFIGS", "DEPTHS", "FLAVOURS", "ResNetV2", "bottleneck_unit",
]
