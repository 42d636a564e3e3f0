"""Models on Kaggle (where tfhub.dev has redirected since November 2023).

Two kinds of handle:

- http(s) URLs, kaggle.com's (`https://www.kaggle.com/models/google/bit/TensorFlow2/m-r50x1/1`)
  and any other: like `tensorflow_hub`'s `HttpCompressedFileResolver`, we ask for the
  compressed module by adding `tf-hub-format=compressed` to the query of every http(s)
  handle (`compressed_url`), then download the `.tar.gz` with our verified downloader.
  Without the query kaggle.com answers with its HTML page.
- `kaggle://<owner>/<model>/<framework>/<variation>[/<version>]`: through `kagglehub`, as
  keras-hub does (`kagglehub.model_download(handle)`), which caches under `KAGGLEHUB_CACHE`
  (default `~/.cache/kagglehub`) and returns the model's folder (a SavedModel for
  TensorFlow2 variations). Offline (`KERAS_BIGTRANSFER_OFFLINE=1`) only that cache is read.

This module names no family.
"""

import os
import re
import urllib.parse

from keras_bigtransfer.errors import DownloadError, OfflineError
from keras_bigtransfer.extras import require

PREFIX = "kaggle://"
COMPRESSED = ("tf-hub-format", "compressed")
# One part of a Kaggle model handle: Kaggle's slugs (owner, model, variation: letters, digits,
# '-', '_', '.'; frameworks such as 'tensorFlow2'), starting with a letter or digit, so never
# '.' or '..': kagglehub makes each part a folder of its cache (models/<owner>/<model>/...).
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_handle(value):
    """Whether `value` is a `kaggle://` handle."""
    return isinstance(value, str) and value.strip().lower().startswith(PREFIX)


def compressed_url(url):
    """`url` with `tf-hub-format=compressed` in its query (kept when already there)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(k == COMPRESSED[0] for k, _ in query):
        return url
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query + [COMPRESSED])))


def parse(handle):
    """`kaggle://owner/model/framework/variation[/version]` -> the kagglehub handle
    `owner/model/framework/variation[/version]`."""
    value = handle.strip()
    if not is_handle(value):
        raise ValueError(f"{handle!r} is not a kaggle:// handle.")
    path = value[len(PREFIX):].strip("/")
    parts = path.split("/")
    if (len(parts) not in (4, 5) or not all(_SLUG.fullmatch(p) for p in parts[:4])
            or (len(parts) == 5 and not parts[4].isdigit())):
        raise ValueError(
            f"{handle!r}: a Kaggle model handle is kaggle://<owner>/<model>/<framework>/<variation>"
            "[/<version>] (e.g. kaggle://google/bit/tensorFlow2/m-r50x1/1): each part letters, digits, "
            "'-', '_' or '.' starting with a letter or digit (never '.' or '..'), the version a number."
        )
    return path


def download(handle):
    """The local folder of a `kaggle://` model, through kagglehub (and its cache).

    Offline (`KERAS_BIGTRANSFER_OFFLINE`), kagglehub's cache alone answers (a handle without
    a version takes the newest version cached) and nothing is asked of the network.

    Raises:
        ValueError: the handle is malformed (before anything else).
        OfflineError: offline and the model is not in kagglehub's cache (says where).
        DownloadError: kaggle.com cannot be reached (names the network and the offline switch).
    """
    path = parse(handle)
    # (an https://www.kaggle.com/models/... URL needs nothing more)
    kagglehub = require("kagglehub", extra="kaggle", for_what="A kaggle:// handle")
    from keras_bigtransfer.weights.download import ENV_OFFLINE, network_message, offline

    if offline():
        cached, where = _cached(path)
        if cached is None:
            raise OfflineError(
                f"{handle}: {ENV_OFFLINE} is set and the model is not in kagglehub's cache ({where}). "
                "Download it once online (kagglehub.model_download), or unset the switch."
            )
        return cached
    import requests  # kagglehub's HTTP client

    try:
        return kagglehub.model_download(path)
    except (requests.ConnectionError, requests.Timeout) as e:  # no answer: say so at once
        raise DownloadError(network_message(handle, e)) from e


def _cached(path):
    """(folder or None, where it would be) of a model in kagglehub's cache; the newest version
    cached for a handle without one. Read with kagglehub's own cache layout and markers."""
    from kagglehub import cache
    from kagglehub.handle import parse_model_handle

    model = parse_model_handle(path)
    if model.is_versioned():
        return cache.Cache().load_from_cache(model), cache.get_cached_path(model)
    versions_dir = os.path.dirname(cache.get_cached_path(model.with_version(1)))
    versions = sorted((int(v) for v in (os.listdir(versions_dir) if os.path.isdir(versions_dir) else ())
                       if v.isdigit()), reverse=True)
    for version in versions:
        found = cache.Cache().load_from_cache(model.with_version(version))
        if found is not None:
            return found, found
    return None, versions_dir
