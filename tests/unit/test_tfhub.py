"""Publishing TF Hub reusable SavedModels, consuming them four ways, and importing them back."""

import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_bigtransfer as kb
from keras_bigtransfer import hub
from keras_bigtransfer.models.bit.model import ResNetV2
from tests import reference
from tests.tf1_hub_module import write_tf1_hub_module

# Folding weight standardization changes float rounding only.
ATOL = 1e-5


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.fixture(scope="module")
def model():
    """A small BiT (R50x1, 7 classes) with random non-zero weights, head included."""
    return reference.randomize_affine_and_head(ResNetV2(50, 1, num_classes=7, name="bit_test"), seed=3, scale=0.1)


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    archive = hub.export(model, root / "features", archive=True)
    features = str(root / "features")
    logits = hub.export(model, root / "logits", signature="classification")
    return {"features": features, "archive": archive, "logits": logits}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(4).random((2, 64, 80, 3), dtype=np.float32)


def _features(model, images):
    return keras.Model(model.input, model.get_layer("head").input)(images)


def test_reusable_saved_model_api(model, exports, images):
    obj = tf.saved_model.load(exports["features"])
    assert len(obj.variables) == len(model.weights) - 2  # the head is not published
    assert {v.ref() for v in obj.trainable_variables} <= {v.ref() for v in obj.variables}
    assert list(obj.regularization_losses) == []
    assert _max_diff(obj(images), _features(model, images)) <= ATOL
    assert _max_diff(obj(images, training=True), _features(model, images)) <= ATOL
    out = obj.signatures["serving_default"](images=tf.constant(images))
    assert list(out) == ["feature_vector"] and out["feature_vector"].shape == (2, 2048)
    # Any height and width.
    assert obj(np.zeros((1, 33, 47, 3), np.float32)).shape == (1, 2048)


def test_weight_standardization_is_folded(model, exports):
    obj = tf.saved_model.load(exports["logits"])
    graph_def = obj.__call__.get_concrete_function(
        tf.TensorSpec([None, None, None, 3], tf.float32), training=False).graph.as_graph_def()
    ops = [node.op for node in graph_def.node]
    for function in graph_def.library.function:
        ops += [node.op for node in function.node_def]
    convs = sum(isinstance(layer, kb.layers.WSConv2D) for layer in model.layers)
    norms = sum(isinstance(layer, keras.layers.GroupNormalization) for layer in model.layers)
    assert ops.count("Conv2D") == convs
    # One reciprocal square root per GroupNorm and none per conv: kernels are constants.
    assert ops.count("Rsqrt") == norms


def test_classification_signature(model, exports, images):
    obj = tf.saved_model.load(exports["logits"])
    assert _max_diff(obj(images), model(images)) <= ATOL
    assert list(obj.signatures["serving_default"](images=tf.constant(images))) == ["logits"]


def test_tensorflow_hub_load_and_archive(model, exports, images):
    import tensorflow_hub as tfhub

    obj = tfhub.load(exports["features"])
    assert _max_diff(obj(images), _features(model, images)) <= ATOL
    with tarfile.open(exports["archive"]) as tar:
        names = tar.getnames()
    assert "saved_model.pb" in names and all(not n.startswith(("/", "..")) for n in names)


def test_exports_have_the_umasks_modes(exports):
    """Issue 25 item 8: readable by a server running as another user when the umask allows it
    (files 0666, directories 0777, less the umask; tempfile's 0600/0700 before)."""
    import stat

    from keras_bigtransfer.weights.atomic import directory_mode, file_mode

    def mode(path):
        return stat.S_IMODE(os.stat(path).st_mode)

    assert mode(exports["archive"]) == file_mode()
    for root, dirs, files in os.walk(exports["features"]):
        assert mode(root) == directory_mode(), root
        assert all(mode(os.path.join(root, f)) == file_mode() for f in files), files


def test_tensorflow_hub_keras_layer_fine_tunes(model, exports, images):
    import tensorflow_hub as tfhub
    import tf_keras

    layer = tfhub.KerasLayer(exports["features"], trainable=True)
    inputs = tf_keras.Input((None, None, 3))
    outputs = tf_keras.layers.Dense(3)(layer(inputs))
    clf = tf_keras.Model(inputs, outputs)
    frozen = tfhub.KerasLayer(exports["features"], trainable=False)
    assert _max_diff(frozen(images), _features(model, images)) <= ATOL
    assert len(layer.trainable_weights) == len(model.weights) - 2
    before = [w.numpy().copy() for w in layer.trainable_weights]
    clf.compile(tf_keras.optimizers.SGD(0.1), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clf.fit(images, np.array([0, 2]), epochs=1, verbose=0)
    changed = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, layer.trainable_weights))
    assert changed > len(before) // 2


