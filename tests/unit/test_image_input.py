"""The image input contract (layers/image_input.py) on every way of calling a model:
eager, predict, nested in functional and Sequential models, .keras round trip,
tf.function with unknown sizes and the exported SavedModel."""

import warnings

import keras
import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.layers import ImageInput
from keras_bigtransfer.models import base, vit
from keras_bigtransfer.models.bit import ResNetV2


@pytest.fixture(scope="module")
def r50():
    keras.utils.set_random_seed(0)
    return ResNetV2(50, 1, include_top=False, pooling="avg")


def small_vit(**kwargs):
    config = dict(patch_size=8, hidden_size=32, mlp_size=64, num_heads=4, num_layers=1,
                  num_classes=10, pretrained_resolution=32)
    config.update(kwargs)
    keras.utils.set_random_seed(0)
    return vit.VisionTransformer(**config)


def _uint8(rng, n=2, size=32):
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "build",
    [lambda: ResNetV2(50, 1, num_classes=3), lambda: kb.EfficientNetLite0(weights=None, num_classes=3),
     lambda: small_vit()],
    ids=["bit", "efficientnet", "vit"],
)
def test_every_family_starts_with_the_contract_layer(build):
    model = build()
    assert isinstance(model.get_layer(base.IMAGE_INPUT_LAYER), ImageInput)
    assert model.layers[1].name == base.IMAGE_INPUT_LAYER


def test_uint8_is_converted_nested_in_functional_and_sequential_models(r50, rng):
    images = _uint8(rng)
    expected = np.asarray(r50(images.astype("float32") / 255.0))
    inputs = keras.Input((None, None, 3), dtype="uint8")
    wrapped = keras.Model(inputs, keras.layers.Identity()(r50(inputs)))
    np.testing.assert_allclose(np.asarray(wrapped(images)), expected, atol=1e-5)
    np.testing.assert_allclose(wrapped.predict(images, verbose=0), expected, atol=1e-3)
    sequential = keras.Sequential([keras.Input((32, 32, 3), dtype="uint8"), r50])
    np.testing.assert_allclose(np.asarray(sequential(images)), expected, atol=1e-5)


def test_a_wrapper_that_casts_uint8_to_float_first_is_warned_about(r50, rng):
    # keras.Sequential([model]) infers a float32 input from the model and casts 255 to 255.0
    # before our graph runs; the values then tell, and eagerly they are visible.
    sequential = keras.Sequential([r50])
    with pytest.warns(UserWarning, match=r"range over \[0, 255\].*keras.Input\(shape, dtype='uint8'\)"):
        sequential(_uint8(rng))


