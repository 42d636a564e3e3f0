"""features_only against timm (issue 20): every map within 1e-4 relative, one model per family and
the hybrid, each loaded from the same published-format checkpoint (random weights) as timm.

- BiT-R50x1: timm `resnetv2_50x1_bit` with `features_only=True` (its FeatureListNet), .npz.
- EfficientNet-B0: timm `tf_efficientnet_b0` with `features_only=True`, through an
  EfficientNet-PyTorch state dict (.pth, the lukemelas names).
- ViT-Ti/16 and R50+ViT-B/16: timm's `forward_intermediates` (what its `features_only` calls),
  with and without the final norm, .npz; Ti/16 at a non-square size.
"""

import numpy as np
import pytest
import torch

import keras_bigtransfer as kb
from tests import reference

RTOL = 1e-4


def _nhwc(tensors):
    return [t.detach().permute(0, 2, 3, 1).numpy() for t in tensors]


def _check_maps(ours, theirs, info):
    assert len(ours) == len(theirs) == len(info)
    for f, a, b in zip(info, ours, theirs):
        a = np.asarray(a)
        assert a.shape == b.shape, (f["name"], a.shape, b.shape)
        assert a.shape[-1] == f["num_chs"]
        assert np.abs(b).max() > 1e-2, f["name"]  # not a vacuous (zero) map
        assert reference.max_rel_diff(a, b) <= RTOL, (f["name"], reference.max_rel_diff(a, b))


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.mark.backends
def test_bit_r50x1_matches_timm_features_only(tmp_path, rng):
    import timm

    full = reference.timm_bit("resnetv2_50x1_bit", num_classes=1000)
    path = reference.write_npz(tmp_path / "BiT-S-R50x1.npz", reference.timm_bit_to_npz_arrays(full))
    theirs_model = timm.create_model("resnetv2_50x1_bit", features_only=True).eval()
    # FeatureListNet flattens the first level of names (stem.conv -> stem_conv).
    state = {k.replace("stem.", "stem_", 1).replace("stages.", "stages_", 1): v
             for k, v in full.state_dict().items() if not k.startswith(("norm.", "head."))}
    theirs_model.load_state_dict(state, strict=True)

    model = kb.BiT_S_R50x1(weights=str(path), features_only=True)
    info = model.feature_info
    assert info.channels() == theirs_model.feature_info.channels()
    assert info.reduction() == theirs_model.feature_info.reduction()
    assert info.module_name() == theirs_model.feature_info.module_name()

    images = rng.random((2, 64, 96, 3), dtype=np.float32)
    with torch.no_grad():
        theirs = _nhwc(theirs_model(torch.from_numpy((images.transpose(0, 3, 1, 2) - 0.5) / 0.5)))
    _check_maps(model(images), theirs, info)

    # feature_norm: the last map through the final GroupNorm+ReLU (timm's norm=True).
    normed = kb.BiT_S_R50x1(weights=str(path), features_only=True, out_indices=(-1,), feature_norm=True)
    with torch.no_grad():
        x = torch.from_numpy((images.transpose(0, 3, 1, 2) - 0.5) / 0.5)
        last = _nhwc(full.forward_intermediates(x, indices=[4], norm=True, intermediates_only=True))
    _check_maps(normed(images), last, normed.feature_info)


def _efficientnet_pytorch_state(timm_model):
    """timm tf_efficientnet state -> EfficientNet-PyTorch (lukemelas) names, the published .pth layout."""
    top = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1", "classifier": "_fc"}
    first = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "se.conv_reduce": "_se_reduce",
             "se.conv_expand": "_se_expand", "conv_pw": "_project_conv", "bn2": "_bn2"}
    inner = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
             "se.conv_reduce": "_se_reduce", "se.conv_expand": "_se_expand", "conv_pwl": "_project_conv",
             "bn3": "_bn2"}
    counts = [len(stage) for stage in timm_model.blocks]
    starts = np.cumsum([0] + counts)
    out = {}
    for key, value in timm_model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith("blocks."):
            _, stage, block, rest = key.split(".", 3)
            module, weight = rest.rsplit(".", 1)
            names = first if int(stage) == 0 else inner
            out[f"_blocks.{starts[int(stage)] + int(block)}.{names[module]}.{weight}"] = value
        else:
            module, weight = key.rsplit(".", 1)
            out[f"{top[module]}.{weight}"] = value
    return out


