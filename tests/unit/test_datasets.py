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


def test_imagenet21k_names_ship_in_head_order():
    names = datasets.imagenet21k_class_names()
    assert len(names) == 21843 and all(names)
    assert names[9514] == "projectile, missile"
    # The 21k heads order the classes by sorted synset id; every ILSVRC-2012 class but
    # teddy bear (n04399382, not a fall 2011 synset) is one of them, with the same name.
    import os

    folder = os.path.join(os.path.dirname(datasets.__file__), "data")
    with open(os.path.join(folder, "imagenet21k_classes.txt"), encoding="utf-8") as f:
        synsets = [line.split("\t", 1)[0] for line in f]
    assert synsets == sorted(set(synsets))
    with open(os.path.join(folder, "imagenet_classes.txt"), encoding="utf-8") as f:
        in1k = [line.rstrip("\n").split("\t", 1) for line in f]
    index = {s: i for i, s in enumerate(synsets)}
    assert [s for s, _ in in1k if s not in index] == ["n04399382"]
    assert all(names[index[s]] == name for s, name in in1k if s in index)
    # timm labels its BiT/ViT "goog_in21k" heads with the same list.
    timm_data = pytest.importorskip("timm.data")
    assert list(names) == list(timm_data.ImageNetInfo("imagenet21k_goog").label_descriptions())


def test_decode_predictions_names_both_heads():
    import numpy as np

    logits = np.zeros((2, 21843), np.float32)
    logits[0, 9514] = logits[1, 2] = 10.0
    decoded = datasets.decode_predictions(logits, top=2)
    assert decoded[0][0][:2] == (9514, "projectile, missile") and decoded[0][0][2] > 0.5
    assert decoded[1][0][0] == 2
    assert datasets.decode_predictions(np.eye(1000)[[657]])[0][0][:2] == (657, "missile")
    with pytest.raises(ValueError, match="1000.*21843"):
        datasets.decode_predictions(np.zeros((1, 10)))
    assert datasets.class_names(10) is None and len(datasets.class_names(1000)) == 1000


def test_tfds_offline_is_an_error_not_a_download(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from keras_bigtransfer.errors import OfflineError

    def no_download(*args, **kwargs):
        raise AssertionError("offline mode tried to download")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(OfflineError, match="mnist.*KERAS_BIGTRANSFER_OFFLINE"):
        datasets.load_tfds("mnist", "train", data_dir=str(tmp_path))  # conftest sets OFFLINE=1
    with pytest.raises(ValueError, match="no dataset 'no_such_dataset'"):
        datasets.load_tfds("no_such_dataset", "train", data_dir=str(tmp_path))


def test_a_failed_copy_leaves_no_partial_file(tmp_path, monkeypatch):
    import shutil

    system = tmp_path / "system"
    system.mkdir()
    for name in datasets.FASHION_MNIST_FILES:
        (system / name).write_bytes(b"x" * 10)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def cut_short(src, dst):
        with open(dst, "wb") as f:
            f.write(b"x")
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfile", cut_short)
    with pytest.raises(OSError, match="disk full"):
        datasets.fashion_mnist(system_dir=str(system))
    target = tmp_path / "keras_home" / "datasets" / "fashion-mnist"
    assert not target.exists() or not list(target.iterdir())