def test_float_images_far_outside_unit_range_warn_once(rng):
    model = small_vit()
    with pytest.warns(UserWarning, match=r"range over \[0, 255\]"):
        model(_uint8(rng).astype("float32"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(_uint8(rng).astype("float32"))  # once per model
        small_vit()(rng.uniform(-0.9, 1.9, (1, 32, 32, 3)).astype("float32"))  # near [0, 1]: quiet


@pytest.mark.parametrize("dtype", ["uint16", "int32", "int64", "int8", "bool"])
def test_other_integer_dtypes_are_refused_naming_the_dtype(r50, dtype):
    images = np.ones((1, 32, 32, 3), dtype=dtype)
    with pytest.raises(ValueError, match=rf"dtype {dtype}.*Convert to uint8, or to float in \[0, 1\]"):
        r50(images)
    inputs = keras.Input((None, None, 3), dtype=dtype)  # nested: the graph's layer refuses too
    with pytest.raises(ValueError, match=rf"dtype {dtype}"):
        keras.Model(inputs, r50(inputs))(images)


def test_alpha_is_dropped_as_pillow_converts_and_other_channel_counts_are_refused(r50, rng):
    """RGBA and grayscale + alpha lose the alpha, as Pillow's convert("RGB") (issue 29: the rule
    the file readers apply); 5 channels are refused, by the model and by the layer alone."""
    rgb = rng.random((1, 32, 32, 3), dtype=np.float32)
    want = keras.ops.convert_to_numpy(r50(rgb))
    rgba = np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=-1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(r50(rgba)), want, atol=1e-6)
    gray_alpha = np.concatenate([rgb[..., :1], np.zeros_like(rgb[..., :1])], axis=-1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(r50(gray_alpha)),
                               keras.ops.convert_to_numpy(r50(np.repeat(rgb[..., :1], 3, -1))), atol=1e-6)
    assert ImageInput()(rgba).shape == (1, 32, 32, 3)
    assert ImageInput()(rgb[..., :1]).shape == (1, 32, 32, 3)  # the layer alone converts grayscale too
    with pytest.raises(ValueError, match=r"takes \(batch, height, width, C\).*got 5 channels. Pass RGB images"):
        r50(np.zeros((1, 32, 32, 5), "float32"))
    with pytest.raises(ValueError, match="got 5 channels"):  # the layer alone, as a nested graph meets it
        ImageInput()(np.zeros((1, 32, 32, 5), "float32"))


def test_grayscale_batches_are_repeated_to_rgb_as_fit_bit_takes_them(r50, rng):
    """(N, H, W) and (N, H, W, 1), the arrays fit_bit trains on (Fashion-MNIST's), are the RGB
    batch with the channel repeated: eager, predict and nested in a graph (issue 25, item 9)."""
    gray = rng.integers(0, 256, (2, 32, 32), dtype=np.uint8)
    want = keras.ops.convert_to_numpy(r50(np.repeat(gray[..., None], 3, axis=-1)))
    for images in (gray, gray[..., None]):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(r50(images)), want, atol=1e-6)
        np.testing.assert_allclose(r50.predict(images, verbose=0), want, atol=5e-4)  # compiled: other sums
    inputs = keras.Input((32, 32, 1), dtype="uint8")
    np.testing.assert_allclose(keras.Model(inputs, r50(inputs)).predict(gray[..., None], verbose=0), want, atol=5e-4)
    for one_image in (gray[0][..., None], np.repeat(gray[0][..., None], 3, axis=-1)):  # no batch axis
        with pytest.raises(ValueError, match="Add a batch axis"):
            r50(one_image)


@pytest.mark.parametrize("shape,channels,plan", [
    ((2, 8, 8), 3, (True, 1, 3)), ((2, 8, 8, 1), 3, (False, 1, 3)), ((2, 8, 8, 3), 3, (False, 3, 1)),
    ((2, 8, 8, 4), 3, (False, 3, 1)), ((2, 8, 8, 2), 3, (False, 1, 3)),  # alpha dropped
    ((2, 8, 8, 1), 1, (False, 1, 1)), ((2, 8, 8), 1, (True, 1, 1)),  # a 1-channel model: unchanged
    ((2, 8, 8, 4), 4, (False, 4, 1)),  # a 4-channel model keeps its fourth channel
    ((2, 8, 8, None), 3, (False, None, 1)),  # known at run time only
])
def test_check_images_plans_the_conversion(shape, channels, plan):
    from keras_bigtransfer.layers.image_input import check_images

    assert tuple(check_images(keras.KerasTensor(shape), "x", channels))[:3] == plan


@pytest.mark.parametrize("shape,batch,match", [
    ((8, 8, 3), True, r"got shape \(8, 8, 3\)\. Add a batch axis"),  # one image without its batch axis
    ((8, 8, 1), True, "Add a batch axis"), ((8, 8), True, r"got shape \(8, 8\)\.$"),
    ((1, 2, 8, 8, 3), True, "got shape"), ((2, 8, 8, 3), False, r"takes \(height, width, C\)"),
    ((2, 8, 8, 5), True, "got 5 channels"), ((2, 0, 8, 3), True, "no pixels"), ((8, 0), False, "no pixels"),
])
def test_check_images_refuses_with_one_message_per_failure(shape, batch, match):
    from keras_bigtransfer.layers.image_input import check_images

    with pytest.raises(ValueError, match=match):
        check_images(keras.KerasTensor(shape), "x", batch=batch)


