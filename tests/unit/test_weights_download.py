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


def test_interrupted_part_file_from_an_earlier_run_resumes(server):
    os.makedirs(os.path.dirname(_cached()), exist_ok=True)
    with open(_cached() + ".part", "wb") as f:
        f.write(PAYLOAD[:1000])
    hub.resolve("bit_m_r50x1", progress=False)
    assert open(_cached(), "rb").read() == PAYLOAD
    assert server.requests == [(PATH, "bytes=1000-")]


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
    # Online, the bad copy was deleted and a fresh one is fetched.
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
    assert len(constructors) == 13 + 13
    for name in constructors:
        tag = getattr(kb, name).__kwdefaults__["weights"]
        if name == "BiT_L_R152x4":
            assert tag is None  # never released
            continue
        assert catalogue.get(tag).constructor == name