def test_keras3_tfsm_layer(model, exports, images):
    layer = keras.layers.TFSMLayer(exports["logits"], call_endpoint="serving_default")
    assert _max_diff(layer(images)["logits"], model(images)) <= ATOL


def test_import_our_export_as_a_native_model(model, exports, images):
    native = hub.load(exports["logits"])
    assert isinstance(native, kb.ImageModel)
    assert any(isinstance(layer, kb.layers.WSConv2D) for layer in native.layers)
    assert _max_diff(native(images), model(images)) <= 1e-4
    from_archive = hub.load(exports["archive"])
    assert from_archive.output.shape == (None, 2048)
    assert _max_diff(from_archive(images), _features(model, images)) <= 1e-4


def test_import_published_tf_hub_bit_layout(tmp_path, rng):
    arrays = reference.timm_bit_to_npz_arrays(reference.timm_bit(num_classes=11))
    module = reference.tf_hub_bit_module(arrays)
    tf.saved_model.save(module, str(tmp_path / "bit_m-r50x1"))
    native = hub.load(str(tmp_path / "bit_m-r50x1"))
    assert isinstance(native, kb.ImageModel) and native.output.shape == (None, 11)
    x = rng.random((2, 64, 64, 3), dtype=np.float32)
    expected = tf.saved_model.load(str(tmp_path / "bit_m-r50x1"))(x).numpy()
    assert _max_diff(native(x), expected) <= 1e-4 * np.abs(expected).max()


def test_unknown_saved_model_is_wrapped_in_a_layer(tmp_path):
    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            return 2 * x

    tf.saved_model.save(Doubler(), str(tmp_path / "doubler"))
    layer = hub.load(str(tmp_path / "doubler"))
    assert isinstance(layer, keras.layers.TFSMLayer)
    np.testing.assert_allclose(np.asarray(layer(np.ones((1, 3), np.float32))), 2.0)


def _write_generic_tf1_hub_module(path, rng):
    """A TF1 Hub format module of no family of ours (tests/tf1_hub_module.py's layout): a dense
    layer on pooled images, `default` signature images -> {"default", "pooled"}. Returns the
    images and the graph's own outputs for them, computed in its session."""
    images_in = rng.random((2, 8, 8, 3), dtype=np.float32)
    kernel, bias = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)

    def build(images):
        w = tf.compat.v1.get_variable("dense/kernel", initializer=kernel, use_resource=False)
        b = tf.compat.v1.get_variable("dense/bias", initializer=bias, use_resource=False)
        pooled = tf.reduce_mean(images, axis=[1, 2])
        return {"default": tf.nn.relu(tf.matmul(pooled, w) + b), "pooled": pooled}

    return images_in, write_tf1_hub_module(path, build, images_in)


def test_unknown_tf1_hub_module_is_wrapped_in_a_layer(tmp_path, rng):
    """As tensorflow_hub.load: its `default` signature runs, in a Keras 3 layer and model."""
    import tensorflow_hub
    from keras_bigtransfer.tfhub.tf1_hub import TF1HubLayer

    path = str(tmp_path / "generic_tf1")
    images, expected = _write_generic_tf1_hub_module(path, rng)
    layer = hub.load(path)
    assert isinstance(layer, TF1HubLayer)
    np.testing.assert_allclose(np.asarray(layer(images)), expected["default"], rtol=1e-6)
    theirs = tensorflow_hub.load(path).signatures["default"](images=tf.constant(images))
    np.testing.assert_allclose(np.asarray(layer(images)), theirs["default"].numpy(), rtol=1e-6)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, layer(inputs))
    np.testing.assert_allclose(np.asarray(model(images)), expected["default"], rtol=1e-6)
    every = TF1HubLayer(path, output_key=None)
    np.testing.assert_allclose(np.asarray(every(images)["pooled"]), expected["pooled"], rtol=1e-6)
    again = TF1HubLayer.from_config(layer.get_config())
    np.testing.assert_allclose(np.asarray(again(images)), expected["default"], rtol=1e-6)
    with pytest.raises(ValueError, match="no signature 'image_feature_vector'.*'default'"):
        TF1HubLayer(path, signature="image_feature_vector")
    with pytest.raises(ValueError, match="no output 'logits'.*'pooled'"):
        TF1HubLayer(path, output_key="logits")


