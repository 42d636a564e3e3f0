"""ShiftAddDepthwiseConv2D against Keras' DepthwiseConv2D and a float64 NumPy reference.

The layer computes shifted multiply-adds on JAX and defers to Keras elsewhere, so every test is
marked `backends` (`make test-backends` runs them on JAX and PyTorch). Cases: EfficientNet's
kernels (3, 5) and strides (1, 2), "same" padding on odd and even sizes (TF/XLA put the extra
row at the bottom), "valid", both layouts, a bias, float32 and mixed precision, gradients.
"""

import keras
import numpy as np
import pytest

from keras_bigtransfer.layers import ShiftAddDepthwiseConv2D
from tests.autodiff import layer_gradients

pytestmark = pytest.mark.backends

CASES = [(3, 1, "same", 9), (3, 2, "same", 9), (5, 2, "same", 10), (5, 2, "same", 7), (5, 1, "valid", 11),
         (3, 2, "valid", 8)]
CHANNELS = 6
# Sums of at most 25 float32 products of order 1: float32 round-off. Mixed precision: the
# output's own half ulp at |y| < 16 (the sums are taken in float32, then rounded once).
ATOL = {"float32": 2e-5, "mixed_float16": 8e-3, "mixed_bfloat16": 6.3e-2}


def reference(x, kernel, bias, stride, padding):
    """Depthwise convolution in float64 NumPy, NHWC, padding as TensorFlow/XLA's SAME/VALID."""
    x = x.astype(np.float64)
    k = kernel.shape[0]
    size = x.shape[1]
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        x = np.pad(x, ((0, 0), (total // 2, total - total // 2), (total // 2, total - total // 2), (0, 0)))
    else:
        out = (size - k) // stride + 1
    y = np.zeros((x.shape[0], out, out, x.shape[3]))
    for i in range(k):
        for j in range(k):
            y += x[:, i:i + (out - 1) * stride + 1:stride, j:j + (out - 1) * stride + 1:stride, :] * kernel[i, j, :, 0]
    return y + bias


def built(layer_class, k, stride, padding, data_format, shape, weights):
    layer = layer_class(k, strides=stride, padding=padding, use_bias=True, data_format=data_format)
    layer.build(shape)
    layer.set_weights(weights)
    return layer


def to_layout(x, data_format):
    return x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("k, stride, padding, size", CASES)
def test_forward_matches_keras_and_the_reference(policy, data_format, k, stride, padding, size, rng):
    x = rng.standard_normal((2, size, size, CHANNELS)).astype("float32")
    weights = [rng.standard_normal((k, k, CHANNELS, 1)).astype("float32") * 0.5,
               rng.standard_normal(CHANNELS).astype("float32")]
    shape = to_layout(x, data_format).shape
    ours = built(ShiftAddDepthwiseConv2D, k, stride, padding, data_format, shape, weights)
    theirs = built(keras.layers.DepthwiseConv2D, k, stride, padding, data_format, shape, weights)
    inputs = to_layout(x, data_format).astype(ours.compute_dtype)
    got = keras.ops.convert_to_numpy(ours(inputs))
    assert got.dtype == np.dtype(ours.compute_dtype)
    # The reference sees what the layer sees: inputs and weights rounded to the compute dtype.
    seen = [np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(v, ours.compute_dtype)), np.float64)
            for v in (x, *weights)]
    expected = to_layout(reference(*seen, stride, padding), data_format)
    keras_out = keras.ops.convert_to_numpy(theirs(inputs)).astype(np.float64)
    assert got.shape == keras_out.shape == expected.shape
    if not ours.uses_shifted_sums():  # Keras' own layer computes it: identical
        np.testing.assert_array_equal(got.astype(np.float64), keras_out)
        return
    assert np.abs(got.astype(np.float64) - expected).max() <= ATOL[policy]
    # Keras' grouped conv may sum in the half dtype (25 roundings): a looser bound against it.
    assert np.abs(got.astype(np.float64) - keras_out).max() <= 4 * ATOL[policy]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("k, stride, padding, size", CASES[:4])
def test_gradients_match_keras(data_format, k, stride, padding, size, rng):
    x = to_layout(rng.standard_normal((2, size, size, CHANNELS)).astype("float32"), data_format)
    weights = [rng.standard_normal((k, k, CHANNELS, 1)).astype("float32"),
               rng.standard_normal(CHANNELS).astype("float32")]
    ours = built(ShiftAddDepthwiseConv2D, k, stride, padding, data_format, x.shape, weights)
    theirs = built(keras.layers.DepthwiseConv2D, k, stride, padding, data_format, x.shape, weights)
    upstream = keras.ops.convert_to_tensor(rng.standard_normal(ours.compute_output_shape(x.shape)).astype("float32"))
    for got, expected in zip(layer_gradients(ours, x, upstream, ours.trainable_variables),
                             layer_gradients(theirs, x, upstream, theirs.trainable_variables)):
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_keras_round_trip_keeps_the_class_and_the_output(tmp_path, rng):
    inputs = keras.Input((9, 9, CHANNELS))
    outputs = ShiftAddDepthwiseConv2D(5, strides=2, padding="same", name="dw")(inputs)
    model = keras.Model(inputs, outputs)
    x = rng.standard_normal((2, 9, 9, CHANNELS)).astype("float32")
    path = str(tmp_path / "dw.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("dw")) is ShiftAddDepthwiseConv2D
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)
