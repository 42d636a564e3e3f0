"""Weights are resolved once on the constructor path (issue 29 item 2): the catalogue is asked
about each name once, `revision=` is pinned once, the file is located, sniffed and its headers
read once, for a local file, a catalogue tag and a Hub handle at a revision, from an offline Hub
cache laid out by the test (tests/hf_cache.py). Before: 2-4 lookups, 2-4 pins, 3 sniffs, 2 header
reads and 2 downloads per constructor call."""

import collections

import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.weights import catalogue, checkpoint, hf_hub
from keras_bigtransfer.weights.resolve import ResolvedWeights, resolve_weights
from tests import hf_cache

REPO = "timm/tf_efficientnet_b0.ns_jft_in1k"  # catalogued


@pytest.fixture(scope="module")
def timm_files(tmp_path_factory):
    """config.json and model.safetensors of a random timm tf_efficientnet_b0 (timm's writer)."""
    import timm
    import torch
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("timm_b0")
    save_for_hf(timm.create_model("tf_efficientnet_b0", pretrained=False).eval(), str(folder), safe_serialization=True)
    return {name: folder / name for name in ("config.json", "model.safetensors")}


@pytest.fixture
def calls(tmp_path, monkeypatch, timm_files):
    """The Hub cache holding REPO at `main`; every resolution step counted."""
    hf_cache.use_cache(monkeypatch, tmp_path / "hub")
    snapshot = hf_cache.add_files(tmp_path / "hub", REPO, timm_files)
    seen = collections.Counter()
    for module, name in ((catalogue, "find"), (hf_hub, "pin"), (hf_hub, "download"),
                         (checkpoint, "sniff_format"), (checkpoint, "read_arrays")):
        real = getattr(module, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            seen[(_name, args[0] if _name == "find" else None)] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    seen.snapshot = snapshot
    return seen


def _steps(seen):
    """{step: calls}, catalogue lookups per name: every value must be 1."""
    return {f"{name}({arg})" if arg else name: n for (name, arg), n in seen.items()}


@pytest.mark.parametrize("weights", ["local", "tag", "hf-hub@rev", "revision="])
def test_each_resolution_step_runs_once(calls, weights):
    kwargs = {
        "local": dict(weights=f"{calls.snapshot}/model.safetensors"),
        "tag": dict(weights="hf://" + REPO),  # the catalogue's alias of the tag
        "hf-hub@rev": dict(weights=f"hf-hub:{REPO}@{hf_cache.COMMIT}"),
        "revision=": dict(weights="hf-hub:" + REPO, revision="main"),
    }[weights]
    model = kb.EfficientNetB0(input_shape=(32, 32, 3), **kwargs)
    assert model.num_classes == 1000
    steps = _steps(calls)
    assert all(n == 1 for n in steps.values()), steps
    assert steps["sniff_format"] == steps["read_arrays"] == 1
    assert steps.get("download", 0) == (weights != "local")
    assert steps.get("pin", 0) <= 1


def test_a_resolved_record_passes_through_and_is_not_resolved_again(calls):
    resolved = resolve_weights("hf-hub:" + REPO, "main")
    assert isinstance(resolved, ResolvedWeights) and resolved.entry.tag == "hf-hub:" + REPO
    assert resolved.weights == f"hf-hub:{REPO}@main" and resolved.revision == "main" and resolved.pinned
    assert resolve_weights(resolved) is resolved
    calls.clear()
    model = kb.EfficientNetB0(weights=resolved, input_shape=(32, 32, 3))
    kb.hub.load_weights(model, resolved)
    assert _steps(calls) == {"download": 1, "sniff_format": 1, "read_arrays": 1}  # once for both
    with pytest.raises(ValueError, match="names revision 'main' and revision='v1'"):
        resolve_weights(resolved, "v1")