@pytest.mark.backends
def test_efficientnet_b0_matches_timm_features_only(tmp_path, rng):
    import timm

    torch.manual_seed(0)
    full = reference.randomize_batchnorm(timm.create_model("tf_efficientnet_b0").eval(), seed=0)
    path = tmp_path / "efficientnet-b0.pth"
    torch.save(_efficientnet_pytorch_state(full), path)
    theirs_model = timm.create_model("tf_efficientnet_b0", features_only=True).eval()
    theirs_model.load_state_dict({k: v for k, v in full.state_dict().items()
                                  if not k.startswith(("conv_head", "bn2", "classifier"))}, strict=True)

    model = kb.EfficientNetB0(weights=str(path), features_only=True)
    info = model.feature_info
    assert info.channels() == theirs_model.feature_info.channels()
    assert info.reduction() == theirs_model.feature_info.reduction()
    assert info.module_name() == theirs_model.feature_info.module_name()

    images = rng.random((2, 64, 96, 3), dtype=np.float32)
    mean, std = np.array([0.485, 0.456, 0.406], "float32"), np.array([0.229, 0.224, 0.225], "float32")
    with torch.no_grad():
        theirs = _nhwc(theirs_model(torch.from_numpy(((images - mean) / std).transpose(0, 3, 1, 2).copy())))
    _check_maps(model(images), theirs, info)


def _timm_intermediates(model, images, indices, norm):
    x = torch.from_numpy((images.transpose(0, 3, 1, 2) - 0.5) / 0.5)
    with torch.no_grad():
        return _nhwc(model.forward_intermediates(x, indices=indices, norm=norm, intermediates_only=True))


@pytest.mark.parametrize("norm", [False, pytest.param(True, marks=pytest.mark.backends)])
def test_vit_ti16_matches_timm_forward_intermediates_non_square(norm, tmp_path, rng):
    tiny = reference.timm_vit("vit_tiny_patch16_224", act_layer="gelu_tanh", dynamic_img_size=True)
    path = reference.write_npz(tmp_path / "Ti_16.npz", reference.timm_vit_to_npz_arrays(tiny))
    model = kb.ViT_Ti16(weights=str(path), features_only=True, out_indices=(2, 5, -1),
                        feature_norm=norm, pos_embed_interpolation="bicubic")
    assert [f["module"] for f in model.feature_info] == ["blocks.2", "blocks.5", "blocks.11"]
    images = rng.random((1, 96, 128, 3), dtype=np.float32)
    _check_maps(model(images), _timm_intermediates(tiny, images, [2, 5, 11], norm), model.feature_info)


def test_vit_default_out_indices_are_timms():
    import timm

    theirs = timm.create_model("vit_tiny_patch16_224", features_only=True, pretrained=False)
    ours = kb.models.features.feature_info("ViT_Ti16")
    assert ours.module_name() == theirs.feature_info.module_name()
    assert ours.channels() == theirs.feature_info.channels()
    assert ours.reduction() == theirs.feature_info.reduction()


@pytest.mark.backends
@pytest.mark.slow  # a random ViT-B in both libraries: about 35 s on 2 CPU cores
def test_r50_b16_hybrid_matches_timm_forward_intermediates(tmp_path, rng):
    """As the hybrid's logits test: ours set to timm's epsilons for the comparison."""
    import keras

    hybrid = reference.timm_vit("vit_base_r50_s16_224", act_layer="gelu_tanh", img_size=64, num_classes=1000)
    path = reference.write_npz(tmp_path / "R50+ViT-B_16.npz", reference.timm_vit_to_npz_arrays(hybrid))
    model = kb.ViT_R50_B16(weights=str(path), features_only=True, out_indices=(3, 7, 11),
                           feature_norm=True, input_shape=(64, 64, 3))
    for layer in model.layers:
        if isinstance(layer, kb.layers.WSConv2D):
            layer.epsilon, layer.epsilon_mode = 1e-8, "variance"
        elif isinstance(layer, keras.layers.GroupNormalization):
            layer.epsilon = 1e-5
    images = rng.random((1, 64, 64, 3), dtype=np.float32)
    _check_maps(model(images), _timm_intermediates(hybrid, images, [3, 7, 11], True), model.feature_info)
