import numpy as np
import keras
import pytest

from keras_bigtransfer.layers import WSConv2D


def _numpy_standardize(kernel, eps):
    mean = kernel.mean(axis=(0, 1, 2), keepdims=True)
    var = kernel.var(axis=(0, 1, 2), keepdims=True)  # biased, as the official code
    return (kernel - mean) / np.sqrt(var + eps)


def test_standardized_kernel_is_zero_mean_unit_variance_per_output_channel():
    layer = WSConv2D(8, 3, kernel_initializer=keras.initializers.RandomNormal(0.3, 2.0))
    layer.build((None, 5, 5, 4))
    w = np.asarray(layer.standardized_kernel())
    np.testing.assert_allclose(w.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(w.var(axis=(0, 1, 2)), 1.0, rtol=1e-4)


@pytest.mark.parametrize("strides,padding", [(1, "valid"), (2, "same")])
def test_output_equals_plain_conv_with_standardized_kernel(strides, padding, rng):
    x = rng.standard_normal((2, 9, 9, 4)).astype("float32")
    ws = WSConv2D(6, 3, strides=strides, padding=padding, use_bias=False, epsilon=1e-10)
    ws.build(x.shape)
    kernel = rng.standard_normal((3, 3, 4, 6)).astype("float32")
    ws.kernel.assign(kernel)
    plain = keras.layers.Conv2D(6, 3, strides=strides, padding=padding, use_bias=False)
    plain.build(x.shape)
    plain.kernel.assign(_numpy_standardize(kernel.astype("float64"), 1e-10).astype("float32"))
    np.testing.assert_allclose(np.asarray(ws(x)), np.asarray(plain(x)), rtol=1e-4, atol=1e-4)


def test_epsilon_matters_and_defaults_to_official_value():
    assert WSConv2D(4, 1).epsilon == 1e-10
    tiny = np.full((1, 1, 2, 1), 1e-3, dtype="float32")
    tiny[0, 0, 1, 0] = 2e-3  # variance 2.5e-7: comparable to a large epsilon
    outs = []
    for eps in (1e-10, 1e-4):
        layer = WSConv2D(1, 1, use_bias=False, epsilon=eps)
        layer.build((None, 1, 1, 2))
        layer.kernel.assign(tiny)
        outs.append(np.asarray(layer.standardized_kernel()))
    np.testing.assert_allclose(np.abs(outs[0]), 1.0, rtol=1e-3)
    assert np.all(np.abs(outs[1]) < 0.1)


def test_serialization_round_trip():
    layer = WSConv2D(5, 3, strides=2, epsilon=1e-8, name="ws")
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, WSConv2D)
    assert clone.get_config() == layer.get_config()
    assert clone.epsilon == 1e-8


@pytest.mark.parametrize("shape,groups", [((2, 7, 5, 64), 32), ((1, 3, 3, 8), 4)])
def test_image_group_norm_equals_keras_group_norm(shape, groups, rng):
    from keras_bigtransfer.layers import ImageGroupNormalization

    x = (3 + 2 * rng.standard_normal(shape)).astype("float32")
    ours = ImageGroupNormalization(groups, epsilon=1e-5)
    theirs = keras.layers.GroupNormalization(groups, epsilon=1e-5)
    ours(x), theirs(x)
    gamma, beta = rng.standard_normal(shape[-1:]), rng.standard_normal(shape[-1:])
    for layer in (ours, theirs):
        layer.gamma.assign(gamma.astype("float32"))
        layer.beta.assign(beta.astype("float32"))
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=2e-5)
    assert isinstance(ours, keras.layers.GroupNormalization)
    clone = ImageGroupNormalization.from_config(ours.get_config())
    assert clone.get_config() == ours.get_config()


