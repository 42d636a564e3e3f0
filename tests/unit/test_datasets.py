"""Fashion-MNIST's offline loader: the system copy, the offline error, Keras' download."""

import keras
import pytest

from keras_bigtransfer import datasets


def test_missing_files_offline_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # conftest sets OFFLINE=1
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist.*KERAS_BIGTRANSFER_OFFLINE"):
        datasets.fashion_mnist(system_dir=str(tmp_path / "no_system_copy"))


def test_missing_files_online_fall_back_to_keras_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("KERAS_BIGTRANSFER_OFFLINE")
    sentinel = (("x", "y"), ("x_test", "y_test"))
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", lambda: sentinel)
    assert datasets.fashion_mnist(system_dir=str(tmp_path / "no_system_copy")) is sentinel
