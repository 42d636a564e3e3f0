"""A shared cache cannot be turned against its owner: nothing the cache writes follows a link
(issue 26 item 1); and what the package writes has the umask's modes, not 0600/0700 (issue 25
item 8)."""

import os
import stat
import tarfile

import numpy as np
import pytest

from keras_bigtransfer import hub
from keras_bigtransfer.errors import CacheError
from keras_bigtransfer.weights import archive, atomic, download
from tests.http_server import serving

PATH = "/bit_models/BiT-M-R50x1.npz"
PAYLOAD = os.urandom(4096)


@pytest.fixture
def server(monkeypatch):
    with serving() as srv:
        srv.files[PATH] = PAYLOAD
        monkeypatch.setenv("KERAS_BIGTRANSFER_MIRROR", srv.url)
        monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
        yield srv


@pytest.fixture
def victim(tmp_path):
    """A file outside the cache that a planted link points at."""
    path = tmp_path / "victim.txt"
    path.write_bytes(b"precious")
    return path


def _dest():
    return os.path.join(download.cache_dir(), "bit_models", "BiT-M-R50x1.npz")


def _plant(link, target):
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(target, link)


# --- 26.1: no write follows a link -------------------------------------------------------

def test_a_planted_part_link_is_refused_and_its_target_untouched(server, victim):
    """The issue's case: `<file>.part` -> victim, `<file>.part.json` naming the same URL."""
    import json

    _plant(_dest() + ".part", victim)
    with open(_dest() + ".part.json", "w") as f:
        json.dump({"url": server.url + PATH, "validator": server.etag_of(PAYLOAD), "total": None}, f)
    with pytest.raises(CacheError, match=r"\.part is a symbolic link"):
        hub.resolve("bit_m_r50x1", progress=False)
    assert victim.read_bytes() == b"precious"
    assert os.path.islink(_dest() + ".part") and not os.path.exists(_dest())


@pytest.mark.parametrize("suffix", [".lock", ".part.json"])
def test_a_planted_link_beside_the_file_is_refused(server, victim, suffix):
    _plant(_dest() + suffix, victim)
    with pytest.raises(CacheError, match="symbolic link"):
        hub.resolve("bit_m_r50x1", progress=False)
    assert victim.read_bytes() == b"precious"


def test_pins_replace_a_planted_link_instead_of_writing_through_it(server, victim):
    _plant(_dest() + ".sha256", victim)
    path = hub.resolve("bit_m_r50x1", progress=False)
    assert open(path, "rb").read() == PAYLOAD
    assert victim.read_bytes() == b"precious"
    assert not os.path.islink(_dest() + ".sha256")


def test_a_linked_directory_in_the_cache_is_refused(server, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _plant(os.path.join(download.cache_dir(), "bit_models"), outside)
    with pytest.raises(CacheError, match="bit_models is a symbolic link"):
        hub.resolve("bit_m_r50x1", progress=False)
    assert list(outside.iterdir()) == []


def test_a_planted_link_to_a_directory_is_never_taken_as_an_extracted_module(tmp_path):
    module = tmp_path / "module.tar.gz"
    (tmp_path / "saved_model.pb").write_bytes(b"x")
    with tarfile.open(module, "w:gz") as tar:
        tar.add(tmp_path / "saved_model.pb", arcname="saved_model.pb")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    key = download.file_digest(str(module), "sha256")[:20]
    _plant(os.path.join(download.cache_dir(), "modules", key), elsewhere)
    with pytest.raises(CacheError, match="symbolic link"):
        archive.extract_module(str(module))
    assert list(elsewhere.iterdir()) == []


def test_atomic_file_refuses_a_link_swapped_in_for_its_temporary_file(tmp_path, victim):
    with pytest.raises(CacheError):
        with atomic.atomic_file(str(tmp_path / "out.txt")) as tmp:
            os.remove(tmp)
            os.symlink(victim, tmp)
    assert victim.read_bytes() == b"precious" and not (tmp_path / "out.txt").exists()


def test_open_no_follow_never_truncates_a_fifo_or_follows_a_link(tmp_path, victim):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    os.symlink(victim, link)
    for path in (fifo, link):
        for mode in ("wb", "ab", "rb+"):
            with pytest.raises(CacheError):
                atomic.open_no_follow(str(path), mode)
    assert victim.read_bytes() == b"precious"


# --- 25.8: every writer respects the umask ---------------------------------------------------

@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writers_give_the_umasks_modes(tmp_path, umask_022):
    with atomic.atomic_file(str(tmp_path / "a.npz"), suffix=".npz") as tmp:
        np.savez(tmp, x=np.zeros(2))
    with atomic.atomic_directory(str(tmp_path / "folder")) as staging:
        with open(os.path.join(staging, "f"), "w") as f:
            f.write("x")
    assert _mode(tmp_path / "a.npz") == 0o644
    assert _mode(tmp_path / "folder") == 0o755 and _mode(tmp_path / "folder" / "f") == 0o644
    os.umask(0o027)
    with atomic.atomic_file(str(tmp_path / "b.txt")) as tmp, open(tmp, "w") as f:
        f.write("x")
    assert _mode(tmp_path / "b.txt") == 0o640 and _mode(atomic.make_temp_directory("t", str(tmp_path))) == 0o750


def test_downloads_and_pins_give_the_umasks_modes(server, umask_022):
    path = hub.resolve("bit_m_r50x1", progress=False)
    assert _mode(path) == 0o644 and _mode(path + ".sha256") == 0o644


def test_umask_is_read_without_changing_it(umask_022):
    assert atomic.umask() == 0o022 and atomic.file_mode() == 0o644 and atomic.directory_mode() == 0o755
    assert os.umask(0o022) == 0o022
