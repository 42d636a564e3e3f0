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
  TensorFlow2 variations).

This module names no family.
"""

import urllib.parse

from keras_bigtransfer.extras import require

PREFIX = "kaggle://"
COMPRESSED = ("tf-hub-format", "compressed")


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
    if len(parts) not in (4, 5) or not all(parts) or (len(parts) == 5 and not parts[4].isdigit()):
        raise ValueError(
            f"{handle!r}: a Kaggle model handle is kaggle://<owner>/<model>/<framework>/<variation>"
            "[/<version>] (e.g. kaggle://google/bit/tensorFlow2/m-r50x1/1)."
        )
    return path


def download(handle):
    """The local folder of a `kaggle://` model, through kagglehub (and its cache)."""
    path = parse(handle)
    # (an https://www.kaggle.com/models/... URL needs nothing more)
    kagglehub = require("kagglehub", extra="kaggle", for_what="A kaggle:// handle")
    return kagglehub.model_download(path)
