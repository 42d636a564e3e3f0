"""The catalogue and downloads, against a real HTTP server on loopback."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer import hub
from keras_bigtransfer.errors import ChecksumError, DownloadError, OfflineError
from keras_bigtransfer.weights import catalogue, download
from tests.http_server import serving
from tests.toys import ROOT

PATH = "/bit_models/BiT-M-R50x1.npz"
PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)


@pytest.fixture
def server(monkeypatch):
    with serving() as srv:
        srv.files[PATH] = PAYLOAD
        monkeypatch.setenv("KERAS_BIGTRANSFER_MIRROR", srv.url)
        monkeypatch.delenv("KERAS_BIGTRANSFER_OFFLINE")
        yield srv


def _cached(name="bit_models/BiT-M-R50x1.npz"):
    return os.path.join(download.cache_dir(), *name.split("/"))


# --- catalogue ---------------------------------------------------------------------------

def test_catalogue_lists_every_bit_checkpoint():
    entries = [e for e in hub.list_models("bit") if not e.url.startswith("hf-hub:")]  # timm's Hub copies: test_hf_hub
    assert {e.family for e in hub.list_models()} >= {"bit", "efficientnet"}
    tags = [e.tag for e in entries]
    assert len(tags) == len(set(tags))
    for flavour in ("s", "m"):
        for arch in ("r50x1", "r50x3", "r101x1", "r101x3", "r152x2", "r152x4"):
            assert f"bit_{flavour}_{arch}" in tags
            assert f"bit_m_{arch}_ilsvrc2012" in tags
    for e in entries:
        assert e.url.startswith("https://storage.googleapis.com/bit_models/")
        assert e.format in ("npz", "h5") and e.license and e.pretrained_on and e.num_classes > 0
        assert e.resolution > 0 and e.normalization and hasattr(kb, e.constructor)
    assert "bit_m_r152x2_tf2" not in tags  # no TF2 release of R152x2


def test_aliases_and_defaults():
    entry = catalogue.get("BiT-M-R101x3")
    assert entry.tag == "bit_m_r101x3" and entry.pretrained_on == "ImageNet-21k"
    assert entry.num_classes == 21843
    assert kb.BiT_M_R101x3.__kwdefaults__["weights"] == "bit_m_r101x3"
    assert kb.BiT_S_R50x1.__kwdefaults__["weights"] == "bit_s_r50x1"
    assert kb.BiT_L_R152x4.__kwdefaults__["weights"] is None
    with pytest.raises(ValueError, match="not in the weights catalogue"):
        catalogue.get("bit_m_r999x9")


def test_wrong_architecture_is_refused_before_download(server):
    # The constructor factory checks the tag's architecture (the weights layer names no family).
    with pytest.raises(ValueError, match="BiT_M_R101x3"):
        kb.BiT_M_R50x1(weights="bit_m_r101x3")
    assert server.requests == []  # nothing was downloaded


# --- downloads ---------------------------------------------------------------------------

def test_download_pins_sha256_and_uses_the_cache(server):
    path = hub.resolve("bit_m_r50x1", progress=False)
    assert path == _cached()
    assert open(path, "rb").read() == PAYLOAD
    pinned = open(path + ".sha256").read().split()[0]
    assert pinned == hashlib.sha256(PAYLOAD).hexdigest()
    assert not os.path.exists(path + ".part")
    hub.resolve("bit_m_r50x1", progress=False)
    assert server.full_gets(PATH) == 1


def test_truncated_response_resumes_with_range(server):
    server.faults[PATH] = ["truncate"]
    path = hub.resolve("bit_m_r50x1", progress=False)
    assert open(path, "rb").read() == PAYLOAD
    ranges = [r for p, r in server.requests if p == PATH and r]
    assert ranges == [f"bytes={len(PAYLOAD) // 2}-"]


def _interrupted_run(server, monkeypatch):
    """An earlier run that died mid-download: it leaves half the file in `.part`."""
    server.faults[PATH] = ["truncate"]
    monkeypatch.setattr(download, "RETRIES", 1)
    with pytest.raises(DownloadError):
        hub.resolve("bit_m_r50x1", progress=False)
    monkeypatch.setattr(download, "RETRIES", 5)
    assert os.path.getsize(_cached() + ".part") == len(PAYLOAD) // 2 and not os.path.exists(_cached())
    server.requests.clear()
    server.if_ranges.clear()


def test_interrupted_part_file_from_an_earlier_run_resumes(server, monkeypatch):
    _interrupted_run(server, monkeypatch)
    hub.resolve("bit_m_r50x1", progress=False)
    assert open(_cached(), "rb").read() == PAYLOAD
    assert server.requests == [(PATH, f"bytes={len(PAYLOAD) // 2}-")]
    assert server.if_ranges == [server.etag_of(PAYLOAD)]  # resumed only if the file is unchanged
    assert not os.path.exists(_cached() + ".part.json")


def test_server_ignoring_range_restarts_cleanly(server):
    server.faults[PATH] = ["truncate", "ignore_range"]
    hub.resolve("bit_m_r50x1", progress=False)
    assert open(_cached(), "rb").read() == PAYLOAD


def test_dropped_connection_is_retried(server):
    server.faults[PATH] = ["drop", "drop"]
    hub.resolve("bit_m_r50x1", progress=False)
    assert open(_cached(), "rb").read() == PAYLOAD


def test_wrong_bytes_against_published_checksum(server):
    server.faults[PATH] = ["wrong"]
    expected = hashlib.md5(PAYLOAD).hexdigest()
    actual = hashlib.md5(bytes(reversed(PAYLOAD))).hexdigest()
    with pytest.raises(ChecksumError) as info:
        download.fetch("https://example.invalid" + PATH, PATH[1:], {"md5": expected}, progress=False)
    message = str(info.value)
    assert _cached() in message and expected in message and actual in message
    assert not os.path.exists(_cached()) and not os.path.exists(_cached() + ".part")
    # The next attempt gets good bytes and passes.
    download.fetch("https://example.invalid" + PATH, PATH[1:], {"md5": expected}, progress=False)


def test_corrupted_cache_is_detected_against_the_pin(server, monkeypatch):
    path = hub.resolve("bit_m_r50x1", progress=False)
    with open(path, "r+b") as f:
        f.write(b"garbage")
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "1")
    with pytest.raises(ChecksumError, match="expected"):
        hub.resolve("bit_m_r50x1", progress=False)
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
    # Offline the bad copy was set aside; online a fresh one is fetched.
    assert open(hub.resolve("bit_m_r50x1", progress=False), "rb").read() == PAYLOAD


def test_offline_missing_file_says_what_to_place_where():
    with pytest.raises(OfflineError) as info:
        hub.resolve("bit_m_r50x1", progress=False)
    message = str(info.value)
    assert "https://storage.googleapis.com/bit_models/BiT-M-R50x1.npz" in message
    assert _cached() in message


def test_offline_with_file_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "bit_models").mkdir(parents=True)
    (mirror / "bit_models" / "BiT-M-R50x1.npz").write_bytes(PAYLOAD)
    monkeypatch.setenv("KERAS_BIGTRANSFER_MIRROR", mirror.as_uri())
    assert open(hub.resolve("bit_m_r50x1", progress=False), "rb").read() == PAYLOAD


def test_http_404_is_a_clear_error(server):
    del server.files[PATH]
    with pytest.raises(DownloadError, match="404"):
        hub.resolve("bit_m_r50x1", progress=False)


def test_bad_mirror_scheme(monkeypatch):
    monkeypatch.setenv("KERAS_BIGTRANSFER_MIRROR", "ftp://mirror")
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
    with pytest.raises(ValueError, match="https://, http:// or file://"):
        hub.resolve("bit_m_r50x1", progress=False)


def test_two_processes_end_with_one_good_file(server):
    server.faults[PATH] = ["slow"]
    code = (
        "import os, sys; os.environ['CUDA_VISIBLE_DEVICES']='';"
        "from keras_bigtransfer.weights import download;"
        f"print(download.fetch('https://x.invalid{PATH}', '{PATH[1:]}', progress=False))"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0].decode().strip().splitlines()[-1] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outputs == [_cached(), _cached()]
    assert open(_cached(), "rb").read() == PAYLOAD
    assert server.full_gets(PATH) == 1
    leftovers = [n for n in os.listdir(os.path.dirname(_cached())) if n.endswith(".part")]
    assert leftovers == []


def test_constructor_with_a_tag_downloads_verifies_and_loads(server, tmp_path, rng):
    from keras_bigtransfer.models.bit import convert as bit_convert

    source = kb.BiT_M_R50x1(weights=None, num_classes=1000)
    head = source.get_layer("head")
    head.kernel.assign(rng.normal(0, 0.05, head.kernel.shape).astype("float32"))
    npz = bit_convert.save_npz(source, tmp_path / "ckpt.npz")
    server.files[PATH] = open(npz, "rb").read()
    model = kb.BiT_M_R50x1(weights="BiT-M-R50x1", num_classes=1000)
    images = rng.random((1, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(source(images)))


def test_every_constructor_defaults_to_a_catalogue_entry_of_its_own():
    constructors = [n for n in dir(kb) if n.startswith(("BiT_", "EfficientNet"))]
    assert len(constructors) == 13 + 14 + 8  # BiT 13; EfficientNet B0-B7, Lite0-4, L2 (issue 18); V2 B0-B3, S-XL
    for name in constructors:
        tag = getattr(kb, name).__kwdefaults__["weights"]
        if name == "BiT_L_R152x4":
            assert tag is None  # never released
            continue
        assert catalogue.get(tag).constructor == name


# --- a cache that breaks nothing (issue 15: items 3, 17) ------------------------------------

def _rejected():
    folder = os.path.dirname(_cached())
    return [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".rejected")]


def test_offline_never_deletes_a_file_placed_by_hand(server, monkeypatch):
    path = hub.resolve("bit_m_r50x1", progress=False)  # pins the first download
    by_hand = os.urandom(5000)  # e.g. the publisher's newer file, copied in as the error tells users to
    with open(path, "wb") as f:
        f.write(by_hand)
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "1")
    with pytest.raises(ChecksumError) as info:
        hub.resolve("bit_m_r50x1", progress=False)
    [aside] = _rejected()
    assert open(aside, "rb").read() == by_hand  # set aside, not deleted
    message = str(info.value)
    assert "Nothing was deleted" in message and aside in message and path + ".sha256" in message
    # Following the message: drop the older pin, move the file back; it is used and pinned.
    os.remove(path + ".sha256")
    os.replace(aside, path)
    assert open(hub.resolve("bit_m_r50x1", progress=False), "rb").read() == by_hand
    assert open(path + ".sha256").read().split()[0] == hashlib.sha256(by_hand).hexdigest()


def test_offline_published_checksum_mismatch_sets_the_file_aside(monkeypatch):
    os.makedirs(os.path.dirname(_cached()), exist_ok=True)
    with open(_cached(), "wb") as f:
        f.write(b"not the published file")
    with pytest.raises(ChecksumError, match="published"):
        download.fetch("https://x.invalid" + PATH, PATH[1:], {"md5": hashlib.md5(PAYLOAD).hexdigest()})
    [aside] = _rejected()
    assert open(aside, "rb").read() == b"not the published file"


def test_offline_file_mirror_replaces_a_bad_cached_file_without_deleting_it(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "bit_models").mkdir(parents=True)
    (mirror / "bit_models" / "BiT-M-R50x1.npz").write_bytes(PAYLOAD)
    monkeypatch.setenv("KERAS_BIGTRANSFER_MIRROR", mirror.as_uri())
    path = hub.resolve("bit_m_r50x1", progress=False)
    with open(path, "r+b") as f:
        f.write(b"garbage")
    assert open(hub.resolve("bit_m_r50x1", progress=False), "rb").read() == PAYLOAD
    [aside] = _rejected()
    assert open(aside, "rb").read()[:7] == b"garbage"


def test_online_corrupted_cache_is_downloaded_again(server):
    path = hub.resolve("bit_m_r50x1", progress=False)
    with open(path, "r+b") as f:
        f.write(b"garbage")
    assert open(hub.resolve("bit_m_r50x1", progress=False), "rb").read() == PAYLOAD
    assert server.full_gets(PATH) == 2
    # The same with a published checksum.
    url, checksum = "https://x.invalid" + PATH, {"md5": hashlib.md5(PAYLOAD).hexdigest()}
    with open(path, "r+b") as f:
        f.write(b"garbage")
    assert open(download.fetch(url, PATH[1:], checksum, progress=False), "rb").read() == PAYLOAD


def test_online_cached_file_is_kept_until_its_replacement_is_verified(server):
    path = hub.resolve("bit_m_r50x1", progress=False)
    with open(path + ".sha256", "w") as f:  # a pin that disagrees with the (good) cached file
        f.write("0" * 64 + "  BiT-M-R50x1.npz\n")
    del server.files[PATH]
    with pytest.raises(DownloadError, match="404"):
        hub.resolve("bit_m_r50x1", progress=False)
    assert open(path, "rb").read() == PAYLOAD  # not deleted before a replacement existed
    # A download that fails the published checksum leaves the cached copy alone too.
    server.files[PATH] = PAYLOAD
    server.faults[PATH] = ["wrong"]
    with pytest.raises(ChecksumError, match="left as it was"):
        download.fetch("https://x.invalid" + PATH, PATH[1:], {"sha256": "1" * 64}, progress=False)
    assert open(path, "rb").read() == PAYLOAD


@pytest.mark.parametrize("pin", ["", "\n", "not-a-digest  BiT-M-R50x1.npz\n"])
@pytest.mark.parametrize("mode", ["0", "1"])
def test_unreadable_pin_is_reported_and_replaced(server, monkeypatch, caplog, pin, mode):
    path = hub.resolve("bit_m_r50x1", progress=False)
    with open(path + ".sha256", "w") as f:
        f.write(pin)
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", mode)
    assert hub.resolve("bit_m_r50x1", progress=False) == path
    assert "holds no SHA-256" in caplog.text
    assert open(path + ".sha256").read().split()[0] == hashlib.sha256(PAYLOAD).hexdigest()
    assert server.full_gets(PATH) == 1


def test_bad_published_checksum_is_refused_before_any_work():
    with pytest.raises(ValueError, match="md5 or sha256"):
        download.fetch("https://x.invalid" + PATH, PATH[1:], {"crc32": "abcd"})


# --- only a complete download is pinned (issue 15: item 7) ---------------------------------

def test_body_without_length_cut_short_is_not_pinned(server, caplog):
    server.faults[PATH] = ["no_length_truncate"]
    path = hub.resolve("bit_m_r50x1", progress=False)
    # The cut cannot be seen (no size was given): honest is to keep the file but pin nothing.
    assert os.path.getsize(path) == len(PAYLOAD) // 2
    assert not os.path.exists(path + ".sha256") and os.path.exists(path + ".unverified")
    assert "served without a size" in caplog.text
    # Later calls use it without pinning it (a pin would vouch for a cut file).
    assert hub.resolve("bit_m_r50x1", progress=False) == path
    assert not os.path.exists(path + ".sha256")
    assert server.full_gets(PATH) == 1


def test_body_without_length_is_verified_by_a_published_checksum(server):
    server.faults[PATH] = ["no_length_truncate", "no_length"]
    url, checksum = "https://x.invalid" + PATH, {"sha256": hashlib.sha256(PAYLOAD).hexdigest()}
    with pytest.raises(ChecksumError):
        download.fetch(url, PATH[1:], checksum, progress=False)
    path = download.fetch(url, PATH[1:], checksum, progress=False)
    assert open(path, "rb").read() == PAYLOAD and not os.path.exists(path + ".unverified")


def test_chunked_body_is_complete_and_pinned_and_a_cut_one_resumes(server):
    server.faults[PATH] = ["chunked_truncate", "chunked"]
    path = hub.resolve("bit_m_r50x1", progress=False)
    assert open(path, "rb").read() == PAYLOAD
    assert open(path + ".sha256").read().split()[0] == hashlib.sha256(PAYLOAD).hexdigest()
    assert not os.path.exists(path + ".unverified")


def test_http_416_restarts_from_zero(server, monkeypatch):
    _interrupted_run(server, monkeypatch)
    server.faults[PATH] = ["416"]
    path = hub.resolve("bit_m_r50x1", progress=False)
    assert open(path, "rb").read() == PAYLOAD  # a 416 was once taken as "complete"
    assert server.requests == [(PATH, f"bytes={len(PAYLOAD) // 2}-"), (PATH, None)]


def test_part_of_a_changed_file_is_not_resumed(server, monkeypatch):
    _interrupted_run(server, monkeypatch)
    new = os.urandom(len(PAYLOAD))  # the publisher replaced the file meanwhile
    server.files[PATH] = new
    path = hub.resolve("bit_m_r50x1", progress=False)
    assert open(path, "rb").read() == new
    assert server.if_ranges == [server.etag_of(PAYLOAD)]  # If-Range failed, so the server sent it all


@pytest.mark.parametrize("etag", [True, False])
def test_resume_needs_a_validator(server, monkeypatch, etag):
    server.etag = etag
    server.last_modified = False
    _interrupted_run(server, monkeypatch)
    new = os.urandom(len(PAYLOAD))
    server.files[PATH] = new
    assert open(hub.resolve("bit_m_r50x1", progress=False), "rb").read() == new
    if not etag:  # nothing to tell a changed file by: start over rather than splice two files
        assert server.requests == [(PATH, None)]


def test_last_modified_serves_as_validator(server, monkeypatch):
    server.etag = False
    _interrupted_run(server, monkeypatch)
    assert open(hub.resolve("bit_m_r50x1", progress=False), "rb").read() == PAYLOAD
    assert server.if_ranges == [server.modified(PAYLOAD)]


def test_part_without_a_record_is_not_resumed(server):
    os.makedirs(os.path.dirname(_cached()), exist_ok=True)
    with open(_cached() + ".part", "wb") as f:  # origin unknown: maybe another file's bytes
        f.write(b"x" * 1000)
    assert open(hub.resolve("bit_m_r50x1", progress=False), "rb").read() == PAYLOAD
    assert server.requests == [(PATH, None)]


@pytest.mark.parametrize("fault", ["range_from_zero", "wrong_total"])
def test_206_for_the_wrong_range_restarts(server, monkeypatch, fault):
    _interrupted_run(server, monkeypatch)
    server.faults[PATH] = [fault]
    path = hub.resolve("bit_m_r50x1", progress=False)
    assert open(path, "rb").read() == PAYLOAD
    assert server.requests == [(PATH, f"bytes={len(PAYLOAD) // 2}-"), (PATH, None)]
