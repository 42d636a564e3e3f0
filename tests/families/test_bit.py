"""The BiT family: construction, input convention, loading rules, serialization."""

import numpy as np
import keras
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.models.bit import convert as bit_convert
from keras_bigtransfer.models.bit.model import ResNetV2
from tests import reference


@pytest.fixture(scope="module")
def r50():
    """A BiT-M-R50x1 with random non-zero weights everywhere, head included."""
    return reference.randomize_affine_and_head(kb.BiT_M_R50x1(weights=None, num_classes=1000), seed=1)


@pytest.fixture(scope="module")
def r50_npz(r50, tmp_path_factory):
    return str(bit_convert.save_npz(r50, tmp_path_factory.mktemp("ckpt") / "BiT-M-R50x1.npz"))


def _images(rng, n=2, size=64):
    return rng.random((n, size, size, 3), dtype=np.float32)


def test_all_constructors_exist_with_upstream_heads():
    for flavour, classes in (("S", 1000), ("M", 21843)):
        for arch in ("R50x1", "R50x3", "R101x1", "R101x3", "R152x2", "R152x4"):
            constructor = getattr(kb, f"BiT_{flavour}_{arch}")
            assert constructor.__name__ == f"BiT_{flavour}_{arch}"
            assert constructor.__kwdefaults__["num_classes"] is None  # the weights' class count
            assert constructor.variant.num_classes == classes  # without weights: the upstream head
    assert kb.BiT_L_R152x4.variant.num_classes == 18291


def test_bit_l_weights_are_a_clear_error():
    with pytest.raises(ValueError, match="never released"):
        kb.BiT_L_R152x4(weights="bit_l_r152x4")


def test_any_resolution_and_fixed_resolution(r50, rng):
    assert r50.input_shape == (None, None, None, 3)
    assert r50(_images(rng, size=32)).shape == (2, 1000)
    assert r50(rng.random((1, 48, 80, 3), dtype=np.float32)).shape == (1, 1000)
    fixed = ResNetV2(50, 1, num_classes=7, input_shape=(96, 96, 3))
    assert fixed.input_shape == (None, 96, 96, 3)
    assert fixed(_images(rng, size=96)).shape == (2, 7)


@pytest.mark.parametrize("pooling,shape", [("avg", (2, 2048)), ("max", (2, 2048)), (None, (2, 2, 2, 2048))])
def test_features(pooling, shape, rng):
    model = ResNetV2(50, 1, include_top=False, pooling=pooling)
    assert model(_images(rng)).shape == shape


def test_width_multiplies_feature_dim(rng):
    model = ResNetV2(50, 2, include_top=False, pooling="avg")
    assert model(_images(rng, n=1, size=32)).shape == (1, 4096)


def test_uint8_images_are_converted(r50, rng):
    images = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    as_float = images.astype("float32") / 255.0
    # Eagerly the results are identical. In a traced graph the division may become a
    # multiplication by 1/255, an ulp off, which 50 random layers amplify to ~6.5e-5 on
    # logits up to 4.7; skipping the /255 would change them wholesale (order 1).
    np.testing.assert_allclose(np.asarray(r50(images)), np.asarray(r50(as_float)), atol=1e-3)
    np.testing.assert_allclose(r50.predict(images, verbose=0), r50.predict(as_float, verbose=0), atol=1e-3)


