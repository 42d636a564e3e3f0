"""The published checkpoints as they really are (issue 18, items 1, 2, 3, 7, 10): each test
writes the file the way its publisher did and loads it as a user would."""

import json
import tarfile

import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.weights import archive, catalogue, download
from tests import reference


# Item 1: BiT-S-R50x3.h5 and BiT-S-R101x1.h5 hold another architecture's arrays
# (google-research/big_transfer issue 47, open).
@pytest.mark.parametrize("tag,npz", [("bit_s_r50x3_tf2", "BiT-S-R50x3.npz"), ("bit_s_r101x1_tf2", "BiT-S-R101x1.npz")])
def test_known_bad_entries_raise_before_any_download_and_name_the_npz(tag, npz, monkeypatch):
    entry = catalogue.get(tag)
    assert "issues/47" in entry.known_bad and npz in entry.known_bad

    def no_download(*args, **kwargs):
        raise AssertionError("a known-bad file must not be downloaded")

    monkeypatch.setattr(download, "fetch", no_download)
    with pytest.raises(WeightsError, match=npz.replace(".", r"\.")) as info:
        kb.hub.resolve(tag)
    assert "big_transfer/issues/47" in str(info.value)
    with pytest.raises(WeightsError, match=npz.replace(".", r"\.")):
        kb.create_model(tag)
    constructor = getattr(kb, entry.constructor)
    with pytest.raises(WeightsError, match="issues/47"):
        constructor(weights=tag)


def test_only_the_two_issue_47_files_are_known_bad():
    bad = sorted(e.tag for e in catalogue.list_models() if e.known_bad)
    assert bad == ["bit_s_r101x1_tf2", "bit_s_r50x3_tf2"]
    good = catalogue.get(catalogue.get("bit_s_r50x3_tf2").known_bad_use)
    assert good.url.endswith("BiT-S-R50x3.npz") and not good.known_bad


# Item 3: some published BiT files name kernels `standardized_conv2d_<n>/kernel`
# (big_vision's bit_paper.py renames them on load).
def test_bit_kernels_named_standardized_conv2d_n_load(tmp_path, rng):
    ref = reference.timm_bit(num_classes=5)
    arrays = reference.timm_bit_to_npz_arrays(ref)
    renamed, n = {}, 0
    for key, value in arrays.items():
        if key.endswith("standardized_conv2d/kernel"):
            n += 1
            key = key.replace("standardized_conv2d/", f"standardized_conv2d_{n}/")
        renamed[key] = value
    assert n > 50
    plain = reference.write_npz(tmp_path / "plain.npz", arrays)
    weird = reference.write_npz(tmp_path / "BiT-S-R50x1.npz", renamed)
    model = kb.BiT_S_R50x1(weights=str(weird), num_classes=5)
    expected = kb.BiT_S_R50x1(weights=str(plain), num_classes=5)
    images = rng.random((1, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(expected(images)))
    from keras_bigtransfer.models import loading

    bare = loading.model_from_checkpoint(str(weird))
    np.testing.assert_allclose(np.asarray(bare(images)), np.asarray(expected(images)), rtol=0, atol=0)


# Item 2: R50+ViT hybrids saved by flax < 0.3.6 store GroupNorm scale/bias as (1, 1, 1, C)
# (google-research/vision_transformer issue 156, fixed in its loader by PR 157).
def test_hybrid_group_norm_params_of_old_flax_load(tmp_path, rng):
    import re

    from keras_bigtransfer.models import loading

    hybrid = reference.timm_vit("vit_base_r50_s16_224", act_layer="gelu_tanh", img_size=64,
                                num_classes=10, depth=1)
    arrays = reference.timm_vit_to_npz_arrays(hybrid)
    old = {k: (v.reshape(1, 1, 1, -1) if re.search(r"(^|/)gn(_root|_proj|\d+)/(scale|bias)$", k) else v)
           for k, v in arrays.items()}
    assert sum(v.ndim == 4 and v.shape[:3] == (1, 1, 1) for v in old.values()) > 100
    flat = loading.model_from_checkpoint(str(reference.write_npz(tmp_path / "flat.npz", arrays)))
    four = loading.model_from_checkpoint(str(reference.write_npz(tmp_path / "R50+ViT-B_16.npz", old)))
    images = rng.random((1, 64, 64, 3), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(four(images)), np.asarray(flat(images)))


# Item 7: tarfile's extractall(filter=) exists only from Python 3.10.12 / 3.11.4 / 3.12.
def test_tar_extraction_works_without_tarfile_filters(tmp_path, monkeypatch):
    src = tmp_path / "module"
    (src / "variables").mkdir(parents=True)
    (src / "saved_model.pb").write_bytes(b"pb")
    (src / "variables" / "variables.index").write_bytes(b"ix")
    path = tmp_path / "module.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname=".")
    original = tarfile.TarFile.extractall

    def old_extractall(self, path=".", members=None, *, numeric_owner=False, **kwargs):
        if kwargs:  # Python 3.10.0-3.10.11 / 3.11.0-3.11.3: no filter argument
            raise TypeError(f"extractall() got an unexpected keyword argument {next(iter(kwargs))!r}")
        return original(self, path, members, numeric_owner=numeric_owner)

    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    monkeypatch.delattr(tarfile, "data_filter")
    target = archive.extract_module(str(path))
    assert open(f"{target}/saved_model.pb", "rb").read() == b"pb"
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        link = tarfile.TarInfo("evil")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ValueError, match="refusing link"):
        archive.extract_module(str(bad))