@pytest.mark.parametrize("approximate", [True, False])
def test_gelu_equals_keras_gelu_in_value_and_gradient(approximate):
    import tensorflow as tf

    from keras_bigtransfer.layers import GELU

    x = tf.constant(np.linspace(-8.0, 8.0, 4001, dtype="float32").reshape(1, -1))
    layer = GELU(approximate=approximate)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = layer(x)
        reference = keras.activations.gelu(x, approximate=approximate)
    # forward: the same function; backward: the analytic derivative recomputed from x
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(reference))
    np.testing.assert_allclose(np.asarray(tape.gradient(ours, x)), np.asarray(tape.gradient(reference, x)),
                               rtol=1e-5, atol=1e-5)
    assert GELU.from_config(layer.get_config()).approximate == approximate


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("ratio", [0, 1, 10, 100, 1000])
def test_image_group_norm_is_accurate_when_the_mean_dwarfs_the_spread(policy, ratio, rng):
    # E[x^2] - E[x]^2 cancels when mean/std is large (keras-team/keras#22586): at 100 it was
    # 2e-2 off in float32 and 0.1 under mixed_float16. Reference: float64 on the same input.
    from keras_bigtransfer.layers import ImageGroupNormalization

    keras.mixed_precision.set_global_policy(policy)
    try:
        dtype = "float16" if policy == "mixed_float16" else "float32"
        x = (ratio + rng.standard_normal((2, 14, 14, 64))).astype(dtype)
        gamma, beta = rng.uniform(0.5, 1.5, 64), rng.standard_normal(64)
        layer = ImageGroupNormalization(32, epsilon=1e-5)
        layer.build(x.shape)
        layer.gamma.assign(gamma.astype("float32"))
        layer.beta.assign(beta.astype("float32"))
        got = np.asarray(keras.ops.cast(layer(x), "float32"), dtype=np.float64)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    groups = x.astype(np.float64).reshape(2, 14, 14, 32, 2)
    mean = groups.mean(axis=(1, 2, 4), keepdims=True)
    variance = groups.var(axis=(1, 2, 4), keepdims=True)
    expected = ((groups - mean) / np.sqrt(variance + 1e-5)).reshape(x.shape) * gamma + beta
    # float32: round-off of the float32 mean grows with the ratio; float16: the output's own
    # rounding (half an ulp at |y| < 8 is 4e-3, observed <= 2e-3).
    bound = 2e-5 * max(1, ratio) ** 0.5 if policy == "float32" else 4e-3
    assert float(np.abs(got - expected).max()) <= bound


@pytest.mark.parametrize("ratio", [0, 1000])
def test_image_group_norm_channels_first_axis(ratio, rng):
    """axis=1 (models built channels_first): Keras' GroupNormalization(axis=1) on NCHW, with the
    same centred-variance accuracy when the mean dwarfs the spread; the axis survives get_config."""
    from keras_bigtransfer.layers import ImageGroupNormalization

    x = (ratio + rng.standard_normal((2, 64, 7, 5))).astype("float32")
    ours = ImageGroupNormalization(32, axis=1, epsilon=1e-5)
    theirs = keras.layers.GroupNormalization(32, axis=1, epsilon=1e-5)
    ours(x), theirs(x)
    gamma, beta = rng.uniform(0.5, 1.5, 64).astype("float32"), rng.standard_normal(64).astype("float32")
    for layer in (ours, theirs):
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    groups = x.astype(np.float64).reshape(2, 32, 2, 35)
    mean, variance = groups.mean(axis=(2, 3), keepdims=True), groups.var(axis=(2, 3), keepdims=True)
    expected = ((groups - mean) / np.sqrt(variance + 1e-5)).reshape(x.shape) * gamma[:, None, None] + beta[:, None, None]
    assert float(np.abs(np.asarray(ours(x)) - expected).max()) <= 2e-5 * max(1, ratio) ** 0.5
    if ratio == 0:  # Keras' E[x^2] - E[x]^2 cancels at large ratios (keras-team/keras#22586)
        np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=2e-5)
    clone = ImageGroupNormalization.from_config(ours.get_config())
    assert clone.axis == 1 and clone.get_config() == ours.get_config()
    with pytest.raises(ValueError, match="axis=-1 .* or 1"):
        ImageGroupNormalization(32, axis=2)


def test_the_old_group_norm_name_still_loads(tmp_path, rng):
    """`.keras` files saved before the rename name the layer `ChannelsLastGroupNormalization`."""
    from keras_bigtransfer.layers import ChannelsLastGroupNormalization, ImageGroupNormalization

    x = rng.standard_normal((2, 5, 5, 8)).astype("float32")
    inputs = keras.Input((5, 5, 8))
    model = keras.Model(inputs, ChannelsLastGroupNormalization(4, epsilon=1e-5, gamma_initializer="random_normal")(inputs))
    path = str(tmp_path / "old.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.layers[-1]
    assert isinstance(layer, ImageGroupNormalization) and type(layer).__name__ == "ChannelsLastGroupNormalization"
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
