"""`revision=` for Hugging Face Hub weights (issue 18): a Hub cache laid out offline
(tests/hf_cache.py) with two revisions of one repository; the revision asked for is the one
read. The files are placeholders: `resolve` returns paths, it reads no weights."""

import os

import pytest

import keras_bigtransfer as kb
from keras_bigtransfer import hub
from keras_bigtransfer.weights import hf_hub
from tests import hf_cache

REPO = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # catalogued: its tag is the handle
OLD = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    hf_cache.use_cache(monkeypatch, tmp_path / "hub")
    for commit, ref, content in ((hf_cache.COMMIT, "main", b"new"), (OLD, "v1", b"old")):
        (tmp_path / content.decode()).write_bytes(content)
        hf_cache.add_files(tmp_path / "hub", REPO, {"model.safetensors": tmp_path / content.decode()},
                           commit=commit, ref=ref)
    return tmp_path / "hub"


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_revision_picks_the_snapshot_by_branch_commit_or_handle(cache):
    assert _read(hub.resolve("hf-hub:" + REPO)) == b"new"  # refs/main
    for revision in ("v1", OLD):
        path = hub.resolve("hf-hub:" + REPO, revision=revision)
        assert _read(path) == b"old" and f"snapshots{os.sep}{OLD}" in path
    assert _read(hub.resolve(f"hf://{REPO}@v1", revision="v1")) == b"old"  # the same revision twice
    assert _read(hub.resolve("hf-hub:" + REPO, revision="main")) == b"new"


def test_revision_is_refused_before_any_download_for_other_weights(cache, tmp_path):
    local = tmp_path / "new"
    for weights in ("bit_m_r50x1", str(local), "kaggle://google/bit/tensorFlow2/m-r50x1/1"):
        with pytest.raises(ValueError, match="applies to weights from the Hugging Face Hub"):
            hub.resolve(weights, revision="v1")
    with pytest.raises(ValueError, match="names revision 'v1' and revision='main'"):
        hub.resolve(f"hf-hub:{REPO}@v1", revision="main")
    with pytest.raises(ValueError, match="branch, tag or commit"):
        hf_hub.pin("hf-hub:" + REPO, "")
    # Constructors, create_model, hub.load and load_weights refuse it before building anything.
    with pytest.raises(ValueError, match="weights='bit_m_r50x1' is not one"):
        kb.BiT_M_R50x1(revision="v1")
    with pytest.raises(ValueError, match="weights=None is not one"):
        kb.create_model("vit_ti16", weights=None, revision="v1")
    with pytest.raises(ValueError, match="names revision 'v1' and revision='main'"):
        kb.create_model(f"hf-hub:{REPO}@v1", revision="main")
    with pytest.raises(ValueError, match="is not one"):
        hub.load(str(local), revision="v1")
    with pytest.raises(ValueError, match="is not one"):
        hub.load_weights(object(), str(local), revision="v1")


def test_a_pinned_revision_keeps_its_catalogue_entry(monkeypatch):
    """A catalogued repository at a revision is built as its entry says (ViT's pretrained
    resolution, the entry's checks); only the class count is read off the pinned file. Nothing is
    built or downloaded: the family's builder and the loaders are recorded."""
    from keras_bigtransfer.models import loading, registry

    import dataclasses
    import types

    seen = {}
    built = types.SimpleNamespace(inputs=[types.SimpleNamespace(shape=(None, 384, 384, 3))], num_classes=1000,
                                  head_spec={"first_conv": "patch_embed"}, weights=[], data_format="channels_last",
                                  set_pretrained_cfg=lambda **cfg: seen.update(cfg=cfg))
    family = dataclasses.replace(registry.get_family("vit"), build=lambda config, **kw: seen.update(kw) or built)
    monkeypatch.setattr(registry, "get_family", lambda name: family)
    monkeypatch.setattr(loading, "load_weights", lambda model, weights, **kw: seen.update(loaded=weights.weights))
    monkeypatch.setattr(loading, "checkpoint_classes", lambda weights, fam: seen.update(read=weights.weights) or 1000)
    tag = "hf-hub:timm/vit_base_patch16_384.augreg_in21k_ft_in1k"
    for call in (lambda: kb.ViT_B16(weights=tag, revision="v1"), lambda: kb.create_model(tag + "@v1")):
        seen.clear()
        assert call() is built
        assert seen["weights_entry"].tag == tag and seen["weights_entry"].resolution == 384
        assert seen["loaded"] == seen["read"] == tag + "@v1" and seen["num_classes"] == 1000
    with pytest.raises(ValueError, match="ViT_B32"):  # the entry's architecture check still runs
        kb.ViT_B32(weights=tag, revision="v1")
    seen.clear()  # a headless entry at a revision is the pooled backbone, as without one
    assert kb.create_model("hf-hub:timm/vit_base_patch16_224.orig_in21k@v1") is built
    assert seen["include_top"] is False and seen["pooling"] == "avg"