def test_keras_round_trip_keeps_the_contract(tmp_path, rng):
    model = small_vit()
    model.save(tmp_path / "vit.keras")
    restored = keras.saving.load_model(tmp_path / "vit.keras")
    assert isinstance(restored.get_layer(base.IMAGE_INPUT_LAYER), ImageInput)
    images = _uint8(rng)
    np.testing.assert_allclose(np.asarray(restored(images)), np.asarray(model(images)), atol=1e-6)
    with pytest.raises(ValueError, match="dtype int32"):
        restored(images.astype("int32"))
    clone = ImageInput.from_config(ImageInput(name="x").get_config())
    assert clone.get_config() == ImageInput(name="x").get_config()


def test_vit_refuses_sides_not_a_multiple_of_the_patch_everywhere(rng):
    import tensorflow as tf

    model = small_vit()
    good = rng.random((1, 32, 32, 3), dtype=np.float32)
    bad = rng.random((1, 36, 32, 3), dtype=np.float32)
    for call in (model, lambda x: model.predict(x, verbose=0)):
        with pytest.raises(ValueError, match="multiples of the patch size 8"):
            call(bad)
    # A graph traced with unknown sizes (as a SavedModel serving any size is) checks at run time.
    traced = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec((None, None, None, 3))])
    assert traced(good).shape == (1, 10)
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiples of the patch size 8"):
        traced(bad)


def test_exported_vit_refuses_a_bad_side_and_keeps_the_contract(tmp_path, rng):
    import tensorflow as tf

    from keras_bigtransfer.tfhub import export as publishing

    model = small_vit()
    loaded = tf.saved_model.load(publishing.export(model, str(tmp_path / "vit"), signature="classification"))
    good = rng.random((1, 40, 24, 3), dtype=np.float32)
    np.testing.assert_allclose(loaded(good).numpy(), np.asarray(model(good)), atol=1e-5)
    for fn in (loaded, lambda x: loaded.signatures["serving_default"](images=x)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="multiples of the patch size 8"):
            fn(tf.constant(rng.random((1, 38, 32, 3), dtype=np.float32)))


def test_hybrid_vit_takes_any_size(rng):
    # Patch 1 after a SAME-padded ResNet: no side is dropped, so none is refused.
    model = small_vit(patch_size=1, resnet_layers=(1, 1, 1), pretrained_resolution=32)
    assert model(rng.random((1, 35, 29, 3), dtype=np.float32)).shape == (1, 10)


def test_check_images_channels_first():
    """A channels_first model's rule: (batch, C, H, W) only, the channel rules on axis 1, and
    NHWC images refused with the layout and the transpose named."""
    from keras_bigtransfer.layers.image_input import check_images, to_channels

    first = dict(data_format="channels_first")
    gray = np.zeros((2, 1, 5, 6), np.uint8)
    plan = check_images(gray, "m", **first)
    assert plan.channel_axis == 1 and plan.uint8 and plan.repeats == 3
    assert to_channels(gray, plan).shape == (2, 3, 5, 6)
    rgba = np.zeros((2, 4, 5, 6), np.float32)
    assert to_channels(rgba, check_images(rgba, "m", **first)).shape == (2, 3, 5, 6)
    assert to_channels(keras.ops.convert_to_tensor(rgba), check_images(rgba, "m", **first)).shape == (2, 3, 5, 6)
    with pytest.raises(ValueError, match=r"^m takes channels_first \(batch, C, height, width\) images.*got 64 "
                                         r"channels on axis 1\. .*images\.transpose\(0, 3, 1, 2\)"):
        check_images(np.zeros((2, 64, 64, 3), np.float32), "m", **first)
    with pytest.raises(ValueError, match=r"channels_first \(batch, C, height, width\).*got shape \(2, 5, 6\)"):
        check_images(np.zeros((2, 5, 6), np.float32), "m", **first)
    layer = ImageInput(data_format="channels_first")
    assert layer.compute_output_shape((None, 1, 8, 8)) == (None, 3, 8, 8)
    assert ImageInput.from_config(layer.get_config()).data_format == "channels_first"
    with pytest.raises(ValueError, match="data_format must be"):
        ImageInput(data_format="NCHW")
