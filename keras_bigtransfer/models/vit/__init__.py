"""Vision Transformer (ViT) and the R50 hybrid: the family's registration and its constructors.

`config.py` holds the variants (`ViTConfig` rows), `model.py` the builder, `convert.py`
the published .npz layouts (vision_transformer, big_vision, scanned, prefixed).
"""

from keras_bigtransfer.models import factory, registry
from keras_bigtransfer.models.vit import convert, features
from keras_bigtransfer.models.vit.config import CONFIGS, TIMM_ARCHITECTURES, ViTConfig
from keras_bigtransfer.models.vit.model import (
    LAYOUT_RULES,
    VisionTransformer,
    build,
    encoder_block,
    hybrid_resnet,
    hybrid_residual_unit,
    owns,
)
from keras_bigtransfer.weights import catalogue

FAMILY = registry.Family(
    name="vit",
    build=build,
    convert=convert.load_arrays,
    head_classes=convert.head_classes,
    owns=owns,
    detect=convert.detect,
    from_checkpoint=convert.from_checkpoint,
    convert_options=("position_grid",),
    features=features.FEATURES,
    layout_rules=LAYOUT_RULES,
    token_pooling=(("token", "the class token"),),
    timm_options=(("drop_rate", "head_dropout_rate"), ("drop_path_rate", "stochastic_depth_rate")),
    timm_builds=(("gelu_approximate", False),),  # timm's ViT uses the exact GELU
    timm_architectures=TIMM_ARCHITECTURES,
)

OPTIONS = (
    ("num_register_tokens", 0),
    ("pos_embed_interpolation", "bilinear"),
    ("representation_size", None),
    ("pretrained_resolution", None),
    ("dropout_rate", 0.0),
    ("attention_dropout_rate", 0.0),
    ("stochastic_depth_rate", 0.0),
    ("gelu_approximate", True),
)

OPTIONS_DOC = """        num_register_tokens: learned register tokens (0: none). Published ViT
            checkpoints have none; registers then keep their initialization.
        pos_embed_interpolation: "bilinear" (the official loader) or "bicubic" (timm's).
        representation_size: keep the checkpoint's tanh pre_logits layer of this
            width (i21k checkpoints); None drops it, as the official fine-tuning does.
        pretrained_resolution: the side the stored position embedding covers for a
            variable-size model; default the weights' resolution (224 without weights).
        dropout_rate, attention_dropout_rate, stochastic_depth_rate: regularization.
        gelu_approximate: tanh GELU (official JAX) or exact (timm).
"""


def _variant(config):
    """The registry entry of one configuration row (its constructor's defaults and docstring)."""
    entry = catalogue.find(config.default_weights) if config.default_weights else None
    backbone = (
        "a ResNet-50 stem with stages (3, 4, 9) (the official hybrid) feeding 1x1 patches to ViT-B"
        if config.resnet_layers else f"{config.patch_size}x{config.patch_size} patches"
    )
    return registry.Variant(
        name=config.constructor_name,
        config=config,
        architecture=config.constructor_name,
        default_weights=config.default_weights,
        num_classes=1000,
        native_resolution=entry.resolution if entry else 224,
        input_multiple=config.stride,
        reference=f"timm:{config.timm_name}" if config.timm_name else None,
        num_params=config.num_params,
        default_name=config.constructor_name.lower(),
        options=OPTIONS,
        summary=(f"{config.published}: width {config.hidden_size}, {config.num_layers} layers, "
                 f"{config.num_heads} heads, MLP {config.mlp_size}; {backbone}."),
        options_doc=OPTIONS_DOC,
        named_weights=_named_weights(config, entry),
    )


def _named_weights(config, default):
    """"imagenet": the default weights where they are an ILSVRC-2012 classifier; "imagenet21k":
    AugReg's i21k checkpoint where published, else the original release's."""
    named = []
    if default is not None and default.num_classes == 1000:
        named.append(("imagenet", default.tag))
    stem = config.constructor_name.lower()
    for tag in (f"{stem}_augreg_in21k", f"{stem}_imagenet21k"):
        if catalogue.find(tag) is not None:
            named.append(("imagenet21k", tag))
            break
    return tuple(named)


# The public constructors, in the order of CONFIGS (the harness checks each name's variant).
(ViT_Ti16, ViT_S16, ViT_S32, ViT_B8, ViT_B16, ViT_B32, ViT_L16, ViT_L32, ViT_H14, ViT_R50_B16) = factory.register(
    FAMILY, map(_variant, CONFIGS.values()))

__all__ = list(CONFIGS) + [
    "CONFIGS", "ViTConfig", "VisionTransformer", "encoder_block", "hybrid_resnet", "hybrid_residual_unit",
]
