"""Checkpoint readers: lazy arrays, read whole or a few rows at a time, equal to the stored ones."""

import os

import h5py
import keras
import numpy as np
import pytest

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.weights import assign, checkpoint


@pytest.fixture
def stored():
    rng = np.random.default_rng(0)
    return {
        "kernel": rng.standard_normal((3, 3, 8, 16)).astype("float32"),
        "head": rng.standard_normal((1, 1, 24, 37)).astype("float32"),
        "half": rng.standard_normal((50, 7)).astype("float16"),
        "scalar": np.float32(2.5),
    }


def _write(kind, path, arrays):
    path = f"{path}.{'h5' if kind == 'h5' else 'npz'}"
    if kind == "npz":
        np.savez(path, **arrays)
    elif kind == "npz_compressed":
        np.savez_compressed(path, **arrays)
    else:
        with h5py.File(path, "w") as f:
            for key, value in arrays.items():
                f.create_dataset(f"group/{key}", data=value)
    return checkpoint.read_arrays(path, lazy=True)


def _by_name(arrays):
    return {key.rsplit("/", 1)[-1]: value for key, value in arrays.items()}


@pytest.mark.parametrize("kind", ["npz", "npz_compressed", "h5"])
@pytest.mark.parametrize("rows", [1, 2, 5, 64])
def test_row_blocks_equal_the_whole_array(tmp_path, stored, kind, rows):
    lazy = _by_name(_write(kind, tmp_path / "ckpt", stored))
    assert all(isinstance(v, checkpoint.LazyArray) for v in lazy.values())
    head = lazy["head"].reshape(lazy["head"].shape[-2:])  # as the BiT converter does
    half = lazy["half"].astype(np.float32)
    for array, expected in [(lazy["kernel"], stored["kernel"]), (head, stored["head"][0, 0]),
                            (half, stored["half"].astype(np.float32))]:
        assert array.streams
        np.testing.assert_array_equal(np.asarray(array), expected)
        blocks = list(checkpoint.row_blocks(array, rows))
        assert [start for start, _ in blocks] == list(range(0, expected.shape[0], rows))
        assert all(block.dtype == expected.dtype for _, block in blocks)
        np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), expected)
    assert np.asarray(lazy["scalar"]) == 2.5 and not lazy["scalar"].streams


def test_fortran_order_npz_is_read_whole(tmp_path):
    value = np.asfortranarray(np.arange(60, dtype=np.float32).reshape(6, 10))
    lazy = _write("npz", tmp_path / "f", {"w": value})["w"]
    assert not lazy.streams  # its bytes are in column order: slicing rows would be wrong
    np.testing.assert_array_equal(np.concatenate([b for _, b in checkpoint.row_blocks(lazy, 4)]), value)


def test_large_lazy_array_is_assigned_without_reading_it_whole(tmp_path, stored, monkeypatch):
    lazy = _by_name(_write("npz", tmp_path / "ckpt", stored))["kernel"]
    monkeypatch.setattr(assign, "ASSIGN_CHUNK_BYTES", 1024)
    monkeypatch.setattr(lazy, "_load", lambda: pytest.fail("the whole array was read"))
    variable = keras.Variable(np.zeros(lazy.shape, "float32"))
    assign.assign_array(variable, lazy)
    np.testing.assert_array_equal(variable.numpy(), stored["kernel"])


def test_truncated_npz_member_is_an_error(tmp_path, stored):
    import zipfile

    path = tmp_path / "cut.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("kernel.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (3, 3, 8, 16)})
        f.write(stored["kernel"].tobytes()[:1000])
    # Found from the headers (zip directory and .npy header disagree), before any data is read.
    with pytest.raises(WeightsError, match=r"cut\.npz: kernel declares shape \(3, 3, 8, 16\).*stores 1000 bytes"):
        checkpoint.read_arrays(path, lazy=True)


# --- issue 26 item 7: a directory is searched only where the published layouts put files ------

def _tf_checkpoint(prefix):
    import tensorflow as tf

    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    return tf.train.Checkpoint(v=tf.Variable(np.ones(2, np.float32))).write(prefix)


def test_directory_lookup_follows_the_published_layouts(tmp_path):
    # The folder itself, or the one folder a release archive unpacks to (efficientnet-b0/model.ckpt).
    here = _tf_checkpoint(str(tmp_path / "a" / "model.ckpt"))
    assert checkpoint.tf_checkpoint_prefix(str(tmp_path / "a")) == here
    nested = _tf_checkpoint(str(tmp_path / "b" / "efficientnet-b0" / "model.ckpt"))
    assert checkpoint.tf_checkpoint_prefix(str(tmp_path / "b")) == nested
    # Deeper than that is not where a published layout puts a checkpoint (a test fixture, a backup).
    _tf_checkpoint(str(tmp_path / "c" / "tests" / "data" / "fixtures" / "model.ckpt"))
    assert checkpoint.tf_checkpoint_prefix(str(tmp_path / "c")) is None
    with pytest.raises(WeightsError, match="neither a checkpoint file nor a TF checkpoint"):
        checkpoint.sniff_format(str(tmp_path / "c"))


def test_an_ambiguous_directory_names_its_candidates(tmp_path):
    first = _tf_checkpoint(str(tmp_path / "two" / "efficientnet-b0" / "model.ckpt"))
    second = _tf_checkpoint(str(tmp_path / "two" / "efficientnet-b1" / "model.ckpt"))
    with pytest.raises(WeightsError, match="holds 2 TF checkpoints") as info:
        checkpoint.tf_checkpoint_prefix(str(tmp_path / "two"))
    assert first in str(info.value) and second in str(info.value)
    # Two .index files and no TF `checkpoint` file naming one of them: ambiguous too.
    _tf_checkpoint(str(tmp_path / "flat" / "model.ckpt-200"))
    _tf_checkpoint(str(tmp_path / "flat" / "model.ckpt-1000"))
    with pytest.raises(WeightsError, match="holds 2 TF checkpoints.*model.ckpt-1000.*model.ckpt-200"):
        checkpoint.tf_checkpoint_prefix(str(tmp_path / "flat"))


def test_a_checkpoint_file_naming_another_folder_is_refused(tmp_path):
    outside = _tf_checkpoint(str(tmp_path / "elsewhere" / "model.ckpt"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "checkpoint").write_text(f'model_checkpoint_path: "{outside}"\n')
    with pytest.raises(WeightsError, match="outside the folder"):
        checkpoint.tf_checkpoint_prefix(str(tmp_path / "d"))


def test_hub_load_and_load_weights_do_not_search_the_whole_tree(tmp_path):
    import keras_bigtransfer as kb
    from keras_bigtransfer import hub

    _tf_checkpoint(str(tmp_path / "project" / "tests" / "data" / "deep" / "model.ckpt"))
    with pytest.raises(WeightsError, match="no saved_model.pb"):
        hub.load(str(tmp_path / "project"))
    model = kb.ViT_Ti16(weights=None, input_shape=(32, 32, 3), num_classes=2)
    with pytest.raises(WeightsError, match="neither a checkpoint file nor a TF checkpoint"):
        hub.load_weights(model, str(tmp_path / "project"))
