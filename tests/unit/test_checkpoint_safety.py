"""Checkpoints as untrusted input (issue 15): files that must be refused, with a
`WeightsError` naming the file and the key, and a model left as it was when they are."""

import io
import os
import tarfile
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer import hub as hub_weights  # load_weights: the model's family picks the key map
from keras_bigtransfer.models import loading, registry, vit
from keras_bigtransfer.models.bit.model import ResNetV2
from keras_bigtransfer.models.vit import convert as vit_convert
from keras_bigtransfer.weights import archive, catalogue, checkpoint

# --- a tiny ViT and its published .npz layout ---------------------------------

_BLOCK = ["LayerNorm_0/scale", "LayerNorm_0/bias", "LayerNorm_2/scale", "LayerNorm_2/bias"] + [
    f"MultiHeadDotProductAttention_1/{part}/{weight}"
    for part in ("query", "key", "value", "out") for weight in ("kernel", "bias")
] + [f"MlpBlock_3/Dense_{i}/{weight}" for i in (0, 1) for weight in ("kernel", "bias")]


def tiny_vit(num_classes=10, **kwargs):
    """A 2-block ViT of 24k parameters (patch 8, 4x4 grid at 32 px)."""
    config = dict(patch_size=8, hidden_size=32, mlp_size=64, num_heads=4, num_layers=2,
                  num_classes=num_classes, pretrained_resolution=32)
    config.update(kwargs)
    return vit.VisionTransformer(**config)


def published_arrays(model, seed=1):
    """`model`'s variables under the vision_transformer release's keys, randomized."""
    names = ["embedding/kernel", "embedding/bias", "cls", "Transformer/posembed_input/pos_embedding",
             "Transformer/encoder_norm/scale", "Transformer/encoder_norm/bias"]
    names += [f"Transformer/encoderblock_{i}/{rest}" for i in range(2) for rest in _BLOCK]
    if any(v.path.startswith("head/") for v in model.weights):
        names += ["head/kernel", "head/bias"]
    variables = {v.path: v for v in model.weights}
    assert sorted(vit_convert.model_path(n) for n in names) == sorted(variables)
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(tuple(variables[vit_convert.model_path(n)].shape)).astype("float32")
            for n in names}


def _snapshot(model):
    return [v.numpy().copy() for v in model.weights]


def _unchanged(model, before):
    return all(np.array_equal(v.numpy(), b) for v, b in zip(model.weights, before))


@pytest.fixture(scope="module")
def model():
    return tiny_vit()


@pytest.fixture(scope="module")
def arrays(model):
    return published_arrays(model)


# --- item 1: HDF5 external storage, virtual datasets, links ------------------