# Item 10: the AugReg ImageNet-21k checkpoints have real heads and no pre_logits.
def test_vit_catalogue_describes_augreg_i21k_heads_as_real():
    from importlib import resources

    about = json.loads((resources.files("keras_bigtransfer") / "weights" / "catalogue" / "vit.json").read_text())["about"]
    text = " ".join(about) if isinstance(about, list) else about
    assert "AugReg" in text and "real" in text
    assert "The i21k checkpoints carry a tanh pre_logits layer and deliberately zeroed heads" not in text
    augreg_i21k = [e for e in catalogue.list_models("vit")
                   if "augreg" in e.url.lower() and e.fine_tuned_on is None and e.pretrained_on == "ImageNet-21k"]
    assert augreg_i21k and all(e.num_classes == 21843 for e in augreg_i21k)


# timm's ImageNet top-1 of the files the catalogue holds (huggingface/pytorch-image-models
# results/results-imagenet.csv at aa4b5850).
TIMM_TOP1 = {
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k": 75.452, "vit_tiny_patch16_384.augreg_in21k_ft_in1k": 78.438,
    "vit_small_patch16_224.augreg_in21k_ft_in1k": 81.402, "vit_small_patch16_384.augreg_in21k_ft_in1k": 83.814,
    "vit_small_patch32_224.augreg_in21k_ft_in1k": 76.010, "vit_small_patch32_384.augreg_in21k_ft_in1k": 80.476,
    "vit_base_patch8_224.augreg_in21k_ft_in1k": 85.838,
    "vit_base_patch16_224.augreg_in21k_ft_in1k": 84.534, "vit_base_patch16_384.augreg_in21k_ft_in1k": 86.010,
    "vit_base_patch32_224.augreg_in21k_ft_in1k": 80.732, "vit_base_patch32_384.augreg_in21k_ft_in1k": 83.358,
    "vit_large_patch16_224.augreg_in21k_ft_in1k": 85.856, "vit_large_patch16_384.augreg_in21k_ft_in1k": 87.096,
    "vit_large_patch32_384.orig_in21k_ft_in1k": 81.508, "vit_base_r50_s16_384.orig_in21k_ft_in1k": 84.988,
}


def test_vit_docs_top1_column_is_the_catalogued_files_numbers():
    import pathlib

    from keras_bigtransfer.models import registry

    docs = (pathlib.Path(__file__).parents[2] / "docs" / "vit.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line.split("|")[-2] for line in docs.splitlines()
            if line.startswith("| `ViT_")}
    checked = 0
    for variant in registry.variants("vit"):
        entry = catalogue.get(variant.default_weights)
        for res, tag in ((entry.resolution, entry.tag), (384, entry.tag + "_384")):
            other = catalogue.find(tag)
            names = [a for a in (other.aliases if other else ()) if a in TIMM_TOP1]
            if other is None or not names:
                continue
            assert f"{TIMM_TOP1[names[0]]:.2f} ({other.resolution})" in rows[variant.name], (variant.name, tag)
            checked += 1
    assert checked == 15


def test_a_local_copy_of_a_known_bad_file_is_refused_by_name(tmp_path):
    """BiT-S-R50x3.h5 as published holds R50x1-shaped arrays: hub.load would build an R50x1 and
    call it by the file's name, a constructor would fail on 100+ shapes; both name issue 47."""
    from keras_bigtransfer.models import loading

    arrays = {"resnet/root_block/standardized_conv2d/kernel": np.zeros((7, 7, 3, 64), np.float32)}
    path = reference.write_bit_tf2_h5(tmp_path / "BiT-S-R50x3.h5", arrays)
    with pytest.raises(WeightsError, match=r"issues/47.*BiT-S-R50x3\.npz"):
        loading.model_from_checkpoint(str(path))
    with pytest.raises(WeightsError, match=r"issues/47"):
        kb.BiT_S_R50x3(weights=str(path))
    renamed = reference.write_bit_tf2_h5(tmp_path / "mine.h5", arrays)
    with pytest.raises(Exception) as info:  # any other name: read as what it holds
        loading.model_from_checkpoint(str(renamed))
    assert "issues/47" not in str(info.value)