# (N, H, W, 1) is grayscale and (N, H, W, 2|4) lose their alpha (the one image rule).
@pytest.mark.parametrize("shape", [(64, 64, 3), (1, 64, 64, 5), (1, 64, 64, 3, 1)])
def test_wrong_image_shape_names_the_expected_one(r50, shape):
    with pytest.raises(ValueError, match=r"takes \(batch, height, width, C\)"):
        r50(np.zeros(shape, dtype="float32"))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"input_shape": (224, 224)}, "input_shape"),
        ({"input_shape": (224, 224, 1)}, "input_shape"),
        ({"pooling": "mean"}, "pooling"),
        ({"num_classes": -1}, "num_classes"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kb.BiT_S_R50x1(weights=None, **kwargs)


def test_classifier_activation(rng):
    model = ResNetV2(50, 1, num_classes=3, classifier_activation="softmax")
    np.testing.assert_allclose(np.asarray(model(_images(rng))).sum(axis=1), 1.0, rtol=1e-5)


def test_npz_round_trip_is_exact(r50, r50_npz, rng):
    loaded = kb.BiT_M_R50x1(weights=r50_npz, num_classes=1000)
    for a, b in zip(r50.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def test_large_arrays_are_assigned_in_slices_exactly(r50, r50_npz, monkeypatch):
    from keras_bigtransfer.weights import assign

    monkeypatch.setattr(assign, "ASSIGN_CHUNK_BYTES", 4096)  # every kernel goes in slices
    sliced = []
    original = assign._slice_assignable
    monkeypatch.setattr(assign, "_slice_assignable", lambda t: sliced.append(t) or original(t))
    model = kb.BiT_M_R50x1(weights=r50_npz, num_classes=1000)
    assert len(sliced) > 50
    for a, b in zip(r50.weights, model.weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.path


def test_head_of_another_size_is_zero_initialized_and_backbone_loaded(r50, r50_npz, rng):
    model = kb.BiT_M_R50x1(weights=r50_npz, num_classes=10)
    head = model.get_layer("head")
    assert not np.any(np.asarray(head.kernel)) and not np.any(np.asarray(head.bias))
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("block4_unit03_c_standardized_conv2d").kernel),
        np.asarray(r50.get_layer("block4_unit03_c_standardized_conv2d").kernel),
    )
    features = kb.BiT_M_R50x1(weights=r50_npz, include_top=False, pooling="avg")
    pooled = keras.Model(r50.input, r50.get_layer("avg_pool").output)
    images = _images(rng)
    np.testing.assert_allclose(np.asarray(features(images)), np.asarray(pooled(images)), rtol=1e-5, atol=1e-6)


def _write(tmp_path, arrays, name="ckpt.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_missing_key_is_a_weights_error(r50, tmp_path):
    arrays = bit_convert.to_published(r50)
    del arrays["resnet/block3/unit02/b/group_norm/gamma"]
    with pytest.raises(kb.WeightsError, match="block3_unit02_b_group_norm/gamma"):
        kb.BiT_M_R50x1(weights=_write(tmp_path, arrays), num_classes=1000)


def test_unused_key_is_a_weights_error(r50, tmp_path):
    arrays = bit_convert.to_published(r50)
    arrays["resnet/block1/unit04/a/group_norm/gamma"] = np.ones(256, "float32")
    arrays["optimizer/momentum"] = np.ones(3, "float32")
    with pytest.raises(kb.WeightsError) as info:
        kb.BiT_M_R50x1(weights=_write(tmp_path, arrays), num_classes=1000)
    assert "resnet/block1/unit04/a/group_norm/gamma" in str(info.value)
    assert "optimizer/momentum" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_deeper_model_lists_every_missing_unit(r50_npz):
    with pytest.raises(kb.WeightsError) as info:
        kb.BiT_M_R101x1(weights=r50_npz, num_classes=1000)
    assert "block3_unit07" in str(info.value)


def test_shape_mismatch_names_key_and_both_shapes(r50_npz):
    from keras_bigtransfer.hub import load_weights

    with pytest.raises(kb.WeightsError) as info:
        load_weights(ResNetV2(50, 2, num_classes=1000, name="r50x2"), r50_npz)
    text = str(info.value)
    assert "resnet/root_block/standardized_conv2d/kernel: checkpoint (7, 7, 3, 64) vs model (7, 7, 3, 128)" in text


@pytest.mark.slow
def test_r50x3_weights_into_r50x1_model(tmp_path):
    wide = kb.BiT_M_R50x3(weights=None, num_classes=1000)
    path = bit_convert.save_npz(wide, tmp_path / "BiT-M-R50x3.npz")
    del wide
    with pytest.raises(kb.WeightsError, match=r"checkpoint \(7, 7, 3, 192\) vs model \(7, 7, 3, 64\)"):
        kb.BiT_M_R50x1(weights=str(path))


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"resnet/group_norm/gamma": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="allow_pickle"):
        kb.BiT_S_R50x1(weights=str(path))


def test_unknown_weights_argument(tmp_path):
    with pytest.raises(ValueError, match="not-a-file-or-tag"):
        kb.BiT_S_R50x1(weights="not-a-file-or-tag")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="neither a NumPy .npz, an HDF5 .* nor a PyTorch checkpoint"):
        kb.BiT_S_R50x1(weights=str(junk))


def test_keras_file_round_trip(r50, tmp_path, rng):
    path = tmp_path / "bit.keras"
    r50.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, kb.ImageModel)
    images = _images(rng)
    np.testing.assert_array_equal(np.asarray(restored(images)), np.asarray(r50(images)))
    uint8 = (images * 255).astype("uint8")
    np.testing.assert_array_equal(np.asarray(restored(uint8)), np.asarray(r50(uint8)))


def test_exported_npz_loads_in_timm_with_the_same_logits(r50, r50_npz, rng):
    import timm
    import torch

    timm_model = timm.create_model("resnetv2_50x1_bit", num_classes=1000).eval()
    timm_model.load_pretrained(r50_npz)
    images = _images(rng)
    with torch.no_grad():
        theirs = timm_model(torch.from_numpy((images.transpose(0, 3, 1, 2) - 0.5) / 0.5)).numpy()
    ours = np.asarray(r50(images))
    assert np.max(np.abs(ours - theirs)) <= 1e-4 * np.max(np.abs(theirs))


@pytest.mark.parametrize("how", ["constructor", "create_model"])
def test_ilsvrc2012_weights_by_tag_load_with_their_1000_way_head(r50, r50_npz, how, monkeypatch, rng):
    """Issue 16: BiT_M_R50x1(weights="bit_m_r50x1_ilsvrc2012") built a 21843-way head, zeroed it
    and returned constant logits. The tag's class count sizes the head now, and it loads."""
    from tests.http_server import serving

    with serving() as server:
        server.files["/bit_models/BiT-M-R50x1-ILSVRC2012.npz"] = open(r50_npz, "rb").read()
        monkeypatch.setenv("KERAS_BIGTRANSFER_MIRROR", server.url)
        monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
        tag = "bit_m_r50x1_ilsvrc2012"
        model = kb.BiT_M_R50x1(weights=tag) if how == "constructor" else kb.create_model(tag)
    assert model.get_layer("head").units == 1000
    images = _images(rng)
    np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(r50(images)))


@pytest.mark.parametrize("build", [
    lambda **kw: ResNetV2(50, np.int64(1), **kw),
    lambda **kw: kb.EfficientNetLite0(weights=None, **kw),
    lambda **kw: kb.ViT_Ti16(weights=None, num_register_tokens=np.int64(1), input_shape=(32, 32, 3), **kw),
], ids=["bit", "efficientnet", "vit"])
def test_numpy_integers_are_accepted_and_bools_and_floats_refused(build, tmp_path):
    model = build(num_classes=np.int64(3))
    head = model.get_layer("head")
    assert head.units == 3 and type(head.units) is int  # plain int: the config stays JSON
    model.save(tmp_path / "model.keras")
    for bad in (True, 3.0, -1, "3"):  # 0 is timm's headless model
        with pytest.raises(ValueError, match="num_classes"):
            build(num_classes=bad)
