"""One front door (issue 29 item 3): `create_model` and `hub.load` take the same Hub handles
and give the same model, and a timm repository the catalogue does not list builds from its
config.json as timm's `create_model("hf-hub:...")` does. The repositories are written by timm's
own `save_for_hf` (random weights) into an offline Hub cache laid out by tests/hf_cache.py, and
timm reads the same cache for the reference logits (max |ours - timm| <= 1e-4 * max |timm|)."""

import os
import tempfile

import numpy as np
import pytest
import timm
import torch
from timm.models._hub import save_for_hf

import keras_bigtransfer as kb
from tests import hf_cache, reference

RTOL_LOGITS = 1e-4


def _publish(cache, repo, model, **model_config):
    """timm's `save_for_hf` (config.json + model.safetensors) into the cache as `repo`."""
    with tempfile.TemporaryDirectory() as folder:
        save_for_hf(model, folder, safe_serialization=True, model_config=model_config)
        hf_cache.add_files(cache, repo, {name: os.path.join(folder, name) for name in os.listdir(folder)})


def _same_model(a, b):
    assert type(a) is type(b) and a.name == b.name and a.pretrained_cfg == b.pretrained_cfg
    assert [w.path for w in a.weights] == [w.path for w in b.weights]
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_an_uncatalogued_efficientnet_repository_builds_from_its_config(cache, rng):
    repo = "timm/tf_efficientnet_lite0.front_door_test"
    assert kb.hub.catalogue.find("hf-hub:" + repo) is None
    torch.manual_seed(0)
    labels = [f"label_{i}" for i in range(10)]
    theirs = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics (timm initializes them to 0/1)
        for module in theirs.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape))
    _publish(cache, repo, theirs, pretrained_cfg=dict(num_classes=10, label_names=labels, crop_pct=0.95,
                                                      interpolation="bilinear"))
    timm_model = timm.create_model("hf-hub:" + repo, pretrained=True).eval()  # timm reading the same cache

    images = rng.random((2, 64, 64, 3), dtype=np.float32)
    normalized = ((255.0 * images - 127.0) / 128.0).astype(np.float32)  # Lite's normalization, inside ours
    with torch.no_grad():
        expected = timm_model(torch.from_numpy(normalized.transpose(0, 3, 1, 2))).numpy()
    first = None
    for handle in ("hf-hub:" + repo, "hf://" + repo, f"hf-hub:{repo}@{hf_cache.COMMIT}"):
        ours = kb.create_model(handle)
        _same_model(ours, kb.hub.load(handle))
        assert ours.name == "efficientnet_lite0" and ours.num_classes == 10
        assert reference.max_rel_diff(np.asarray(ours(images)), expected) <= RTOL_LOGITS
        cfg = ours.pretrained_cfg
        assert cfg["input_size"] == [3, 224, 224] and cfg["crop_pct"] == 0.95 and cfg["interpolation"] == "bilinear"
        assert cfg["mean"] == [0.5] * 3 and cfg["std"] == [0.5] * 3 and cfg["label_names"] == labels
        assert cfg["tag"] == "hf-hub:" + repo and cfg["license"] == "apache-2.0" and cfg["num_classes"] == 10
        first = first or ours
        _same_model(ours, first)  # every spelling and the pinned revision: the same model
    five = kb.create_model("hf-hub:" + repo, num_classes=5)  # a new head: no label names
    assert five.num_classes == 5 and "label_names" not in five.pretrained_cfg


def test_an_uncatalogued_vit_repository_takes_its_resolution_from_its_config(cache, rng):
    repo = "timm/vit_tiny_patch16_224.front_door_test"
    theirs = reference.timm_vit("vit_tiny_patch16_224", img_size=32)
    _publish(cache, repo, theirs)
    images = rng.random((1, 32, 32, 3), dtype=np.float32)
    # timm's ViTs use the exact GELU: a model built from timm's config.json takes it (Family.timm_builds).
    ours = kb.create_model("hf-hub:" + repo)
    gelus = [layer for layer in ours.layers if type(layer).__name__ == "GELU"]
    assert gelus and not any(layer.approximate for layer in gelus)
    assert ours.pretrained_cfg["input_size"] == [3, 32, 32] and ours.num_classes == 1000
    assert reference.max_rel_diff(np.asarray(ours(images)), reference.timm_logits(theirs, images)) <= RTOL_LOGITS
    _same_model(kb.create_model("hf-hub:" + repo), kb.hub.load("hf-hub:" + repo))


@pytest.mark.parametrize("architecture", ["convnext_tiny", "efficientnet_b0"])
def test_an_architecture_of_no_family_is_named_in_one_line(cache, tmp_path, architecture):
    repo = f"timm/{architecture}.front_door_test"
    (tmp_path / "config.json").write_text(f'{{"architecture": "{architecture}", "num_classes": 1000}}')
    (tmp_path / "model.safetensors").write_bytes(b"unused")
    hf_cache.add_files(cache, repo, {n: tmp_path / n for n in ("config.json", "model.safetensors")})
    for load in (kb.create_model, kb.hub.load):
        with pytest.raises(ValueError, match=f"architecture '{architecture}'.*bit, efficientnet, vit") as error:
            load("hf-hub:" + repo)
        assert "\n" not in str(error.value)
