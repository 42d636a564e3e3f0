"""timm's model names as exact aliases of our variants and catalogue entries (a table, no
loose matching: a name is found only as written).

* An architecture name (`tf_efficientnet_lite0`, `resnetv2_50x1_bit`, `vit_base_patch16_224`)
  names one of our constructors, and the weights of timm's default tag where the catalogue
  has them (`ARCHITECTURES`, from timm's `default_cfgs`, timm 1.0.x). timm's own PyTorch-padded
  `efficientnet_*` architectures map to our (TF-padded) variant with its own ImageNet weights:
  timm's `efficientnet_*.ra_*` weights are not in the catalogue.
* `arch.tag` (`resnetv2_50x1_bit.goog_in21k`, `vit_base_patch16_224.augreg2_in21k_ft_in1k`)
  names a catalogue entry: the catalogue's own alias where it has one (the original Google
  files), else its copy of timm's Hugging Face Hub file (`hf-hub:timm/<arch>.<tag>`).
"""

import functools

from keras_bigtransfer.weights import catalogue

# timm architecture -> (our constructor, timm's default `arch.tag` when the catalogue has it).
ARCHITECTURES = {
    'tf_efficientnet_b0': ('EfficientNetB0', 'tf_efficientnet_b0.ns_jft_in1k'),
    'efficientnet_b0': ('EfficientNetB0', None),
    'tf_efficientnet_b1': ('EfficientNetB1', 'tf_efficientnet_b1.ns_jft_in1k'),
    'efficientnet_b1': ('EfficientNetB1', None),
    'tf_efficientnet_b2': ('EfficientNetB2', 'tf_efficientnet_b2.ns_jft_in1k'),
    'efficientnet_b2': ('EfficientNetB2', None),
    'tf_efficientnet_b3': ('EfficientNetB3', 'tf_efficientnet_b3.ns_jft_in1k'),
    'efficientnet_b3': ('EfficientNetB3', None),
    'tf_efficientnet_b4': ('EfficientNetB4', 'tf_efficientnet_b4.ns_jft_in1k'),
    'efficientnet_b4': ('EfficientNetB4', None),
    'tf_efficientnet_b5': ('EfficientNetB5', 'tf_efficientnet_b5.ns_jft_in1k'),
    'efficientnet_b5': ('EfficientNetB5', None),
    'tf_efficientnet_b6': ('EfficientNetB6', 'tf_efficientnet_b6.ns_jft_in1k'),
    'efficientnet_b6': ('EfficientNetB6', None),
    'tf_efficientnet_b7': ('EfficientNetB7', 'tf_efficientnet_b7.ns_jft_in1k'),
    'efficientnet_b7': ('EfficientNetB7', None),
    'tf_efficientnet_lite0': ('EfficientNetLite0', 'tf_efficientnet_lite0.in1k'),
    'efficientnet_lite0': ('EfficientNetLite0', None),
    'tf_efficientnet_lite1': ('EfficientNetLite1', 'tf_efficientnet_lite1.in1k'),
    'efficientnet_lite1': ('EfficientNetLite1', None),
    'tf_efficientnet_lite2': ('EfficientNetLite2', 'tf_efficientnet_lite2.in1k'),
    'efficientnet_lite2': ('EfficientNetLite2', None),
    'tf_efficientnet_lite3': ('EfficientNetLite3', 'tf_efficientnet_lite3.in1k'),
    'efficientnet_lite3': ('EfficientNetLite3', None),
    'tf_efficientnet_lite4': ('EfficientNetLite4', 'tf_efficientnet_lite4.in1k'),
    'efficientnet_lite4': ('EfficientNetLite4', None),
    'tf_efficientnet_l2': ('EfficientNetL2', 'tf_efficientnet_l2.ns_jft_in1k_475'),
    'efficientnet_l2': ('EfficientNetL2', None),
    'resnetv2_50x1_bit': ('BiT_M_R50x1', 'resnetv2_50x1_bit.goog_distilled_in1k'),
    'resnetv2_50x3_bit': ('BiT_M_R50x3', 'resnetv2_50x3_bit.goog_in21k_ft_in1k'),
    'resnetv2_101x1_bit': ('BiT_M_R101x1', 'resnetv2_101x1_bit.goog_in21k_ft_in1k'),
    'resnetv2_101x3_bit': ('BiT_M_R101x3', 'resnetv2_101x3_bit.goog_in21k_ft_in1k'),
    'resnetv2_152x2_bit': ('BiT_M_R152x2', 'resnetv2_152x2_bit.goog_teacher_in21k_ft_in1k'),
    'resnetv2_152x4_bit': ('BiT_M_R152x4', 'resnetv2_152x4_bit.goog_in21k_ft_in1k'),
    'vit_tiny_patch16_224': ('ViT_Ti16', 'vit_tiny_patch16_224.augreg_in21k_ft_in1k'),
    'vit_tiny_patch16_384': ('ViT_Ti16', 'vit_tiny_patch16_384.augreg_in21k_ft_in1k'),
    'vit_small_patch16_224': ('ViT_S16', 'vit_small_patch16_224.augreg_in21k_ft_in1k'),
    'vit_small_patch16_384': ('ViT_S16', 'vit_small_patch16_384.augreg_in21k_ft_in1k'),
    'vit_small_patch32_224': ('ViT_S32', 'vit_small_patch32_224.augreg_in21k_ft_in1k'),
    'vit_small_patch32_384': ('ViT_S32', 'vit_small_patch32_384.augreg_in21k_ft_in1k'),
    'vit_base_patch8_224': ('ViT_B8', 'vit_base_patch8_224.augreg2_in21k_ft_in1k'),
    'vit_base_patch16_224': ('ViT_B16', 'vit_base_patch16_224.augreg2_in21k_ft_in1k'),
    'vit_base_patch16_384': ('ViT_B16', 'vit_base_patch16_384.augreg_in21k_ft_in1k'),
    'vit_base_patch32_224': ('ViT_B32', 'vit_base_patch32_224.augreg_in21k_ft_in1k'),
    'vit_base_patch32_384': ('ViT_B32', 'vit_base_patch32_384.augreg_in21k_ft_in1k'),
    'vit_large_patch16_224': ('ViT_L16', 'vit_large_patch16_224.augreg_in21k_ft_in1k'),
    'vit_large_patch16_384': ('ViT_L16', 'vit_large_patch16_384.augreg_in21k_ft_in1k'),
    'vit_large_patch32_224': ('ViT_L32', 'vit_large_patch32_224.orig_in21k'),
    'vit_large_patch32_384': ('ViT_L32', 'vit_large_patch32_384.orig_in21k_ft_in1k'),
    'vit_huge_patch14_224': ('ViT_H14', 'vit_huge_patch14_224.orig_in21k'),
    'vit_base_r50_s16_224': ('ViT_R50_B16', 'vit_base_r50_s16_224.orig_in21k'),
    'vit_base_r50_s16_384': ('ViT_R50_B16', 'vit_base_r50_s16_384.orig_in21k_ft_in1k'),
}


