"""Every family builds and runs under Keras' mixed-precision policies (tensorflow/tensorflow#50171)."""

import keras
import numpy as np
import pytest

import keras_bigtransfer as kb

pytestmark = pytest.mark.backends  # the whole module runs on JAX and PyTorch too


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


# One model per family on JAX and PyTorch (`make test-backends`: EfficientNet builds slowly on JAX CPU).
BUILDS = ([kb.BiT_S_R50x1, kb.EfficientNetB0, kb.EfficientNetLite0, kb.ViT_Ti16]
          if keras.backend.backend() == "tensorflow" else [kb.BiT_S_R50x1, kb.EfficientNetLite0, kb.ViT_Ti16])


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"], indirect=True)
@pytest.mark.parametrize("build", BUILDS, ids=lambda b: b.__name__)
def test_family_runs_under_mixed_precision(policy, build, rng):
    keras.utils.set_random_seed(0)
    model = build(weights=None, num_classes=10)
    head = model.get_layer("head")
    head.kernel.assign(rng.normal(0, 0.05, head.kernel.shape).astype("float32"))  # not the zero init
    images = rng.uniform(size=(2, 64, 64, 3)).astype("float32")
    logits = model(images)
    assert keras.backend.standardize_dtype(logits.dtype) == policy.split("_")[1]
    assert keras.backend.standardize_dtype(head.kernel.dtype) == "float32"  # variables stay float32
    keras.mixed_precision.set_global_policy("float32")
    reference = build(weights=None, num_classes=10)
    reference.set_weights(model.get_weights())
    expected = np.asarray(reference(images))
    got = np.asarray(keras.ops.cast(logits, "float32"))
    assert np.all(np.isfinite(got))
    # How far half precision may move the logits depends on the network: a randomly
    # initialized BiT is so sensitive that rounding only its *input* to bfloat16 moves
    # the float32 logits by ~12%, and a random EfficientNet-B0 in bfloat16 lands ~3%
    # off. So the bound follows that sensitivity, with a 10% floor; the failures this
    # guards against (float32 constants in a half-precision graph, normalization in half
    # precision) move logits by their own size.
    rounded = keras.ops.cast(keras.ops.cast(images, policy.split("_")[1]), "float32")
    sensitivity = _relative(np.asarray(reference(rounded)), expected)
    assert _relative(got, expected) <= max(0.1, 8 * sensitivity)


def _relative(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
