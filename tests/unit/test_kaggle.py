"""Kaggle Models (where tfhub.dev redirects): kaggle.com URLs fetched as compressed modules on a
loopback server, and kaggle:// handles through kagglehub.

kagglehub talks to Kaggle's API (not a plain file server), so the kaggle:// test replaces the
kagglehub module with a fake that records the call: what is tested is our handle parsing and
the call into kagglehub, not kagglehub's download.
"""

import io
import os
import sys
import tarfile
import types

import numpy as np
import pytest
import tensorflow as tf

from keras_bigtransfer import hub
from keras_bigtransfer.weights import kaggle
from tests.http_server import serving


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A small foreign SavedModel (doubles its input) and its .tar.gz, as a Hub module is served."""
    folder = tmp_path_factory.mktemp("kaggle") / "module"

    class Double(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, x):
            return 2.0 * x

    module = Double()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.__call__})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return folder, buffer.getvalue()


def test_compressed_url_adds_the_query_to_every_http_handle():
    assert kaggle.compressed_url("https://www.kaggle.com/models/google/bit/TensorFlow2/m-r50x1/1") == (
        "https://www.kaggle.com/models/google/bit/TensorFlow2/m-r50x1/1?tf-hub-format=compressed")
    assert kaggle.compressed_url("https://example.com/m?x=1") == "https://example.com/m?x=1&tf-hub-format=compressed"
    kept = "https://tfhub.dev/google/bit/m-r50x1/1?tf-hub-format=compressed"
    assert kaggle.compressed_url(kept) == kept


def test_kaggle_url_downloads_the_compressed_module(saved_model, monkeypatch, tmp_path):
    """The server answers HTML unless asked for the compressed module, as kaggle.com does."""
    monkeypatch.setenv("KERAS_BIGTRANSFER_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
    path = "/models/google/bit/TensorFlow2/m-r50x1/1"
    with serving() as server:
        server.files[path] = saved_model[1]
        original = server.httpd.RequestHandlerClass.do_GET

        def do_get(handler):
            if handler.path.startswith(path) and "tf-hub-format=compressed" not in handler.path:
                body = b"<html>Kaggle</html>"
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)
                return
            original(handler)

        monkeypatch.setattr(server.httpd.RequestHandlerClass, "do_GET", do_get)
        model = hub.load(server.url + path, trust_remote_code=True)  # a foreign module: a program
    assert server.urls == [path + "?tf-hub-format=compressed"]
    out = model(np.ones((1, 2, 2, 3), np.float32))
    out = next(iter(out.values())) if isinstance(out, dict) else out
    np.testing.assert_allclose(np.asarray(out), 2.0)


def test_kaggle_handle_goes_through_kagglehub(saved_model, monkeypatch):
    calls = []
    fake = types.ModuleType("kagglehub")
    fake.model_download = lambda handle: calls.append(handle) or str(saved_model[0])
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")  # online: kagglehub downloads
    model = hub.load("kaggle://google/bit/tensorFlow2/m-r50x1/1", trust_remote_code=True)  # a program
    assert calls == ["google/bit/tensorFlow2/m-r50x1/1"]
    out = model(np.ones((1, 2, 2, 3), np.float32))
    out = next(iter(out.values())) if isinstance(out, dict) else out
    np.testing.assert_allclose(np.asarray(out), 2.0)
    assert kaggle.parse("kaggle://keras/resnetv2/keras/resnet_v2_50_imagenet") == "keras/resnetv2/keras/resnet_v2_50_imagenet"
    for bad in ("kaggle://google/bit", "kaggle://google/bit/tf2/m-r50x1/latest"):
        with pytest.raises(ValueError, match="owner"):
            hub.load(bad)
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # not installed
    with pytest.raises(ImportError, match=r"keras_bigtransfer\[kaggle\]"):
        kaggle.download("kaggle://google/bit/tensorFlow2/m-r50x1/1")


@pytest.mark.parametrize("handle", [
    "kaggle://../../x/y/1", "kaggle://google/../tensorFlow2/m-r50x1/1", "kaggle://google/bit/./m-r50x1",
    "kaggle://google/bit/tensorFlow2/..", "kaggle://google/bit/tensorFlow2/m r50x1/1", "kaggle://goo\\gle/bit/tf2/v/1",
])
def test_kaggle_handle_parts_outside_kaggles_alphabet_are_refused(handle, monkeypatch):
    """kagglehub makes each part a cache folder: '.', '..' or a stray character never reaches it."""
    fake = types.ModuleType("kagglehub")
    fake.model_download = lambda handle: pytest.fail("kagglehub was called")
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
    with pytest.raises(ValueError, match="never '.' or '..'"):
        kaggle.download(handle)


def _kagglehub_cache(monkeypatch, tmp_path, saved_model, versions):
    """A kagglehub cache (KAGGLEHUB_CACHE) holding `versions` of google/bit/tensorFlow2/m-r50x1,
    laid out and marked complete by kagglehub's own cache code; kagglehub's network calls fail."""
    import shutil

    import kagglehub
    from kagglehub import cache
    from kagglehub.handle import parse_model_handle

    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    for version in versions:
        handle = parse_model_handle(f"google/bit/tensorFlow2/m-r50x1/{version}")
        shutil.copytree(saved_model[0], cache.get_cached_path(handle))
        cache.Cache().mark_as_complete(handle)
    monkeypatch.setattr(kagglehub, "model_download", lambda *a, **k: pytest.fail("kagglehub went online"))


def test_offline_kaggle_handle_reads_kagglehubs_cache_only(saved_model, monkeypatch, tmp_path):
    from keras_bigtransfer.errors import OfflineError

    _kagglehub_cache(monkeypatch, tmp_path, saved_model, versions=(1, 2))
    expected = os.path.join(str(tmp_path / "kagglehub"), "models", "google", "bit", "tensorFlow2", "m-r50x1")
    assert kaggle.download("kaggle://google/bit/tensorFlow2/m-r50x1/1") == os.path.join(expected, "1")
    assert kaggle.download("kaggle://google/bit/tensorFlow2/m-r50x1") == os.path.join(expected, "2")  # newest
    model = hub.load("kaggle://google/bit/tensorFlow2/m-r50x1/2", trust_remote_code=True)  # a program
    out = model(np.ones((1, 2, 2, 3), np.float32))
    out = next(iter(out.values())) if isinstance(out, dict) else out
    np.testing.assert_allclose(np.asarray(out), 2.0)
    with pytest.raises(OfflineError, match="KERAS_BIGTRANSFER_OFFLINE is set.*kagglehub's cache"):
        kaggle.download("kaggle://google/bit/tensorFlow2/m-r50x1/3")


def test_kaggle_with_the_network_down_names_the_network_at_once(monkeypatch):
    import time

    import kagglehub
    import requests

    from keras_bigtransfer.errors import DownloadError

    def down(*args, **kwargs):  # what kagglehub raises when api.kaggle.com does not resolve
        raise requests.ConnectionError("Failed to resolve 'api.kaggle.com' ([Errno -2] Name or service not known)")

    monkeypatch.setattr(kagglehub, "model_download", down)
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "0")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="cannot reach the server.*network.*KERAS_BIGTRANSFER_OFFLINE=1"):
        kaggle.download("kaggle://google/bit/tensorFlow2/m-r50x1/1")
    assert time.monotonic() - start < 5