def _tar_with(tmp_path, name, add):
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return str(path)


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "hardlink", "device"])
def test_archive_extraction_refuses_dangerous_members(tmp_path, kind):
    import io

    def add(tar):
        info = tarfile.TarInfo({"absolute": "/etc/evil", "dotdot": "../evil"}.get(kind, "evil"))
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "saved_model.pb"
        elif kind == "device":
            info.type = tarfile.CHRTYPE
        data = b"x"
        info.size = len(data) if info.isfile() else 0
        tar.addfile(info, io.BytesIO(data) if info.isfile() else None)

    archive = _tar_with(tmp_path, f"{kind}.tar.gz", add)
    with pytest.raises(ValueError, match="refusing"):
        hub.load(archive)
    assert not os.path.exists(tmp_path / "evil")


def test_export_errors(model):
    with pytest.raises(ValueError, match="signature"):
        hub.export(model, "/tmp/never", signature="logits")
    backbone = ResNetV2(50, 1, include_top=False)
    with pytest.raises(ValueError, match='pooling="avg"'):
        hub.export(backbone, "/tmp/never")
    with pytest.raises(ValueError, match="include_top=False"):
        hub.export(backbone, "/tmp/never", signature="classification")


def test_load_url_downloads_the_archive(exports, images, model, monkeypatch):
    from tests.http_server import serving

    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
    with serving() as server:
        server.files["/google/bit/m-r50x1/1.tar.gz"] = open(exports["archive"], "rb").read()
        native = hub.load(server.url + "/google/bit/m-r50x1/1.tar.gz")
    assert _max_diff(native(images), _features(model, images)) <= 1e-4


def test_efficientnet_export_and_import(tmp_path, rng):
    model = kb.EfficientNetB0(weights=None, num_classes=3)
    for v in model.weights:  # non-trivial BN statistics and head
        if "moving_variance" in v.path:
            v.assign(0.5 + rng.random(v.shape).astype("float32"))
        elif "moving_mean" in v.path or v.path.startswith("head/"):
            v.assign(0.1 * rng.standard_normal(v.shape).astype("float32"))
    images = rng.random((2, 48, 48, 3), dtype=np.float32)
    path = hub.export(model, tmp_path / "b0", signature="classification")
    obj = tf.saved_model.load(path)
    assert _max_diff(obj(images), model(images)) <= ATOL
    native = hub.load(path)
    assert isinstance(native, kb.ImageModel)
    assert _max_diff(native(images), model(images)) <= ATOL


