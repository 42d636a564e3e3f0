"""features_only (issue 20): feature_info matches the maps actually returned, at two input sizes
(non-square for ViT), for the smallest variant of each family and the hybrid; the static
feature_info of every registered variant; out_indices, output_dict / pyramid_outputs, the
.keras round trip and the SavedModel export of every map. Parity with timm:
tests/parity/test_features_parity.py."""

import math

import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.models import features, registry

SIZES = {
    "BiT_S_R50x1": [(64, 64), (50, 77)],
    "EfficientNetB0": [(64, 64), (45, 70)],
    "ViT_Ti16": [(64, 96), (112, 48)],
    "ViT_R50_B16": [(32, 48), (64, 32)],
}


@pytest.fixture(scope="module", params=list(SIZES))
def built(request):
    name = request.param
    return name, kb.create_model(name, weights=None, features_only=True, out_indices=None)


def test_feature_info_matches_the_maps_at_two_sizes(built):
    name, model = built
    info = model.feature_info
    assert info == features.feature_info(name)
    rng = np.random.default_rng(0)
    for height, width in SIZES[name]:
        maps = model(rng.random((2, height, width, 3), dtype=np.float32))
        assert isinstance(maps, list) and len(maps) == len(info)
        for f, m in zip(info, maps):
            expected = (2, math.ceil(height / f["reduction"]), math.ceil(width / f["reduction"]), f["num_chs"])
            assert tuple(m.shape) == expected, (name, f["name"], (height, width))


def test_every_variant_has_timm_like_stages():
    """Static: no model is built. A pyramid family (its `Features.reductions` declared): one map
    per declared stride, widening, keyed P1 ..., all by default (timm's); a per-block family
    (ViT): every map at the model's stride, of one width, keyed block0 ...."""
    for variant in registry.variants():
        spec = features.family_features(variant)
        info = features.feature_info(variant, out_indices=len(spec.stages(variant.config)))
        if spec.reductions is None:
            assert set(info.reduction()) == {variant.input_multiple}, variant.name
            assert len(set(info.channels())) == 1, variant.name
            assert info.names() == [f"block{i}" for i in range(len(info))]
        else:
            assert info.reduction() == list(spec.reductions), variant.name
            assert info.channels() == sorted(info.channels()), variant.name
            assert info.names() == [f"P{i + 1}" for i in range(len(info))]
            assert features.feature_info(variant) == info


def test_vit_offers_every_encoder_block_and_the_last_three_by_default():
    for variant in registry.variants("vit"):
        info = features.feature_info(variant, out_indices=variant.config.num_layers)
        assert len(info) == variant.config.num_layers
        assert set(info.channels()) == {variant.config.hidden_size}
        assert len(features.feature_info(variant)) == 3  # timm's default: the last three blocks


def test_bit_widths_scale_the_channels():
    assert features.feature_info("BiT_M_R101x3").channels() == [192, 768, 1536, 3072, 6144]
    assert features.feature_info("EfficientNetB7").channels() == [32, 48, 80, 224, 640]  # timm's


def test_out_indices_as_timm():
    take = features.take_indices
    assert take(5, None) == [0, 1, 2, 3, 4]
    assert take(5, 2) == [3, 4]
    assert take(5, (1, -1)) == [1, 4]
    assert take(5, np.int64(2)) == [3, 4] and take(5, (np.int32(1), -1)) == [1, 4]  # NumPy ints are ints
    for bad in (0, 6, (5,), (-6,), ()):
        with pytest.raises(ValueError, match="out_indices"):
            take(5, bad)
    for bad in (1.5, (1.0,), True, "12", (True,), object()):  # issue 26 item 12: never a bare exception
        with pytest.raises(TypeError, match="out_indices"):
            take(5, bad)
    with pytest.raises(ValueError, match="out_indices"):
        kb.BiT_S_R50x1(weights=None, features_only=True, out_indices=(7,))
    with pytest.raises(ValueError, match="features_only=True"):
        kb.EfficientNetB0(weights=None, out_indices=(1,))
    with pytest.raises(ValueError, match="feature_norm"):
        kb.EfficientNetB0(weights=None, features_only=True, feature_norm=True)


def test_output_dict_and_pyramid_outputs_round_trip(tmp_path):
    import keras

    model = kb.EfficientNetLite0(weights=None, features_only=True, out_indices=(1, 2, 3, 4), output_dict=True,
                                 input_shape=(64, 64, 3))
    assert list(model.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    images = np.random.default_rng(1).random((1, 64, 64, 3), dtype=np.float32)
    maps = model(images)
    assert sorted(maps) == ["P2", "P3", "P4", "P5"]
    assert tuple(maps["P4"].shape) == (1, 4, 4, 112)
    model.save(tmp_path / "lite0.keras")
    loaded = keras.saving.load_model(tmp_path / "lite0.keras")
    assert loaded.feature_info == model.feature_info
    assert list(loaded.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    again = loaded(images)
    for key in maps:
        np.testing.assert_allclose(np.asarray(again[key]), np.asarray(maps[key]), rtol=1e-6, atol=1e-6)


def test_maps_share_the_backbones_weights_and_train():
    """A features_only model is the backbone's graph: a head on its maps gets gradients end to end."""
    import keras
    import tensorflow as tf

    backbone = kb.EfficientNetLite0(weights=None, features_only=True, out_indices=(-1,), input_shape=(32, 32, 3))
    assert len(backbone.trainable_weights) > 50 and not any(w.path.startswith("head") for w in backbone.weights)
    head = keras.layers.Conv2D(2, 1)
    images = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(head(backbone(images, training=True)[0]) ** 2)
    stem = backbone.get_layer("stem_conv").kernel
    grads = tape.gradient(loss, [stem] + head.trainable_weights)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


@pytest.mark.slow  # tracing and saving a BiT: about a minute on 2 CPU cores
def test_saved_model_returns_every_map(tmp_path):
    import tensorflow as tf

    model = kb.BiT_S_R50x1(weights=None, features_only=True, out_indices=(0, 2, 4), input_shape=(64, 64, 3))
    path = kb.hub.export(model, tmp_path / "bit_maps")  # features_only: signature "feature_maps"
    loaded = tf.saved_model.load(path)
    images = np.random.default_rng(2).random((2, 64, 64, 3), dtype=np.float32)
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    assert sorted(served) == ["P1", "P3", "P5"]
    for f, ours in zip(model.feature_info, model(images)):
        np.testing.assert_allclose(served[f["name"]].numpy(), np.asarray(ours), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="feature_maps"):
        kb.hub.export(model, tmp_path / "never", signature="feature_vector")


def test_docs_table_is_generated_from_feature_info():
    """docs/backbones.md lists every registered variant's maps, as `markdown_tables()` writes them."""
    import os

    path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "backbones.md")
    with open(path) as f:
        text = f.read()
    table = text.split(features.BEGIN, 1)[1].split(features.END, 1)[0]
    assert table == "\n" + features.markdown_tables(), (
        "docs/backbones.md is stale: run python -m keras_bigtransfer.models.features docs/backbones.md")
    for variant in registry.variants():
        assert f"`{variant.name}`" in table
