"""BiT variants: one row per published architecture and upstream dataset."""

import dataclasses

# Units per block for each depth (He et al. 2016).
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}

# Upstream dataset of each BiT flavour and the size of its head.
FLAVOURS = {
    "S": ("ILSVRC-2012", 1000),
    "M": ("ImageNet-21k", 21843),
    "L": ("JFT-300M", 18291),
}

# Parameters of each architecture without its head (timm's `resnetv2_<depth>x<width>_bit` counts);
# the head adds 2048 x width x classes + classes.
BACKBONE_PARAMS = {
    "R50x1": 23_500_352, "R50x3": 211_174_080, "R101x1": 42_492_480, "R101x3": 381_789_888,
    "R152x2": 232_238_208, "R152x4": 928_340_224,
}


@dataclasses.dataclass(frozen=True)
class BiTConfig:
    """One BiT variant: a ResNetV2 of `depth` layers and width factor `width`, pretrained
    on the upstream dataset of `flavour`."""

    flavour: str  # "S", "M" or "L"
    depth: int  # 50, 101 or 152
    width: int  # 1, 2, 3 or 4

    @property
    def architecture(self):
        return f"R{self.depth}x{self.width}"

    @property
    def published(self):
        """The paper's name: "BiT-M-R50x1"."""
        return f"BiT-{self.flavour}-{self.architecture}"

    @property
    def constructor_name(self):
        return self.published.replace("-", "_")

    @property
    def upstream(self):
        return FLAVOURS[self.flavour][0]

    @property
    def upstream_classes(self):
        return FLAVOURS[self.flavour][1]

    @property
    def num_params(self):
        """Parameters at the upstream head."""
        return BACKBONE_PARAMS[self.architecture] + (2048 * self.width + 1) * self.upstream_classes


# The variants: {constructor name: row}.
CONFIGS = {
    c.constructor_name: c
    for c in [
        BiTConfig(flavour, depth, width)
        for flavour in ("S", "M")
        for depth, width in ((50, 1), (50, 3), (101, 1), (101, 3), (152, 2), (152, 4))
    ] + [BiTConfig("L", 152, 4)]
}

# timm's names (`Family.timm_architectures`): (timm architecture, constructor, timm's default
# `arch.tag`), timm 1.0.x `resnetv2.py` `default_cfgs` (timm's `_bit` models are BiT-M's).
TIMM_ARCHITECTURES = (
    ("resnetv2_50x1_bit", "BiT_M_R50x1", "resnetv2_50x1_bit.goog_distilled_in1k"),
    ("resnetv2_50x3_bit", "BiT_M_R50x3", "resnetv2_50x3_bit.goog_in21k_ft_in1k"),
    ("resnetv2_101x1_bit", "BiT_M_R101x1", "resnetv2_101x1_bit.goog_in21k_ft_in1k"),
    ("resnetv2_101x3_bit", "BiT_M_R101x3", "resnetv2_101x3_bit.goog_in21k_ft_in1k"),
    ("resnetv2_152x2_bit", "BiT_M_R152x2", "resnetv2_152x2_bit.goog_teacher_in21k_ft_in1k"),
    ("resnetv2_152x4_bit", "BiT_M_R152x4", "resnetv2_152x4_bit.goog_in21k_ft_in1k"),
)