def _plain_model():
    """Built on a plain keras.Input (auto-named input_layer_N), no layer of ours."""
    inputs = keras.Input((None, None, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    logits = keras.layers.Dense(2, name="head")(features)
    return keras.Model(inputs, logits), keras.Model(inputs, features)


def test_export_of_a_model_on_a_plain_keras_input(tmp_path, images):
    model, features = _plain_model()
    for signature, expected in (("feature_vector", features), ("classification", model)):
        path = hub.export(model, tmp_path / signature, signature=signature)
        assert _max_diff(tf.saved_model.load(path)(images), expected(images)) <= ATOL
        assert _max_diff(hub.load(path)(images), expected(images)) <= ATOL


def test_export_of_our_model_nested_in_a_plain_one(images, tmp_path, rng):
    # A small model of ours (weight-standardized convs, GroupNorm, a head) inside a plain one.
    inputs = keras.Input((None, None, 3), name="images")
    x = kb.layers.WSConv2D(8, 3, name="conv1")(inputs)
    x = keras.layers.GroupNormalization(2, name="gn")(x)
    x = kb.layers.WSConv2D(8, 3, use_bias=False, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    ours = kb.ImageModel(inputs, keras.layers.Dense(3, name="head")(x), name="ours")
    for v in ours.weights:
        v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    outer_inputs = keras.Input((None, None, 3))
    outer = keras.Model(outer_inputs, ours(outer_inputs))
    path = hub.export(outer, tmp_path / "nested", signature="classification")
    obj = tf.saved_model.load(path)
    assert _max_diff(obj(images), ours(images)) <= ATOL
    graph = obj.__call__.get_concrete_function(tf.TensorSpec([None, None, None, 3], tf.float32),
                                                training=False).graph.as_graph_def()
    ops = [n.op for n in graph.node] + [n.op for f in graph.library.function for n in f.node_def]
    assert ops.count("Rsqrt") == 1  # the GroupNorm's; the nested convs are folded too
    assert _max_diff(hub.load(path)(images), ours(images)) <= 1e-4
    with pytest.raises(ValueError, match="nested model"):
        hub.export(outer, tmp_path / "features")  # the pre-logits are inside the nested model


def test_export_replaces_only_empty_directories_and_earlier_exports(tmp_path, images, monkeypatch):
    from keras_bigtransfer.tfhub import export as publishing

    model, _ = _plain_model()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "arch.tar.gz").write_bytes(b"not an archive of ours")

    def no_work(*args, **kwargs):
        raise AssertionError("the target is checked before any work")

    with monkeypatch.context() as patch:
        patch.setattr(publishing, "fold_weight_standardization", no_work)
        with pytest.raises(FileExistsError, match="not an earlier keras_bigtransfer export.*overwrite=True"):
            hub.export(model, foreign)
        with pytest.raises(FileExistsError, match="not a directory"):
            hub.export(model, tmp_path / "a_file")
        with pytest.raises(FileExistsError, match="arch.tar.gz exists"):
            hub.export(model, tmp_path / "arch", archive=True)
    assert sorted(os.listdir(tmp_path)) == ["a_file", "arch.tar.gz", "foreign"]  # nothing staged or left
    assert os.listdir(foreign) == ["notes.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    archive = hub.export(model, empty, archive=True)
    path = str(empty)
    assert archive == path + ".tar.gz"  # the docstring's one path, not a (dir, archive) tuple
    assert publishing.is_our_export(path) and publishing.is_our_archive(archive)
    hub.export(model, empty, signature="classification", archive=True)  # ours: replaced, no flag needed
    assert _max_diff(tf.saved_model.load(path)(images), model(images)) <= ATOL
    with pytest.raises(FileExistsError):
        publishing.write_archive(path, str(tmp_path / "arch.tar.gz"))

    hub.export(model, tmp_path / "a_file", overwrite=True)  # a file: replaced with overwrite=True
    hub.export(model, tmp_path / "arch", archive=True, overwrite=True)
    assert publishing.is_our_export(tmp_path / "a_file") and publishing.is_our_archive(tmp_path / "arch.tar.gz")


def test_export_never_removes_a_foreign_directory_the_cwd_its_ancestors_or_home(tmp_path, monkeypatch, capsys):
    """Issue 26 item 4: `export(..., "..", overwrite=True)` deleted the parent of the cwd."""
    from keras_bigtransfer.tfhub import export as publishing
    from tests.unit.test_cli_errors import error_line, run_cli

    model, _ = _plain_model()
    work = tmp_path / "project" / "work"
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    (tmp_path / "project" / "data.txt").write_text("mine")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (tmp_path / "dir.tar.gz").mkdir()
    (tmp_path / "dir.tar.gz" / "x").write_text("mine")
    home = tmp_path / "home"
    home.mkdir()
    (home / "x").write_text("mine")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(publishing, "fold_weight_standardization", lambda *a: pytest.fail("checked first"))
    for target, error in [("..", PermissionError), (".", PermissionError), (str(tmp_path), PermissionError),
                          (str(home), PermissionError), ("/", PermissionError),
                          (str(foreign), FileExistsError), (str(tmp_path / "dir"), IsADirectoryError)]:
        with pytest.raises(error, match="never"):
            hub.export(model, target, overwrite=True, archive=target.endswith("dir"))
    assert run_cli("export", "src", "..", "--overwrite") == 1  # the CLI's check, before loading SRC
    assert "ancestor of the current directory" in error_line(capsys)
    assert sorted(os.listdir(tmp_path / "project")) == ["data.txt", "work"]
    assert os.listdir(work) == ["notes.txt"] and os.listdir(foreign) == ["notes.txt"]
    assert os.listdir(home) == ["x"] and os.listdir(tmp_path / "dir.tar.gz") == ["x"]


def _three_sgd_steps(model, images, labels):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), run_eagerly=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for _ in range(3):
        model.train_on_batch(images, labels)
    return np.asarray(model(images, training=False))


def test_import_of_our_export_trains_as_the_original(model, exports):
    """Issue 18 item 8: the export keeps the raw kernels beside the folded graph, so the
    re-imported WSConv2D layers hold the original (unstandardized) kernels and fine-tune alike."""
    from keras_bigtransfer.tfhub import raw_weights

    raw = raw_weights.read(exports["logits"])
    assert set(raw) == {layer.kernel.path for layer in model.layers if isinstance(layer, kb.layers.WSConv2D)}
    loaded = hub.load(exports["logits"])
    for ours, theirs in zip(model.weights, loaded.weights):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(np.asarray(ours.numpy()), np.asarray(theirs.numpy()))
    original = keras.models.clone_model(model)  # the module's fixture stays untrained
    original.set_weights(model.get_weights())
    images = np.random.default_rng(6).random((4, 32, 32, 3), dtype=np.float32)
    labels = np.array([0, 3, 5, 6])
    ours, theirs = _three_sgd_steps(original, images, labels), _three_sgd_steps(loaded, images, labels)
    assert np.max(np.abs(ours - theirs)) <= 1e-5 * max(1.0, float(np.max(np.abs(ours))))


def test_damaged_exports_and_modules_are_one_weights_error(tmp_path, rng):
    """Issue 26 item 12: a damaged export config raised a bare KeyError / JSONDecodeError, a TF1
    module with cut variable data TensorFlow's OutOfRangeError."""
    import shutil

    from keras_bigtransfer.errors import WeightsError
    from keras_bigtransfer.tfhub.export import CONFIG_ASSET

    export = hub.export(_plain_model()[0], tmp_path / "export")
    for name, text in [("bad_json", "{"), ("no_model", '{"format": "keras_bigtransfer/1"}')]:
        damaged = tmp_path / name
        shutil.copytree(export, damaged)
        (damaged / "assets" / CONFIG_ASSET).write_text(text)
        with pytest.raises(WeightsError, match=rf"{name}/assets/{CONFIG_ASSET}: is not a readable") as caught:
            hub.load(str(damaged))
        assert "\n" not in str(caught.value)
    path = tmp_path / "cut_tf1"
    _write_generic_tf1_hub_module(str(path), rng)
    data = next((path / "variables").glob("variables.data-*"))
    data.write_bytes(data.read_bytes()[:8])
    with pytest.raises(WeightsError, match="cut_tf1"):
        hub.load(str(path))


def test_a_downloaded_program_loads_only_with_trust_remote_code(tmp_path, rng, images, monkeypatch):
    """Issue 26 item 2: a SavedModel or TF1 module is a program. From a URL, our exports and
    published family layouts load as data (no TensorFlow loader runs); anything else needs
    trust_remote_code=True. A local path is the caller's choice."""
    from keras_bigtransfer.errors import WeightsError
    from keras_bigtransfer.tfhub import tf1_hub
    from keras_bigtransfer.tfhub.export import write_archive
    from tests.http_server import serving

    ours_model, _ = _plain_model()
    ours = hub.export(ours_model, tmp_path / "ours", signature="classification")

    class Foreign(tf.Module):
        def __init__(self):
            self.scale = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, x):
            return x * self.scale

    foreign = str(tmp_path / "foreign")
    tf.saved_model.save(Foreign(), foreign)
    tf1 = str(tmp_path / "tf1")
    _write_generic_tf1_hub_module(tf1, rng)
    files = {f"/{name}.tar.gz": open(write_archive(path, str(tmp_path / f"{name}.tar.gz")), "rb").read()
             for name, path in (("ours", ours), ("foreign", foreign), ("tf1", tf1))}

    real_load = tf.saved_model.load
    calls = []
    monkeypatch.setattr(tf.saved_model, "load", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
    with serving() as server:
        server.files.update(files)
        native = hub.load(server.url + "/ours.tar.gz")  # our export: data, no trust needed
        assert calls == [] and _max_diff(native(images), ours_model(images)) <= ATOL
        for name in ("foreign", "tf1"):
            with pytest.raises(WeightsError, match=r"running the TensorFlow program.*trust_remote_code=True"):
                hub.load(server.url + f"/{name}.tar.gz")
        assert calls == []  # refused before any TensorFlow loader ran
        assert isinstance(hub.load(server.url + "/foreign.tar.gz", trust_remote_code=True), keras.layers.TFSMLayer)
        assert isinstance(hub.load(server.url + "/tf1.tar.gz", trust_remote_code=True), tf1_hub.TF1HubLayer)
    assert isinstance(hub.load(foreign), keras.layers.TFSMLayer)  # a local path: the caller's choice