@functools.lru_cache(maxsize=None)
def tagged():
    """{`arch.tag`: catalogue tag} for every catalogued weight of an architecture above."""
    names = {}
    for entry in catalogue.list_models():
        for name in (entry.tag, *entry.aliases):
            for prefix in ("hf-hub:timm/", "hf://timm/", ""):
                if name.startswith(prefix) and name[len(prefix):].split(".", 1)[0] in ARCHITECTURES \
                        and "." in name[len(prefix):]:
                    names.setdefault(name[len(prefix):], entry.tag)
    # The catalogue's own alias (the original file) wins over the Hub copy.
    for entry in catalogue.list_models():
        for alias in entry.aliases:
            if alias in names and not entry.tag.startswith("hf-hub:"):
                names[alias] = entry.tag
    return names


def resolve(name):
    """(constructor name, weights: a catalogue tag or None for the variant's default) for an
    exact timm name, or None when `name` is not one.

    Raises:
        ValueError: a known architecture with a tag the catalogue does not have.
    """
    if name in ARCHITECTURES:
        constructor, default = ARCHITECTURES[name]
        return constructor, tagged()[default] if default else None
    arch, dot, _ = name.partition(".")
    if not dot or arch not in ARCHITECTURES:
        return None
    tag = tagged().get(name)
    if tag is None:
        known = sorted(n for n in tagged() if n.startswith(arch + "."))
        raise ValueError(f"{name!r}: the catalogue has no such weights for {arch}; it has {known}.")
    return catalogue.get(tag).constructor, tag


def names(pretrained=False):
    """The timm names: architectures, or with `pretrained`, every catalogued `arch.tag`."""
    return sorted(tagged()) if pretrained else sorted(ARCHITECTURES)


def hub_constructor(architecture):
    """Our constructor for the `architecture` a timm repository's config.json names, or None.

    timm's PyTorch-padded `efficientnet_*` are left out: their weights were trained with
    symmetric padding, which our TF-padded EfficientNets (timm's `tf_efficientnet_*`) do not
    reproduce, so their logits would differ from timm's without an error.
    """
    if not isinstance(architecture, str) or architecture.startswith("efficientnet_"):
        return None
    constructor = ARCHITECTURES.get(architecture)
    return constructor[0] if constructor else None