def _h5(path, arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def test_h5_external_storage_is_refused_naming_the_key(tmp_path, arrays):
    secret = tmp_path / "outside" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(os.urandom(4 * 32 * 10))
    path = _h5(tmp_path / "ext.h5", {k: v for k, v in arrays.items() if k != "head/kernel"})
    with h5py.File(path, "a") as f:
        f.create_dataset("head/kernel", shape=(32, 10), dtype="float32",
                         external=[(str(secret), 0, 4 * 32 * 10)])
    with pytest.raises(WeightsError, match=r"ext\.h5: head/kernel keeps its data in external files"):
        checkpoint.read_arrays(path, lazy=True)
    with pytest.raises(WeightsError, match="external"):
        hub_weights.load_weights(tiny_vit(), path)


def test_h5_virtual_dataset_is_refused(tmp_path, arrays):
    other = _h5(tmp_path / "other.h5", {"data": arrays["head/kernel"]})
    path = _h5(tmp_path / "virtual.h5", {k: v for k, v in arrays.items() if k != "head/kernel"})
    layout = h5py.VirtualLayout(shape=(32, 10), dtype="float32")
    layout[:] = h5py.VirtualSource(str(other), "data", shape=(32, 10))
    with h5py.File(path, "a") as f:
        f.create_virtual_dataset("head/kernel", layout)
    with pytest.raises(WeightsError, match="head/kernel is a virtual dataset"):
        checkpoint.read_arrays(path)


@pytest.mark.parametrize("link", ["soft", "external"])
def test_h5_links_are_refused(tmp_path, arrays, link):
    other = _h5(tmp_path / "other.h5", {"data": arrays["head/kernel"]})
    path = _h5(tmp_path / "links.h5", {k: v for k, v in arrays.items() if k != "head/kernel"})
    with h5py.File(path, "a") as f:
        f["head/kernel"] = (h5py.SoftLink("/embedding/kernel") if link == "soft"
                            else h5py.ExternalLink(str(other), "/data"))
    with pytest.raises(WeightsError, match="head/kernel is an HDF5 (SoftLink|ExternalLink)"):
        checkpoint.read_arrays(path)


def test_h5_with_the_published_layout_still_loads(tmp_path, arrays):
    model = hub_weights.load_weights(tiny_vit(), _h5(tmp_path / "ok.h5", arrays))
    np.testing.assert_array_equal(model.get_layer("head").kernel.numpy(), arrays["head/kernel"])


# --- item 4: all or nothing ---------------------------------------------------


def _flip_last_data_byte(path, member):
    """Corrupt a stored .npz member's last byte: zipfile finds the CRC wrong at its end."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), "<u2")
        last = info.header_offset + 30 + int(name_len) + int(extra_len) + info.compress_size - 1
        f.seek(last)
        byte = f.read(1)
        f.seek(last)
        f.write(bytes([byte[0] ^ 0x55]))


def test_failed_load_leaves_the_model_as_it_was(tmp_path):
    # The last variable assigned is the head's bias: in the old loader every other variable
    # had been overwritten when its CRC failed. (Over 4 kB, so that zipfile, which reads
    # 4 kB ahead, meets the end, and checks the CRC, only when the data is read.)
    model = tiny_vit(num_classes=2000)
    assert model.weights[-1].path == "head/bias"
    path = tmp_path / "crc.npz"
    np.savez(path, **published_arrays(model))
    _flip_last_data_byte(path, "head/bias.npy")
    before = _snapshot(model)
    with pytest.raises(WeightsError, match=r"crc\.npz: head/bias cannot be read: BadZipFile: Bad CRC-32"):
        hub_weights.load_weights(model, path)
    assert _unchanged(model, before)


@pytest.mark.parametrize("problem", ["nan", "inf"])
def test_non_finite_values_are_refused_and_nothing_is_assigned(tmp_path, model, arrays, problem):
    bad = dict(arrays)
    bad["head/bias"] = arrays["head/bias"].copy()
    bad["head/bias"][3] = np.nan if problem == "nan" else -np.inf
    path = tmp_path / "nan.npz"
    np.savez(path, **bad)
    before = _snapshot(model)
    with pytest.raises(WeightsError, match=r"nan\.npz.*\n.*NaN or Inf.*\n  head/bias: 1 of 10 values"):
        hub_weights.load_weights(model, path)
    assert _unchanged(model, before)


# --- item 14: arrays that cannot be weights ------------------------------------


@pytest.mark.parametrize("dtype", ["int32", "bool", "complex64"])
def test_non_float_arrays_are_refused_with_a_listing(tmp_path, model, arrays, dtype):
    bad = dict(arrays)
    bad["head/kernel"] = arrays["head/kernel"].astype(dtype)
    bad["cls"] = arrays["cls"].astype(dtype)
    path = tmp_path / "ints.npz"
    np.savez(path, **bad)
    before = _snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex -> float casts warn
        with pytest.raises(WeightsError) as raised:
            hub_weights.load_weights(model, path, strict=False)
    message = str(raised.value)
    assert "arrays of the wrong type (2)" in message
    assert f"cls: stored {dtype} for model variable cls/tokens (float32)" in message
    assert f"head/kernel: stored {dtype}" in message
    assert _unchanged(model, before)


def test_duplicate_npz_keys_are_refused(tmp_path, arrays):
    path = tmp_path / "dup.npz"
    np.savez(path, **arrays)
    with zipfile.ZipFile(path, "a") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.zeros((10,), "float32"))
        archive.writestr("head/bias.npy", buffer.getvalue())
    with pytest.raises(WeightsError, match=r"dup\.npz: duplicate keys \['head/bias\.npy'\]"):
        hub_weights.load_weights(tiny_vit(), path)


def test_two_keys_for_one_variable_are_refused(tmp_path, arrays):
    both = dict(arrays)
    both["pos_embedding"] = arrays["Transformer/posembed_input/pos_embedding"][:, 1:]
    path = tmp_path / "twice.npz"
    np.savez(path, **both)
    with pytest.raises(WeightsError, match=r"twice\.npz: duplicate keys: .*pos_embedding"):
        hub_weights.load_weights(tiny_vit(), path)


def test_bit_head_twice_is_refused():
    from keras_bigtransfer.models.bit import convert as bit

    head = np.zeros((1, 1, 8, 3), "float32")
    with pytest.raises(WeightsError, match="both hold model variable head/kernel"):
        bit.convert({"resnet/head/conv2d/kernel": head, "resnet/head/dense/kernel": head[0, 0]})


def test_h5_group_where_a_dataset_belongs_is_refused(tmp_path, arrays):
    path = _h5(tmp_path / "group.h5", {k: v for k, v in arrays.items() if k != "head/kernel"})
    with h5py.File(path, "a") as f:
        f.create_group("head/kernel")
    with pytest.raises(WeightsError, match="head/kernel is an HDF5 group where a dataset"):
        checkpoint.read_arrays(path)


# --- item 16: a dropped head warns --------------------------------------------


def test_a_head_that_does_not_fit_warns_with_the_class_counts(tmp_path, arrays):
    path = tmp_path / "ten.npz"
    np.savez(path, **arrays)
    with pytest.warns(UserWarning, match=r"ten\.npz: the checkpoint's head \(10 classes\) is not loaded: "
                                         r"it does not fit the model's 3-class head"):
        model = hub_weights.load_weights(tiny_vit(num_classes=3), path)
    assert not np.any(model.get_layer("head").kernel.numpy())
    headless = {k: v for k, v in arrays.items() if not k.startswith("head/")}
    np.savez(tmp_path / "notop.npz", **headless)
    with pytest.warns(UserWarning, match=r"notop\.npz has no classifier head: the model's 10-class head"):
        hub_weights.load_weights(tiny_vit(), tmp_path / "notop.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fitting head, or no head asked for: no warning
        hub_weights.load_weights(tiny_vit(), path)
        hub_weights.load_weights(tiny_vit(include_top=False, pooling="avg"), path)


# --- item 18: *_notop catalogue tags ---------------------------------------------


def test_every_notop_tag_is_built_without_a_head(monkeypatch):
    # hub.load(tag) is registry.create_model(tag): record the arguments it builds each tag with.
    calls = []
    for name in {e.constructor for e in catalogue.list_models()}:
        monkeypatch.setitem(registry._CONSTRUCTORS, name, lambda **kwargs: calls.append(kwargs))
    notop = [e for e in catalogue.list_models() if e.num_classes == 0]
    assert notop  # the EfficientNet application files
    for entry in notop:
        registry.create_model(entry.tag)
        kwargs = calls.pop()  # a Hub tag's weights come resolved (weights.resolve.ResolvedWeights)
        kwargs["weights"] = getattr(kwargs["weights"], "weights", kwargs["weights"])
        assert kwargs == {"weights": entry.tag, "include_top": False, "pooling": "avg"}
    head = catalogue.get("efficientnet_b0")
    registry.create_model(head.tag)  # the head's class count comes from the tag's weights
    assert calls.pop() == {"weights": head.tag}


def test_hub_load_of_a_notop_tag_builds_the_backbone(monkeypatch):
    loaded = []
    monkeypatch.setattr(loading, "load_weights", lambda model, weights, **kw: loaded.append(weights.weights))
    model = kb.hub.load("efficientnet_b0_notop")
    assert loaded == ["efficientnet_b0_notop"]
    assert model.output_shape == (None, 1280)
    assert "head" not in [layer.name for layer in model.layers]


# --- item 20: one-line errors naming the file ----------------------------------


@pytest.mark.parametrize("content", [b"PK\x03\x04" + b"\0" * 40, b"\x89HDF\r\n\x1a\n" + b"\0" * 64,
                                     b"\x80\x02\x8a\n" + b"\0" * 40, b"garbage"])
def test_unreadable_files_raise_one_line_weights_errors(tmp_path, content):
    path = tmp_path / "broken.bin"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as raised:
        hub_weights.load_weights(tiny_vit(), path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_truncated_archive_is_a_weights_error(tmp_path):
    path = tmp_path / "module.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = os.urandom(50_000)
        info = tarfile.TarInfo("variables/variables.data-00000-of-00001")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(path.read_bytes()[:20_000])
    with pytest.raises(WeightsError, match=r"module\.tar\.gz: is not a readable \.tar\.gz module"):
        kb.hub.load(str(path))


# --- item 21: headers are checked before data is read -----------------------------


def _count_zip_reads(monkeypatch):
    read = [0]
    original = zipfile.ZipExtFile.read

    def counting(self, n=-1):
        data = original(self, n)
        read[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting)
    return read


def test_hub_load_refuses_unused_keys_before_reading_data(tmp_path, arrays, monkeypatch):
    path = tmp_path / "extra.npz"
    np.savez_compressed(path, **arrays, extra=np.zeros((16, 2**20), "float32"))  # 64 MiB of zeros
    read = _count_zip_reads(monkeypatch)
    with pytest.raises(WeightsError, match=r"checkpoint keys the model does not use \(1\):\n  extra"):
        kb.hub.load(str(path))
    assert read[0] < 2**20  # headers only, not the 64 MiB


def test_a_declared_shape_the_file_cannot_hold_is_refused(tmp_path, arrays):
    path = tmp_path / "huge.npz"
    np.savez(path, **arrays)
    with zipfile.ZipFile(path, "a") as archive, archive.open("head/kernel2.npy", "w") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20)})  # 4 TiB
        f.write(b"\0" * 1000)
    with pytest.raises(WeightsError, match=r"head/kernel2 declares shape \(1048576, 1048576\).*stores 1000 bytes"):
        kb.hub.load(str(path))


def test_h5_dataset_declared_but_never_written_is_refused(tmp_path, arrays):
    path = _h5(tmp_path / "empty.h5", arrays)
    with h5py.File(path, "a") as f:
        f.create_dataset("extra", shape=(2**20, 2**20), dtype="float32")  # 4 TiB, nothing stored
    with pytest.raises(WeightsError, match=r"empty\.h5: extra declares shape \(1048576, 1048576\) but stores no data"):
        kb.hub.load(str(path))


# --- item 22: archive limits ------------------------------------------------------


def _archive(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def _extracted():
    root = os.path.join(os.environ["KERAS_BIGTRANSFER_HOME"], "modules")
    return [n for n in os.listdir(root) if not n.endswith(".lock")] if os.path.isdir(root) else []


def test_archive_file_count_limit_and_its_overrides(tmp_path, monkeypatch):
    path = _archive(tmp_path / "many.tar.gz", {f"f{i}": b"x" for i in range(30)})
    with pytest.raises(WeightsError, match=r"more than 20 files.*max_files=.*KERAS_BIGTRANSFER_MAX_EXTRACT_FILES"):
        archive.extract_module(path, max_files=20)
    monkeypatch.setenv("KERAS_BIGTRANSFER_MAX_EXTRACT_FILES", "10")
    with pytest.raises(WeightsError, match="more than 10 files"):
        archive.extract_module(path)
    assert _extracted() == []
    target = archive.extract_module(path, max_files=30)
    assert len(os.listdir(target)) == 30


def test_archive_size_and_ratio_limits(tmp_path, monkeypatch):
    path = _archive(tmp_path / "bomb.tar.gz", {"zeros": b"\0" * 2**20})
    with pytest.raises(WeightsError, match=r"expands to more than 100000 bytes.*max_bytes="):
        archive.extract_module(path, max_bytes=100_000)
    monkeypatch.setenv("KERAS_BIGTRANSFER_MAX_EXTRACT_BYTES", "1000")
    with pytest.raises(WeightsError, match="more than 1000 bytes"):
        archive.extract_module(path)
    monkeypatch.delenv("KERAS_BIGTRANSFER_MAX_EXTRACT_BYTES")
    monkeypatch.setattr(archive, "_RATIO_FLOOR", 0)  # 1 MiB of zeros is a 1000:1 bomb in miniature
    with pytest.raises(WeightsError, match=r"over 100:1.*KERAS_BIGTRANSFER_MAX_EXTRACT_RATIO"):
        archive.extract_module(path)
    assert _extracted() == []
    assert os.path.getsize(os.path.join(archive.extract_module(path, max_ratio=10_000), "zeros")) == 2**20
    monkeypatch.setenv("KERAS_BIGTRANSFER_MAX_EXTRACT_FILES", "many")
    with pytest.raises(ValueError, match="KERAS_BIGTRANSFER_MAX_EXTRACT_FILES must be a positive integer"):
        archive.extract_module(path)


# --- item 29: non-square position grids ----------------------------------------------


def _non_square(tmp_path, grid=(4, 5)):  # 1 + 20 rows: neither 21 nor 20 is square
    source = tiny_vit(input_shape=(8 * grid[0], 8 * grid[1], 3))
    arrays = published_arrays(source, seed=3)
    assert arrays["Transformer/posembed_input/pos_embedding"].shape == (1, 1 + grid[0] * grid[1], 32)
    path = tmp_path / "wide.npz"
    np.savez(path, **arrays)
    return path, arrays


def test_non_square_grid_loads_into_a_model_of_that_grid(tmp_path):
    path, arrays = _non_square(tmp_path)
    model = hub_weights.load_weights(tiny_vit(input_shape=(32, 40, 3)), path)
    table = model.get_layer("Transformer_posembed_input").pos_embedding.numpy()
    np.testing.assert_array_equal(table, arrays["Transformer/posembed_input/pos_embedding"])


def test_non_square_grid_is_resampled_given_its_shape(tmp_path):
    from keras_bigtransfer.layers.position_embedding import resample_table

    path, arrays = _non_square(tmp_path)
    with pytest.raises(WeightsError, match=r"wide\.npz: position embedding of 21 rows.*position_grid=\(rows, cols\)"):
        hub_weights.load_weights(tiny_vit(), path)  # 4x4 model, 4x5 stored
    model = hub_weights.load_weights(tiny_vit(), path, position_grid=(4, 5))
    table = arrays["Transformer/posembed_input/pos_embedding"]
    expected = np.asarray(resample_table(table, (4, 5), (4, 4), 1))
    np.testing.assert_allclose(model.get_layer("Transformer_posembed_input").pos_embedding.numpy(),
                               expected, atol=1e-6)
    with pytest.raises(WeightsError, match="position_grid 5x5 has 25 cells but"):
        hub_weights.load_weights(tiny_vit(), path, position_grid=(5, 5))
    with pytest.raises(ValueError, match="position_grid applies to ViT weights only"):
        hub_weights.load_weights(ResNetV2(50, 1, num_classes=10), path, position_grid=(4, 5))


def test_hub_load_builds_a_non_square_vit_given_its_grid(tmp_path, rng):
    path, arrays = _non_square(tmp_path)
    with pytest.raises(WeightsError, match="pass position_grid"):
        kb.hub.load(str(path))
    model = kb.hub.load(str(path), position_grid=(4, 5))
    assert model.input_shape == (None, 32, 40, 3)
    table = model.get_layer("Transformer_posembed_input").pos_embedding.numpy()
    np.testing.assert_array_equal(table, arrays["Transformer/posembed_input/pos_embedding"])
    assert np.all(np.isfinite(model(rng.random((1, 32, 40, 3), dtype=np.float32))))


def test_a_corrupt_keras_file_is_a_weights_error(tmp_path):
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{not json")
        archive.writestr("model.weights.h5", b"\0" * 100)
    with pytest.raises(WeightsError, match=r"model\.keras: is not a loadable \.keras file"):
        kb.hub.load(str(path))


# --- issue 26, items 12 and 16: bad arguments are bad arguments; clear archive and pickle errors ----


def test_extraction_limits_must_be_positive_integers(tmp_path, monkeypatch):
    path = _archive(tmp_path / "small.tar.gz", {"f": b"x"})
    for bad, error in [(-1, ValueError), (0, ValueError), ("10", TypeError), (1.5, TypeError), (True, TypeError)]:
        with pytest.raises(error, match=r"max_files(=| must).*positive integer") as caught:
            archive.extract_module(path, max_files=bad)
        assert not isinstance(caught.value, WeightsError)  # a bad argument, not a bad file
    with pytest.raises(ValueError, match="max_bytes=-5"):
        archive.extract_module(path, max_bytes=-5)
    monkeypatch.setenv("KERAS_BIGTRANSFER_MAX_EXTRACT_RATIO", "-3")
    with pytest.raises(ValueError, match="KERAS_BIGTRANSFER_MAX_EXTRACT_RATIO='-3'"):
        archive.extract_module(path)
    monkeypatch.delenv("KERAS_BIGTRANSFER_MAX_EXTRACT_RATIO")
    assert _extracted() == []
    assert os.listdir(archive.extract_module(path, max_files=np.int64(3))) == ["f"]  # NumPy ints are ints


def test_an_archive_with_a_file_and_a_directory_of_one_name_is_refused(tmp_path):
    for name, members in [("dir_then_file", ["a/", "a"]), ("file_then_dir", ["a", "a/"]),
                          ("file_then_child", ["a", "a/b"])]:
        path = str(tmp_path / f"{name}.tar.gz")
        with tarfile.open(path, "w:gz") as tar:
            for member in members:
                info = tarfile.TarInfo(member.rstrip("/"))
                if member.endswith("/"):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = 1
                    tar.addfile(info, io.BytesIO(b"x"))
        with pytest.raises(WeightsError, match=rf"{name}\.tar\.gz: 'a' is both a file and a directory"):
            archive.extract_module(path)
    assert _extracted() == []


def test_a_bad_position_grid_is_a_bad_argument(tmp_path):
    model = tiny_vit()
    path = str(tmp_path / "w.npz")
    np.savez(path, **published_arrays(model))
    for bad, error in [((4, 5.5), TypeError), ((0, 5), ValueError), ("ab", TypeError), (7, TypeError),
                       ((True, 5), TypeError)]:
        for call in (lambda: hub_weights.load_weights(tiny_vit(), path, position_grid=bad),
                     lambda: kb.hub.load(path, position_grid=bad)):
            with pytest.raises(error, match="position_grid must be") as caught:
                call()
            assert not isinstance(caught.value, WeightsError)


def test_a_refused_pickle_does_not_suggest_weights_only_false(tmp_path):
    torch = pytest.importorskip("torch")

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": Payload()}, path)
    with pytest.raises(WeightsError, match=r"evil\.pth: refused: it holds pickled objects") as caught:
        checkpoint.read_arrays(path)
    assert "weights_only" not in str(caught.value) and "\n" not in str(caught.value)


def test_list_models_refuses_what_is_not_a_family():
    with pytest.raises(TypeError, match="list_models: family must be a family name.*123"):
        kb.hub.list_models(123)
    with pytest.raises(ValueError, match="'nope' is not a family of the catalogue; one of .*bit"):
        kb.hub.list_models("nope")
    assert {e.family for e in kb.hub.list_models("vit")} == {"vit"}
    for bad in (123, [1], None.__class__):  # the registry's list_models takes globs
        with pytest.raises(TypeError, match="list_models: pattern must be a glob string"):
            kb.list_models(bad)
