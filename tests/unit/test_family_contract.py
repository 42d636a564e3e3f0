"""The family contract (issue 29 item 1): one typed converter result, one options record every
converter takes, and one answer to "which family" (`registry.family_of`), for every family."""

import dataclasses

import numpy as np
import pytest

import keras_bigtransfer as kb  # noqa: F401 (registers the families)
from keras_bigtransfer.models import registry
from keras_bigtransfer.models.vit.model import VisionTransformer
from keras_bigtransfer.weights import catalogue


def _tiny_vit():
    return VisionTransformer(patch_size=8, hidden_size=32, mlp_size=64, num_heads=4, num_layers=2,
                             num_classes=3, pretrained_resolution=32)


def test_a_misspelt_option_raises_instead_of_being_dropped():
    with pytest.raises(TypeError, match="position_gird"):
        registry.ConvertOptions(position_gird=(4, 5))


def test_a_family_specific_option_is_refused_by_the_other_families():
    options = registry.ConvertOptions(position_grid=(4, 5))
    for family in registry.families():
        if "position_grid" in family.convert_options:
            assert family.check_options(options) is options
        else:
            with pytest.raises(ValueError, match=f"position_grid applies to ViT weights only.*{family.name}"):
                family.check_options(options)
    with pytest.raises(ValueError, match="convert_options"):
        dataclasses.replace(registry.get_family("bit"), name="other", convert_options=("grid",))


def test_every_converter_returns_one_conversion():
    """Each family's converter, on arrays it does not know: a `Conversion` listing them as unknown."""
    model = _tiny_vit()
    stray = {"not_a_layer_of_any_family": np.zeros((2,), np.float32)}
    for family in registry.families():
        conversion = family.convert(stray, model, registry.ConvertOptions(kind="npz", source="stray.npz"))
        assert isinstance(conversion, registry.Conversion), family.name
        assert conversion.assignments == {} and conversion.unknown == ("not_a_layer_of_any_family",), family.name
        assert isinstance(conversion.optional, tuple)


def test_which_family_has_one_answer_for_every_kind_of_thing():
    vit = registry.get_family("vit")
    variant = registry.get_variant("ViT_Ti16")
    entry = catalogue.find(variant.default_weights)
    assert registry.family_of(variant) is vit
    assert registry.family_of("vit_ti16") is vit  # a constructor name, any case
    assert registry.family_of(entry) is vit and entry.family == "vit"
    assert registry.family_of(_tiny_vit()) is vit  # a built model: Family.owns
    assert registry.family_of({"embedding/kernel": np.zeros((8, 8, 3, 32))}) is vit  # a bare checkpoint: detect
    stray = {"nothing": np.zeros(1)}
    assert registry.family_of(stray, None) is None
    with pytest.raises(ValueError, match="not of a registered family"):
        registry.family_of(stray)


def test_every_family_declares_the_whole_contract():
    for family in registry.families():
        assert callable(family.build) and callable(family.convert) and callable(family.owns), family.name
        assert family.features is None or isinstance(family.features, registry.Features), family.name
        for pattern, axes in family.layout_rules:  # keras_bigtransfer.distribution's rules
            assert isinstance(pattern, str) and "model" in axes, family.name
        assert registry.variants(family.name), f"{family.name} registers no variant"
