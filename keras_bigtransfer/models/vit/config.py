"""ViT variants: the sizes of vit_jax/configs/models.py, and the R50 hybrid."""

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """One ViT variant (or, with `resnet_layers`, a ResNet+ViT hybrid)."""

    variant: str  # "B16", "R50_B16"
    patch_size: int  # 1 for the hybrid: its ResNet stem makes the patches
    hidden_size: int
    mlp_size: int
    num_heads: int
    num_layers: int
    resnet_layers: Optional[tuple] = None  # the hybrid stem's units per stage
    default_weights: Optional[str] = None  # ImageNet-21k pretrained, ImageNet fine-tuned where published
    timm_name: Optional[str] = None  # the same architecture in timm
    num_params: Optional[int] = None  # at 1000 classes (timm's count)

    @property
    def constructor_name(self):
        return f"ViT_{self.variant}"

    @property
    def published(self):
        """The paper's name: "ViT-B_16", "R50+ViT-B_16"."""
        if self.resnet_layers:
            return "R50+ViT-B_16"
        return f"ViT-{self.variant[:-len(str(self.patch_size))]}_{self.patch_size}"

    @property
    def stride(self):
        """Input pixels per token side: the patch size, times the hybrid stem's stride."""
        return self.patch_size * (2 ** (len(self.resnet_layers) + 1) if self.resnet_layers else 1)


# The variants: {constructor name: row}. Default weights: AugReg at 224 where it exists
# (as timm's defaults), else the original release.
CONFIGS = {
    c.constructor_name: c
    for c in (
        ViTConfig("Ti16", 16, 192, 768, 3, 12, None, "vit_ti16_augreg_in21k_ft_in1k",
                  "vit_tiny_patch16_224", 5_717_416),
        ViTConfig("S16", 16, 384, 1536, 6, 12, None, "vit_s16_augreg_in21k_ft_in1k",
                  "vit_small_patch16_224", 22_050_664),
        ViTConfig("S32", 32, 384, 1536, 6, 12, None, "vit_s32_augreg_in21k_ft_in1k",
                  "vit_small_patch32_224", 22_878_952),
        ViTConfig("B8", 8, 768, 3072, 12, 12, None, "vit_b8_augreg_in21k_ft_in1k",
                  "vit_base_patch8_224", 86_576_872),
        ViTConfig("B16", 16, 768, 3072, 12, 12, None, "vit_b16_augreg_in21k_ft_in1k",
                  "vit_base_patch16_224", 86_567_656),
        ViTConfig("B32", 32, 768, 3072, 12, 12, None, "vit_b32_augreg_in21k_ft_in1k",
                  "vit_base_patch32_224", 88_224_232),
        ViTConfig("L16", 16, 1024, 4096, 16, 24, None, "vit_l16_augreg_in21k_ft_in1k",
                  "vit_large_patch16_224", 304_326_632),
        ViTConfig("L32", 32, 1024, 4096, 16, 24, None, "vit_l32_imagenet21k_imagenet2012",
                  "vit_large_patch32_224", 306_535_400),
        ViTConfig("H14", 14, 1280, 5120, 16, 32, None, "vit_h14_imagenet21k",
                  "vit_huge_patch14_224", 632_045_800),
        ViTConfig("R50_B16", 1, 768, 3072, 12, 12, (3, 4, 9), "vit_r50_b16_imagenet21k_imagenet2012",
                  "vit_base_r50_s16_224", 98_659_112),
    )
}

# timm's names (`Family.timm_architectures`): (timm architecture, constructor, timm's default
# `arch.tag`), timm 1.0.x `vision_transformer.py` / `vision_transformer_hybrid.py` `default_cfgs`.
# A timm architecture fixes the resolution; our constructor takes any (its weights say which).
TIMM_ARCHITECTURES = (
    ("vit_tiny_patch16_224", "ViT_Ti16", "vit_tiny_patch16_224.augreg_in21k_ft_in1k"),
    ("vit_tiny_patch16_384", "ViT_Ti16", "vit_tiny_patch16_384.augreg_in21k_ft_in1k"),
    ("vit_small_patch16_224", "ViT_S16", "vit_small_patch16_224.augreg_in21k_ft_in1k"),
    ("vit_small_patch16_384", "ViT_S16", "vit_small_patch16_384.augreg_in21k_ft_in1k"),
    ("vit_small_patch32_224", "ViT_S32", "vit_small_patch32_224.augreg_in21k_ft_in1k"),
    ("vit_small_patch32_384", "ViT_S32", "vit_small_patch32_384.augreg_in21k_ft_in1k"),
    ("vit_base_patch8_224", "ViT_B8", "vit_base_patch8_224.augreg2_in21k_ft_in1k"),
    ("vit_base_patch16_224", "ViT_B16", "vit_base_patch16_224.augreg2_in21k_ft_in1k"),
    ("vit_base_patch16_384", "ViT_B16", "vit_base_patch16_384.augreg_in21k_ft_in1k"),
    ("vit_base_patch32_224", "ViT_B32", "vit_base_patch32_224.augreg_in21k_ft_in1k"),
    ("vit_base_patch32_384", "ViT_B32", "vit_base_patch32_384.augreg_in21k_ft_in1k"),
    ("vit_large_patch16_224", "ViT_L16", "vit_large_patch16_224.augreg_in21k_ft_in1k"),
    ("vit_large_patch16_384", "ViT_L16", "vit_large_patch16_384.augreg_in21k_ft_in1k"),
    ("vit_large_patch32_224", "ViT_L32", "vit_large_patch32_224.orig_in21k"),
    ("vit_large_patch32_384", "ViT_L32", "vit_large_patch32_384.orig_in21k_ft_in1k"),
    ("vit_huge_patch14_224", "ViT_H14", "vit_huge_patch14_224.orig_in21k"),
    ("vit_base_r50_s16_224", "ViT_R50_B16", "vit_base_r50_s16_224.orig_in21k"),
    ("vit_base_r50_s16_384", "ViT_R50_B16", "vit_base_r50_s16_384.orig_in21k_ft_in1k"),
)
