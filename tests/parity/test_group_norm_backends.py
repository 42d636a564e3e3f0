"""ImageGroupNormalization's per-backend kernels against a float64 reference and Keras.

The layer dispatches on the backend (GEMVs on TensorFlow, fused reductions on JAX, ATen's
group_norm on PyTorch), so every test here is marked `backends`: `make test-backends` runs
it again on JAX and PyTorch. Tiny tensors: each test takes milliseconds.
"""

import keras
import numpy as np
import pytest

from keras_bigtransfer.layers import ImageGroupNormalization
from tests.autodiff import layer_gradients

pytestmark = pytest.mark.backends

EPSILON = 1e-5
# |ours - float64 reference| bounds per policy, outputs of order 1 (|y| < 8): float32 round-off
# of the statistics; float16 and bfloat16: half an ulp of the output's own dtype at |y| < 8
# (2^-8 and 2^-5 over 2), plus the float32 part.
FORWARD_ATOL = {"float32": 2e-5, "mixed_float16": 4e-3, "mixed_bfloat16": 1.6e-2}
SHAPES = [((2, 5, 6, 64), 32), ((3, 4, 4, 12), 3)]


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


def reference(x, gamma, beta, groups):
    """Group normalization in float64 numpy, centred variance (Wu & He 2018, eq. 1-4)."""
    batch, height, width, channels = x.shape
    grouped = x.astype(np.float64).reshape(batch, height, width, groups, channels // groups)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    variance = grouped.var(axis=(1, 2, 4), keepdims=True)
    return ((grouped - mean) / np.sqrt(variance + EPSILON)).reshape(x.shape) * gamma + beta


def layers_with(gamma, beta, groups, shape):
    built = []
    for cls in (ImageGroupNormalization, keras.layers.GroupNormalization):
        layer = cls(groups, epsilon=EPSILON)
        layer.build(shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        built.append(layer)
    return built


def inputs(rng, shape, offset=3.0):
    x = offset + rng.standard_normal(shape) * rng.uniform(0.5, 2.0, shape[-1])
    channels = shape[-1]
    return x, rng.uniform(0.5, 1.5, channels).astype("float32"), rng.standard_normal(channels).astype("float32")


def gradients(layer, x, upstream):
    """d(sum(layer(x) * upstream)) / (x, gamma, beta), with the backend's own autodiff."""
    return layer_gradients(layer, x, upstream, [layer.gamma, layer.beta])


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("shape, groups", SHAPES)
def test_forward_matches_reference_and_keras(policy, shape, groups, rng):
    x, gamma, beta = inputs(rng, shape)
    ours, theirs = layers_with(gamma, beta, groups, shape)
    x = x.astype(ours.compute_dtype)
    got = keras.ops.convert_to_numpy(ours(x))
    assert got.dtype == np.dtype(ours.compute_dtype)
    got = got.astype(np.float64)
    expected = reference(x, gamma, beta, groups)
    assert np.abs(got - expected).max() <= FORWARD_ATOL[policy]
    keras_out = keras.ops.convert_to_numpy(keras.ops.cast(theirs(x), "float32")).astype(np.float64)
    # Keras' own layer (one-pass moments) is checked with the same bound plus its round-off.
    assert np.abs(got - keras_out).max() <= 2 * FORWARD_ATOL[policy]


@pytest.mark.parametrize("ratio", [0, 100, 1000])
def test_variance_is_centred_when_the_mean_dwarfs_the_spread(ratio, rng):
    # One-pass E[x^2] - E[x]^2 (ATen's channels-last CPU kernel, Keras' moments) is 2e-2 off at 100.
    x = (ratio + rng.standard_normal((2, 14, 14, 64))).astype("float32")
    gamma, beta = rng.uniform(0.5, 1.5, 64).astype("float32"), rng.standard_normal(64).astype("float32")
    ours, _ = layers_with(gamma, beta, 32, x.shape)
    got = keras.ops.convert_to_numpy(ours(x)).astype(np.float64)
    assert np.abs(got - reference(x, gamma, beta, 32)).max() <= 2e-5 * max(1, ratio) ** 0.5


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"], indirect=True)
def test_gradients_match_keras(policy, rng):
    (shape, groups), = SHAPES[:1]
    x, gamma, beta = inputs(rng, shape)
    upstream = rng.standard_normal(shape).astype("float32")
    ours, theirs = layers_with(gamma, beta, groups, shape)
    x = x.astype(ours.compute_dtype)
    got = gradients(ours, x, upstream)
    # Keras' layer in float32 on the same (rounded) input is the reference.
    keras.mixed_precision.set_global_policy("float32")
    _, theirs = layers_with(gamma, beta, groups, shape)
    expected = gradients(theirs, x.astype("float32"), upstream)
    # Relative to each gradient's largest entry: float32 round-off, or the compute dtype's
    # rounding of the output (through the cast's gradient) and of dx itself.
    rtol = {"float32": 1e-5, "mixed_float16": 2e-3, "mixed_bfloat16": 1.6e-2}[policy]
    for name, a, b in zip(("x", "gamma", "beta"), got, expected):
        assert np.abs(a - b).max() <= rtol * np.abs(b).max(), name


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the ATen kernel's NCHW entry")
def test_torch_kernel_accepts_channels_first(rng):
    import torch

    x, gamma, beta = inputs(rng, (2, 5, 6, 64))
    ours, _ = layers_with(gamma, beta, 32, x.shape)
    nchw = torch.tensor(x.transpose(0, 3, 1, 2).astype("float32"))
    got = ours._normalize_torch(nchw, channels_first=True).detach().numpy()
    assert got.shape == (2, 64, 5, 6)
    assert np.abs(got.transpose(0, 2, 3, 1) - reference(x, gamma, beta, 32)).max() <= 2e-5
