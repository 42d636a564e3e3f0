"""timm's names as each family declares them (`Family.timm_architectures`, in its `config.py`):
the table `models/timm_names.py` reads is the union of the registered families' rows (issue 29:
a family touches only its folder). Nothing is built or downloaded."""

import pytest

from keras_bigtransfer.models import factory, registry, timm_names

# The hand-kept table timm_names.py held before the families declared it (commit d05be04):
# BiT, EfficientNet B0-B7/Lite/L2 and ViT keep exactly these rows.
OLD_ARCHITECTURES = {
    "tf_efficientnet_b0": ("EfficientNetB0", "tf_efficientnet_b0.ns_jft_in1k"),
    "efficientnet_b0": ("EfficientNetB0", None),
    "tf_efficientnet_b1": ("EfficientNetB1", "tf_efficientnet_b1.ns_jft_in1k"),
    "efficientnet_b1": ("EfficientNetB1", None),
    "tf_efficientnet_b2": ("EfficientNetB2", "tf_efficientnet_b2.ns_jft_in1k"),
    "efficientnet_b2": ("EfficientNetB2", None),
    "tf_efficientnet_b3": ("EfficientNetB3", "tf_efficientnet_b3.ns_jft_in1k"),
    "efficientnet_b3": ("EfficientNetB3", None),
    "tf_efficientnet_b4": ("EfficientNetB4", "tf_efficientnet_b4.ns_jft_in1k"),
    "efficientnet_b4": ("EfficientNetB4", None),
    "tf_efficientnet_b5": ("EfficientNetB5", "tf_efficientnet_b5.ns_jft_in1k"),
    "efficientnet_b5": ("EfficientNetB5", None),
    "tf_efficientnet_b6": ("EfficientNetB6", "tf_efficientnet_b6.ns_jft_in1k"),
    "efficientnet_b6": ("EfficientNetB6", None),
    "tf_efficientnet_b7": ("EfficientNetB7", "tf_efficientnet_b7.ns_jft_in1k"),
    "efficientnet_b7": ("EfficientNetB7", None),
    "tf_efficientnet_lite0": ("EfficientNetLite0", "tf_efficientnet_lite0.in1k"),
    "efficientnet_lite0": ("EfficientNetLite0", None),
    "tf_efficientnet_lite1": ("EfficientNetLite1", "tf_efficientnet_lite1.in1k"),
    "efficientnet_lite1": ("EfficientNetLite1", None),
    "tf_efficientnet_lite2": ("EfficientNetLite2", "tf_efficientnet_lite2.in1k"),
    "efficientnet_lite2": ("EfficientNetLite2", None),
    "tf_efficientnet_lite3": ("EfficientNetLite3", "tf_efficientnet_lite3.in1k"),
    "efficientnet_lite3": ("EfficientNetLite3", None),
    "tf_efficientnet_lite4": ("EfficientNetLite4", "tf_efficientnet_lite4.in1k"),
    "efficientnet_lite4": ("EfficientNetLite4", None),
    "tf_efficientnet_l2": ("EfficientNetL2", "tf_efficientnet_l2.ns_jft_in1k_475"),
    "efficientnet_l2": ("EfficientNetL2", None),
    "resnetv2_50x1_bit": ("BiT_M_R50x1", "resnetv2_50x1_bit.goog_distilled_in1k"),
    "resnetv2_50x3_bit": ("BiT_M_R50x3", "resnetv2_50x3_bit.goog_in21k_ft_in1k"),
    "resnetv2_101x1_bit": ("BiT_M_R101x1", "resnetv2_101x1_bit.goog_in21k_ft_in1k"),
    "resnetv2_101x3_bit": ("BiT_M_R101x3", "resnetv2_101x3_bit.goog_in21k_ft_in1k"),
    "resnetv2_152x2_bit": ("BiT_M_R152x2", "resnetv2_152x2_bit.goog_teacher_in21k_ft_in1k"),
    "resnetv2_152x4_bit": ("BiT_M_R152x4", "resnetv2_152x4_bit.goog_in21k_ft_in1k"),
    "vit_tiny_patch16_224": ("ViT_Ti16", "vit_tiny_patch16_224.augreg_in21k_ft_in1k"),
    "vit_tiny_patch16_384": ("ViT_Ti16", "vit_tiny_patch16_384.augreg_in21k_ft_in1k"),
    "vit_small_patch16_224": ("ViT_S16", "vit_small_patch16_224.augreg_in21k_ft_in1k"),
    "vit_small_patch16_384": ("ViT_S16", "vit_small_patch16_384.augreg_in21k_ft_in1k"),
    "vit_small_patch32_224": ("ViT_S32", "vit_small_patch32_224.augreg_in21k_ft_in1k"),
    "vit_small_patch32_384": ("ViT_S32", "vit_small_patch32_384.augreg_in21k_ft_in1k"),
    "vit_base_patch8_224": ("ViT_B8", "vit_base_patch8_224.augreg2_in21k_ft_in1k"),
    "vit_base_patch16_224": ("ViT_B16", "vit_base_patch16_224.augreg2_in21k_ft_in1k"),
    "vit_base_patch16_384": ("ViT_B16", "vit_base_patch16_384.augreg_in21k_ft_in1k"),
    "vit_base_patch32_224": ("ViT_B32", "vit_base_patch32_224.augreg_in21k_ft_in1k"),
    "vit_base_patch32_384": ("ViT_B32", "vit_base_patch32_384.augreg_in21k_ft_in1k"),
    "vit_large_patch16_224": ("ViT_L16", "vit_large_patch16_224.augreg_in21k_ft_in1k"),
    "vit_large_patch16_384": ("ViT_L16", "vit_large_patch16_384.augreg_in21k_ft_in1k"),
    "vit_large_patch32_224": ("ViT_L32", "vit_large_patch32_224.orig_in21k"),
    "vit_large_patch32_384": ("ViT_L32", "vit_large_patch32_384.orig_in21k_ft_in1k"),
    "vit_huge_patch14_224": ("ViT_H14", "vit_huge_patch14_224.orig_in21k"),
    "vit_base_r50_s16_224": ("ViT_R50_B16", "vit_base_r50_s16_224.orig_in21k"),
    "vit_base_r50_s16_384": ("ViT_R50_B16", "vit_base_r50_s16_384.orig_in21k_ft_in1k"),
}


