"""BiT against an independent implementation (timm) through the published .npz format."""

import numpy as np
import pytest
import torch

import keras_bigtransfer as kb
from tests import reference

# Tolerance on logits: max |ours - timm| <= 1e-4 * max |timm|. timm's BiT uses
# eps 1e-8 in weight standardization, the official code (and we) 1e-10.
RTOL_LOGITS = 1e-4


@pytest.fixture(scope="module")
def timm_r50x1():
    torch.set_num_threads(2)
    return reference.timm_bit("resnetv2_50x1_bit", num_classes=1000)


@pytest.fixture(scope="module")
def npz_r50x1(timm_r50x1, tmp_path_factory):
    path = tmp_path_factory.mktemp("bit") / "BiT-M-R50x1.npz"
    return reference.write_npz(path, reference.timm_bit_to_npz_arrays(timm_r50x1))


_timm_logits = reference.timm_logits
_max_rel_diff = reference.max_rel_diff


def test_timm_reads_the_npz_we_test_with(timm_r50x1, npz_r50x1):
    """The written file is a real BiT npz: timm's own loader accepts it and restores every weight."""
    fresh = reference.timm_bit("resnetv2_50x1_bit", num_classes=1000, seed=1)
    fresh.load_pretrained(str(npz_r50x1))
    for (name, a), b in zip(timm_r50x1.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


@pytest.mark.backends
@pytest.mark.parametrize("size", [(128, 128), (96, 160)])
def test_npz_logits_match_timm(timm_r50x1, npz_r50x1, size, rng):
    images = rng.random((2, *size, 3), dtype=np.float32)
    model = kb.BiT_M_R50x1(weights=str(npz_r50x1), num_classes=1000)
    ours = np.asarray(model(images))
    theirs = _timm_logits(timm_r50x1, images)
    assert ours.shape == theirs.shape == (2, 1000)
    assert np.abs(theirs).max() > 1.0  # a zero head would make the test vacuous
    assert _max_rel_diff(ours, theirs) <= RTOL_LOGITS


def test_tf2_h5_loads_the_same_weights(timm_r50x1, npz_r50x1, tmp_path, rng):
    arrays = reference.timm_bit_to_npz_arrays(timm_r50x1)
    h5_path = reference.write_bit_tf2_h5(tmp_path / "BiT-M-R50x1.h5", arrays)
    from_npz = kb.BiT_M_R50x1(weights=str(npz_r50x1), num_classes=1000)
    from_h5 = kb.BiT_M_R50x1(weights=str(h5_path), num_classes=1000)
    for a, b in zip(from_npz.weights, from_h5.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    images = rng.random((1, 64, 64, 3), dtype=np.float32)
    assert _max_rel_diff(np.asarray(from_h5(images)), _timm_logits(timm_r50x1, images)) <= RTOL_LOGITS


def test_features_match_timm(timm_r50x1, npz_r50x1, rng):
    images = rng.random((2, 64, 64, 3), dtype=np.float32)
    model = kb.BiT_M_R50x1(weights=str(npz_r50x1), include_top=False, pooling="avg")
    ours = np.asarray(model(images))
    x = torch.from_numpy((images.transpose(0, 3, 1, 2) - 0.5) / 0.5)
    with torch.no_grad():
        theirs = timm_r50x1.forward_features(x).mean(dim=(2, 3)).numpy()
    assert ours.shape == (2, 2048)
    assert _max_rel_diff(ours, theirs) <= RTOL_LOGITS


# Parameter counts against timm for every constructor: tests/families/test_harness.py.
def _timm_param_count(arch, num_classes):
    import timm

    with torch.device("meta"):
        model = timm.create_model(f"resnetv2_{arch}_bit", num_classes=num_classes)
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_paper_table():
    # ../shared/reference/bit.md, derived from bit_pytorch/models.py (backbone + 1k head); the
    # harness holds BiT-S-R152x4 to timm's count.
    assert _timm_param_count("50x1", 1000) == 25_549_352
    assert round(_timm_param_count("152x4", 1000) / 1e6, 2) == 936.53
