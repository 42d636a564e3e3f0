"""EfficientNetV2 (rows of the EfficientNet family's block table): parameter counts of timm's
tf_efficientnetv2_*, parity with tf_keras' EfficientNetV2B0 through the published keras-applications
h5 layout and with timm's tf_efficientnetv2_b0 through its state_dict (logits and features_only),
and the catalogue's published files. Every check runs on every Keras backend (tf_keras in a
TensorFlow subprocess off TensorFlow)."""

import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.models.efficientnet import layouts
from keras_bigtransfer.weights import catalogue
from tests import reference, tf_keras_reference

RTOL_LOGITS = 1e-4  # max |ours - reference| <= 1e-4 * max |reference|
SIZE = 64


def _rel(ours, theirs):
    return float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))) / np.max(np.abs(theirs)))


def _timm_count(name):
    """timm's parameters plus BatchNorm's running statistics (Keras counts them as weights)."""
    import timm

    model = timm.create_model(name, pretrained=False)
    return (sum(p.numel() for p in model.parameters())
            + sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")))


@pytest.mark.parametrize("name,timm_name,published", [
    ("EfficientNetV2B0", "tf_efficientnetv2_b0", 7.14e6), ("EfficientNetV2S", "tf_efficientnetv2_s", 21.46e6)])
def test_parameter_count_equals_timms(name, timm_name, published):
    model = getattr(kb, name)(weights=None)
    ours = model.count_params()
    assert ours == _timm_count(timm_name)
    bn_statistics = sum(int(np.prod(v.shape)) for v in model.weights if v.path.endswith(("moving_mean", "moving_variance")))
    assert round((ours - bn_statistics) / 1e4) == round(published / 1e4)  # timm's table, 1000 classes


@pytest.fixture(scope="module")
def timm_b0():
    """timm's tf_efficientnetv2_b0, random weights with non-trivial BatchNorm, its state_dict on disk."""
    import tempfile

    import timm
    import torch

    torch.manual_seed(0)
    model = reference.randomize_batchnorm(timm.create_model("tf_efficientnetv2_b0", pretrained=False).eval(), 0)
    folder = tempfile.mkdtemp(prefix="timm_v2b0_")
    path = f"{folder}/tf_efficientnetv2_b0.pth"
    torch.save(model.state_dict(), path)
    images = np.random.default_rng(0).random((2, SIZE, SIZE, 3), dtype=np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((images - mean) / std).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    return model, path, images, x


@pytest.mark.backends
def test_timm_state_dict_logits_match(timm_b0):
    import torch

    model, path, images, x = timm_b0
    with torch.no_grad():
        theirs = model(x).numpy()
    ours = kb.EfficientNetV2B0(weights=path)
    assert np.abs(theirs).max() > 0.5
    assert _rel(ours.predict_on_batch(images), theirs) <= RTOL_LOGITS


@pytest.mark.backends
def test_timm_state_dict_features_only_match(timm_b0):
    import timm
    import torch

    model, path, images, x = timm_b0
    features = timm.create_model("tf_efficientnetv2_b0", features_only=True).eval()
    features.load_state_dict({k: v for k, v in model.state_dict().items()
                              if not k.startswith(("conv_head", "bn2", "classifier"))})
    with torch.no_grad():
        theirs = [t.permute(0, 2, 3, 1).numpy() for t in features(x)]
    ours = kb.EfficientNetV2B0(weights=path, features_only=True)
    maps = ours(images)
    assert [m.shape[1] for m in maps] == [SIZE // s for s in (2, 4, 8, 16, 32)]
    assert [i["reduction"] for i in ours.feature_info] == [2, 4, 8, 16, 32]
    for mine, ref in zip(maps, theirs):
        assert _rel(mine, ref) <= RTOL_LOGITS


def test_timm_state_dict_names_its_variant(timm_b0):
    arrays = {k: v.numpy() for k, v in timm_b0[0].state_dict().items()}
    assert layouts.identify(arrays) == "EfficientNetV2B0"


@pytest.mark.backends
def test_keras_h5_logits_match_tf_keras(tmp_path):
    # tf_keras' EfficientNetV2B0 (random weights) saved with save_weights: the published h5 layout
    # (`stem_conv`, `block1a_project_conv`, `block4a_dwconv2`, `predictions`).
    path, images, theirs = tf_keras_reference.efficientnet_reference("v2b0", SIZE, tmp_path)
    ours = kb.EfficientNetV2B0(weights=path)
    assert np.abs(theirs).max() > 0.5
    assert _rel(ours.predict_on_batch(images), theirs) <= RTOL_LOGITS


def test_catalogue_has_the_keras_files_and_timms_copies():
    entries = {e.tag: e for e in catalogue.list_models("efficientnet") if e.constructor.startswith("EfficientNetV2")}
    for v in ("b0", "b1", "b2", "b3", "s", "m", "l"):
        for tag, suffix in ((f"efficientnetv2_{v}", ".h5"), (f"efficientnetv2_{v}_notop", "_notop.h5")):
            assert len(entries[tag].checksum["md5"]) == 32
            assert entries[tag].url == ("https://storage.googleapis.com/tensorflow/keras-applications/"
                                        f"efficientnet_v2/efficientnetv2-{v}{suffix}")
    for v, tags in (("s", ("in1k", "in21k_ft_in1k", "in21k")), ("xl", ("in21k_ft_in1k", "in21k"))):
        for tag in tags:
            entry = entries[f"hf-hub:timm/tf_efficientnetv2_{v}.{tag}"]
            assert entry.num_classes == (21843 if tag == "in21k" else 1000)
    assert kb.EfficientNetV2XL.variant.default_weights == "hf-hub:timm/tf_efficientnetv2_xl.in21k_ft_in1k"