def _family(name, rows):
    return registry.Family(name=name, build=None, convert=None, head_classes=None, owns=None,
                           timm_architectures=rows)


def test_the_other_families_rows_are_unchanged():
    before_v2 = {a: row for a, row in timm_names.ARCHITECTURES.items() if not a.startswith("tf_efficientnetv2_")}
    assert before_v2 == OLD_ARCHITECTURES


def test_the_table_is_the_registered_families_rows():
    rows = [row for family in registry.families() for row in family.timm_architectures]
    assert {a: (c, d) for a, c, d in rows} == timm_names.ARCHITECTURES
    assert len(rows) == len(timm_names.ARCHITECTURES)  # no architecture in two families


def test_every_familys_rows_name_its_own_constructors():
    for family in registry.families():
        own = {v.name for v in registry.variants(family.name)}
        for architecture, constructor, default in family.timm_architectures:
            assert constructor in own, (family.name, architecture)
            assert default is None or default.partition(".")[0] == architecture


def test_efficientnetv2_timm_names_resolve_to_the_catalogue():
    assert timm_names.resolve("tf_efficientnetv2_s") == (
        "EfficientNetV2S", "hf-hub:timm/tf_efficientnetv2_s.in21k_ft_in1k")  # timm's default tag
    assert timm_names.resolve("tf_efficientnetv2_s.in21k_ft_in1k") == (
        "EfficientNetV2S", "hf-hub:timm/tf_efficientnetv2_s.in21k_ft_in1k")
    assert timm_names.resolve("tf_efficientnetv2_s.in1k") == ("EfficientNetV2S", "hf-hub:timm/tf_efficientnetv2_s.in1k")
    assert timm_names.resolve("tf_efficientnetv2_b0") == ("EfficientNetV2B0", "hf-hub:timm/tf_efficientnetv2_b0.in1k")
    assert timm_names.resolve("tf_efficientnetv2_b3") == ("EfficientNetV2B3", None)  # timm's default not catalogued
    assert timm_names.resolve("tf_efficientnetv2_xl") == (
        "EfficientNetV2XL", "hf-hub:timm/tf_efficientnetv2_xl.in21k_ft_in1k")
    with pytest.raises(ValueError, match="no such weights"):
        timm_names.resolve("tf_efficientnetv2_b3.in21k")  # left out of the catalogue
    assert registry.list_models("tf_efficientnetv2*") == [
        f"tf_efficientnetv2_{v}" for v in ("b0", "b1", "b2", "b3", "l", "m", "s", "xl")]
    assert "tf_efficientnetv2_s.in21k_ft_in1k" in registry.list_models("tf_efficientnetv2_s", pretrained=True)


