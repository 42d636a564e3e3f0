"""A model built from weights skips the random draws the checkpoint overwrites (issue 27 item 3:
on JAX each random initializer compiled per variable shape, 25 of Lite0's 30 s build), and
everything else about initialization stays as it was."""

import keras
import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.models import base


@pytest.fixture(scope="module")
def lite0_npz(tmp_path_factory):
    """A random-weight Lite0 in the Keras application layout (`<layer>/<layer>/<weight>:0`)."""
    model = kb.EfficientNetLite0(weights=None)
    arrays = {}
    for variable in model.weights:
        path = variable.path.replace("head/", "predictions/")
        arrays[f"{path.split('/')[0]}/{path}:0"] = keras.ops.convert_to_numpy(variable)
    path = tmp_path_factory.mktemp("lite0") / "lite0.npz"
    np.savez(path, **arrays)
    return path, arrays


def _counting(monkeypatch, cls):
    calls = []
    original = cls.__call__

    def call(self, shape, dtype=None, **kwargs):
        calls.append(tuple(shape))
        return original(self, shape, dtype=dtype, **kwargs)

    monkeypatch.setattr(cls, "__call__", call)
    return calls


def test_built_from_weights_draws_no_initializer(lite0_npz, monkeypatch):
    path, arrays = lite0_npz
    draws = {cls.__name__: _counting(monkeypatch, cls)
             for cls in (keras.initializers.VarianceScaling, keras.initializers.Zeros, keras.initializers.Ones)}
    model = kb.EfficientNetLite0(weights=str(path))
    assert draws["VarianceScaling"] == []
    # Only the head's bias (Keras' Dense default) is left to Keras; the checkpoint sets it.
    assert len(draws["Zeros"]) + len(draws["Ones"]) <= 1
    loaded = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    assert len(loaded) == len(arrays)
    for key, value in arrays.items():
        ours = key.split("/", 1)[1][:-2].replace("predictions/", "head/")
        np.testing.assert_array_equal(loaded[ours], value)


def test_a_variable_the_checkpoint_lacks_is_an_error_not_a_zero(lite0_npz, tmp_path):
    _, arrays = lite0_npz
    arrays = dict(arrays)
    del arrays["block2a_project_bn/block2a_project_bn/moving_variance:0"]
    path = tmp_path / "short.npz"
    np.savez(path, **arrays)
    with pytest.raises(WeightsError, match="block2a_project_bn/moving_variance"):
        kb.EfficientNetLite0(weights=str(path))


def test_without_weights_the_initializers_still_draw(monkeypatch):
    draws = _counting(monkeypatch, keras.initializers.VarianceScaling)
    model = kb.EfficientNetLite0(weights=None, num_classes=10)
    assert len(draws) == 50  # every conv, depthwise, squeeze-excite and the head
    kernel = keras.ops.convert_to_numpy(model.get_layer("top_conv").kernel)
    # VarianceScaling(2, fan_out, truncated normal): std sqrt(2 / 1280) (truncation: x0.88).
    assert 0.8 * np.sqrt(2 / 1280) * 0.88 < kernel.std() < 1.2 * np.sqrt(2 / 1280)
    gamma = keras.ops.convert_to_numpy(model.get_layer("top_bn").gamma)
    np.testing.assert_array_equal(gamma, np.ones_like(gamma))


def test_a_model_built_from_weights_clones_with_random_init_and_resets_its_head(lite0_npz):
    path, _ = lite0_npz
    model = kb.EfficientNetLite0(weights=str(path))
    initializer = model.get_layer("top_conv").kernel_initializer
    assert isinstance(initializer, base.InitUnlessLoaded)
    clone = keras.models.clone_model(model)  # from the config, outside any load
    assert keras.ops.convert_to_numpy(clone.get_layer("top_conv").kernel).std() > 0.01
    assert type(keras.initializers.deserialize(keras.initializers.serialize(initializer))) is base.InitUnlessLoaded
    headed = model.reset_classifier(7)
    assert headed.get_layer("head").kernel.shape == (1280, 7)


def test_the_scope_ends_with_its_block():
    zeros = base.InitUnlessLoaded(keras.initializers.RandomNormal(stddev=1.0, seed=1))
    with pytest.raises(RuntimeError):
        with base.weights_will_load():
            assert not np.any(keras.ops.convert_to_numpy(zeros((4, 4))))
            raise RuntimeError
    assert np.any(keras.ops.convert_to_numpy(zeros((4, 4))))
