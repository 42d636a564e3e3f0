"""Weights from the Hugging Face Hub, offline: a Hub cache laid out as huggingface_hub lays it
out (tests/hf_cache.py), holding timm models of random weights written by timm's own
`save_for_hf` (config.json + model.safetensors), `HF_HUB_OFFLINE=1`. Our model loaded by
handle is compared with timm loading the same cache (`pretrained=True` with the handle as
`hf_hub_id`): max |ours - timm| <= 1e-4 * max |timm| on the logits.
"""

import numpy as np
import pytest
import timm
import torch

import keras_bigtransfer as kb
from keras_bigtransfer.errors import OfflineError
from tests import hf_cache, reference

RTOL_LOGITS = 1e-4


def _timm_from_cache(architecture, repo, **kwargs):
    # num_classes in the overlay: timm drops a checkpoint's head whose class count differs from
    # its configuration's (vit_base_r50_s16_224's default weights are headless).
    overlay = dict(hf_hub_id=repo, num_classes=kwargs.get("num_classes", 1000))
    return timm.create_model(architecture, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs).eval()


def _randomize_bn(model, seed=0):
    """Non-trivial BatchNorm statistics and affine (timm initializes them to 0/1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
    return model


def _torch_logits(model, normalized):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(normalized.transpose(0, 3, 1, 2)))).numpy()


def test_bit_r50x1_by_handle_matches_timm_reading_the_same_cache(cache, rng):
    repo = "timm/resnetv2_50x1_bit.goog_in21k_ft_in1k"
    hf_cache.add_timm_model(cache, repo, reference.timm_bit())
    images = rng.random((2, 64, 64, 3), dtype=np.float32)
    theirs = reference.timm_logits(_timm_from_cache("resnetv2_50x1_bit", repo), images)
    for handle in ("hf-hub:" + repo, "hf://" + repo):
        ours = kb.BiT_M_R50x1(weights=handle)  # the catalogue entry sizes the head: 1000
        assert ours.output_shape[-1] == 1000
        assert reference.max_rel_diff(np.asarray(ours(images)), theirs) <= RTOL_LOGITS


def test_vit_ti16_by_handle_matches_timm_exact_and_tanh_gelu(cache, rng):
    """timm's ViT uses the exact GELU; weights trained with it (augreg2, timm's fine-tunes) load
    with gelu_approximate=False. The JAX-trained ones use the tanh form, our default."""
    images = rng.random((1, 224, 224, 3), dtype=np.float32)
    exact_repo = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    hf_cache.add_timm_model(cache, exact_repo, reference.timm_vit("vit_tiny_patch16_224"))
    theirs = reference.timm_logits(_timm_from_cache("vit_tiny_patch16_224", exact_repo), images)
    ours = kb.ViT_Ti16(weights="hf-hub:" + exact_repo, gelu_approximate=False)
    assert reference.max_rel_diff(np.asarray(ours(images)), theirs) <= RTOL_LOGITS

    tanh_repo = "timm/vit_tiny_patch16_224.tanh_test"  # not catalogued: the head is read off the file
    hf_cache.add_timm_model(cache, tanh_repo, reference.timm_vit("vit_tiny_patch16_224", seed=1,
                                                                act_layer="gelu_tanh"))
    theirs = reference.timm_logits(
        _timm_from_cache("vit_tiny_patch16_224", tanh_repo, act_layer="gelu_tanh"), images)
    ours = kb.create_model("ViT_Ti16", weights="hf-hub:" + tanh_repo)
    assert ours.output_shape[-1] == 1000
    assert reference.max_rel_diff(np.asarray(ours(images)), theirs) <= RTOL_LOGITS


@pytest.mark.parametrize("variant,architecture,repo", [
    ("EfficientNetB0", "tf_efficientnet_b0", "timm/tf_efficientnet_b0.ns_jft_in1k"),
    ("EfficientNetLite0", "tf_efficientnet_lite0", "timm/tf_efficientnet_lite0.in1k"),
])
def test_efficientnet_by_handle_matches_timm(cache, rng, variant, architecture, repo):
    torch.manual_seed(0)
    model = _randomize_bn(timm.create_model(architecture, pretrained=False).eval())
    hf_cache.add_timm_model(cache, repo, model)
    images = rng.random((2, 64, 72, 3), dtype=np.float32)
    # Our models normalize inside; timm is fed the same normalized pixels.
    if "lite" in architecture:
        normalized = (255.0 * images - 127.0) / 128.0
    else:
        normalized = (images - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    theirs = _torch_logits(_timm_from_cache(architecture, repo), normalized.astype(np.float32))
    ours = kb.create_model("hf-hub:" + repo)  # by tag: the catalogue entry names the constructor
    assert type(ours).__name__ == "ImageModel" and ours.name == "efficientnet_" + variant[12:].lower()
    assert reference.max_rel_diff(np.asarray(ours(images)), theirs) <= RTOL_LOGITS


@pytest.mark.slow
def test_vit_r50_hybrid_by_handle_matches_timm(cache, rng):
    """The hybrid (ViT-B, 98M parameters): timm's ResNet uses eps 1e-8 on the kernel variance and
    GroupNorm eps 1e-5; set ours to those for the comparison (as test_vit_parity does)."""
    import keras

    repo = "timm/vit_base_r50_s16_384.orig_in21k_ft_in1k"
    hf_cache.add_timm_model(cache, repo, reference.timm_vit("vit_base_r50_s16_224", img_size=64, num_classes=1000))
    ours = kb.ViT_R50_B16(weights="hf-hub:" + repo, gelu_approximate=False, input_shape=(64, 64, 3))
    for layer in ours.layers:
        if isinstance(layer, kb.layers.WSConv2D):
            layer.epsilon, layer.epsilon_mode = 1e-8, "variance"
        elif isinstance(layer, keras.layers.GroupNormalization):
            layer.epsilon = 1e-5
    images = rng.random((1, 64, 64, 3), dtype=np.float32)
    theirs = reference.timm_logits(_timm_from_cache("vit_base_r50_s16_224", repo, img_size=64, num_classes=1000), images)
    assert reference.max_rel_diff(np.asarray(ours(images)), theirs) <= RTOL_LOGITS


def test_local_safetensors_and_pytorch_bin_revision_and_offline_errors(cache, rng, tmp_path):
    repo = "timm/resnetv2_50x1_bit.goog_distilled_in1k"
    timm_model = reference.timm_bit(seed=3)
    other = "fedcba9876543210fedcba9876543210fedcba98"
    snapshot = hf_cache.add_timm_model(cache, repo, timm_model)
    # An older revision, only as pytorch_model.bin, reachable by commit but not by `main`.
    hf_cache.add_timm_model(cache, repo, reference.timm_bit(seed=4), commit=other, ref=None,
                            safetensors=False)
    images = rng.random((1, 48, 48, 3), dtype=np.float32)
    expected = reference.timm_logits(timm_model, images)

    local = kb.BiT_M_R50x1(weights=str(snapshot / "model.safetensors") if hasattr(snapshot, "joinpath")
                           else snapshot + "/model.safetensors")
    assert reference.max_rel_diff(np.asarray(local(images)), expected) <= RTOL_LOGITS

    old = kb.BiT_M_R50x1(weights=f"hf-hub:{repo}@{other}")
    assert reference.max_rel_diff(np.asarray(old(images)),
                                  reference.timm_logits(reference.timm_bit(seed=4), images)) <= RTOL_LOGITS

    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE.*models--timm--resnetv2_50x1_bit.goog_in21k"):
        kb.BiT_M_R50x1(weights="hf-hub:timm/resnetv2_50x1_bit.goog_in21k")
    with pytest.raises(ValueError, match="org/name"):
        kb.BiT_M_R50x1(weights="hf-hub:resnetv2_50x1_bit")


def test_revision_keyword_loads_that_revision_everywhere(cache, rng):
    """Two revisions of a ViT-Ti repository (32 px, tanh GELU: our default, so that hub.load
    compares too): `main` and branch `v1` (another commit). `revision=` in constructors,
    create_model, hub.load and hub.load_weights reads v1, as `@v1` in the handle does; compared
    with timm's logits of each revision."""
    from keras_bigtransfer import hub

    repo, old = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", "fedcba9876543210fedcba9876543210fedcba98"
    new_model, old_model = (reference.timm_vit("vit_tiny_patch16_224", seed=seed, img_size=32,
                                               act_layer="gelu_tanh") for seed in (0, 1))
    hf_cache.add_timm_model(cache, repo, new_model)
    hf_cache.add_timm_model(cache, repo, old_model, commit=old, ref="v1")
    images = rng.random((1, 32, 32, 3), dtype=np.float32)
    expected_new, expected_old = (reference.timm_logits(m, images) for m in (new_model, old_model))
    assert reference.max_rel_diff(expected_new, expected_old) > 0.1  # the revisions differ

    def check(model, expected):
        assert reference.max_rel_diff(np.asarray(model(images)), expected) <= RTOL_LOGITS

    # About 10 s: four ViT-Ti builds, one per way of naming the revision.
    handle, shape = "hf-hub:" + repo, (32, 32, 3)
    model = kb.ViT_Ti16(weights=handle, revision="v1", input_shape=shape)
    check(model, expected_old)
    check(kb.create_model(handle, revision=old, input_shape=shape), expected_old)
    check(kb.create_model(f"{handle}@v1", input_shape=shape), expected_old)
    check(hub.load(handle, revision="v1"), expected_old)  # another revision: built from the file
    hub.load_weights(model, handle, revision="main")  # back to main, into the built model
    check(model, expected_new)