def test_pytorch_padded_efficientnetv2_is_not_mapped():
    # timm's `efficientnetv2_*` / `efficientnetv2_rw_*` use symmetric padding: other logits.
    assert not [a for a in timm_names.ARCHITECTURES if a.startswith("efficientnetv2_")]
    for architecture in ("efficientnetv2_s", "efficientnetv2_rw_s", "efficientnet_b0"):
        assert timm_names.hub_constructor(architecture) is None
    assert timm_names.hub_constructor("tf_efficientnetv2_s") == "EfficientNetV2S"


@pytest.mark.parametrize("name, weights", [
    ("tf_efficientnetv2_s", "hf-hub:timm/tf_efficientnetv2_s.in21k_ft_in1k"),
    ("tf_efficientnetv2_s.in21k_ft_in1k", "hf-hub:timm/tf_efficientnetv2_s.in21k_ft_in1k"),
    ("tf_efficientnetv2_m.in1k", "hf-hub:timm/tf_efficientnetv2_m.in1k"),
])
def test_create_model_takes_efficientnetv2_timm_names(monkeypatch, name, weights):
    calls = []
    variant = registry.get_variant(timm_names.resolve(name)[0])
    monkeypatch.setitem(registry._CONSTRUCTORS, variant.name, lambda **kwargs: calls.append(kwargs) or variant.name)
    assert registry.create_model(name) == variant.name  # nothing built, nothing downloaded
    assert calls == [{"weights": weights}]


def test_register_refuses_rows_naming_another_familys_constructor():
    before = dict(timm_names.ARCHITECTURES)
    with pytest.raises(ValueError, match="names no constructor of the family"):
        factory.register(_family("toy_timm_rows", (("toy_arch", "ViT_B16", None),)), [])
    toy = registry.Variant(name="ToyTimmNet", config=None, architecture="ToyTimmNet", default_weights=None,
                           num_classes=10, native_resolution=32)
    with pytest.raises(ValueError, match="registered twice"):  # another family's architecture
        factory.register(_family("toy_timm_rows", (("resnetv2_50x1_bit", "ToyTimmNet", None),)), [toy])
    assert "toy_timm_rows" not in {f.name for f in registry.families()}  # refused before registering
    assert registry.find_variant("ToyTimmNet") is None
    with pytest.raises(ValueError, match="registered twice"):
        timm_names.register(_family("toy_timm_rows", (("resnetv2_50x1_bit", "ToyNet", None),)))
    with pytest.raises(ValueError, match="registered twice"):  # twice in one family
        timm_names.register(_family("toy_timm_rows", (("toy_arch", "ToyNet", None), ("toy_arch", "ToyNet2", None))))
    with pytest.raises(ValueError, match="rows are"):
        timm_names.register(_family("toy_timm_rows", (("toy_arch", "ToyNet"),)))
    with pytest.raises(ValueError, match="another architecture"):
        timm_names.register(_family("toy_timm_rows", (("toy_arch", "ToyNet", "vit_tiny_patch16_224.x"),)))
    assert timm_names.ARCHITECTURES == before
