"""Weights from the Hugging Face Hub: timm's handles, through `huggingface_hub` and its cache.

    hf-hub:timm/resnetv2_50x1_bit.goog_in21k_ft_in1k      (timm's handle)
    hf://timm/vit_base_patch16_224.augreg2_in21k_ft_in1k   (the same, URL style)
    hf-hub:timm/tf_efficientnet_b0.ns_jft_in1k@<revision>  (a branch, tag or commit)

`download(handle)` returns the local path of the repository's weights: `model.safetensors`
when the repository has it, else `pytorch_model.bin` (read with `torch.load(weights_only=True)`).
Files live in the Hub's own cache (`HF_HUB_CACHE`, or `HF_HOME/hub`, default
`~/.cache/huggingface/hub`: `models--<org>--<name>/snapshots/<commit>/...`, `refs/<branch>`),
shared with timm, transformers and every other Hub user. `HF_HUB_OFFLINE=1` (or
`KERAS_BIGTRANSFER_OFFLINE=1`) reads that cache only; both are read at call time.

This module names no family: the arrays keep timm's key names, and each family's
`convert.py` maps them.
"""

import hashlib
import json
import logging
import os
import re

from keras_bigtransfer.errors import CacheError, ChecksumError, DownloadError, OfflineError
from keras_bigtransfer.weights.atomic import atomic_file, cache_path, open_no_follow
from keras_bigtransfer.weights.download import cache_dir as download_cache_dir
from keras_bigtransfer.weights.download import network_message

from keras_bigtransfer.extras import require

log = logging.getLogger(__name__)

PREFIXES = ("hf-hub:", "hf://")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_handle(value):
    """Whether `value` is a Hugging Face Hub handle (`hf-hub:org/name` or `hf://org/name`)."""
    return isinstance(value, str) and value.strip().lower().startswith(PREFIXES)


def parse(handle, revision=None):
    """`hf-hub:org/name[@revision]` -> (repo_id, revision or None).

    An explicit `revision=` wins over one written in the handle.
    """
    value = handle.strip()
    prefix = next((p for p in PREFIXES if value.lower().startswith(p)), None)
    if prefix is None:
        raise ValueError(f"{handle!r} is not a Hugging Face Hub handle (hf-hub:org/name or hf://org/name).")
    rest = value[len(prefix):].strip("/")
    rest, _, pinned = rest.partition("@")
    parts = rest.split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"{handle!r}: a Hugging Face Hub handle names one repository, org/name "
            "(e.g. hf-hub:timm/resnetv2_50x1_bit.goog_in21k_ft_in1k)."
        )
    _check_repo_id(handle, rest)
    revision = revision or pinned or None
    if revision is not None:
        _check_revision(revision)
    return rest, revision


def _check_repo_id(handle, repo_id):
    """The Hub's own rule for repository ids (huggingface_hub `validate_repo_id`: letters,
    digits, `-`, `_`, `.`; no `--` or `..`; no leading or trailing `-` or `.`), so no part can
    be `.` or `..` and the cache folder `models--<org>--<name>` stays inside the cache."""
    _hub()  # the install hint when huggingface_hub is missing
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"{handle!r}: {repo_id!r} is not a Hugging Face Hub repository id ({e})") from None


# A git ref (git check-ref-format): `/`-separated parts, none empty, starting with `.` or ending
# with `.lock`, no `..`; restricted here to the characters Hub branches, tags and commits use.
# huggingface_hub keeps `refs/<revision>` in its cache, so `..` there would write outside it.
_REF_PART = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*")


def _check_revision(revision):
    if (not isinstance(revision, str) or not revision.strip() or ".." in revision
            or not all(_REF_PART.fullmatch(p) and not p.endswith(".lock") for p in revision.strip().split("/"))):
        raise ValueError(f"revision= must be a branch, tag or commit of a Hugging Face Hub repository "
                         f"(e.g. 'main', 'v1.0', 'refs/pr/1' or a commit hash: letters, digits, '.', '_', "
                         f"'-', '+', parts separated by '/', no '..'); got {revision!r}.")
    return revision.strip()


def pin(weights, revision):
    """`weights` with `revision=` written into it: `hf-hub:org/name@revision`.

    `revision=` is the keyword timm, keras-hub and huggingface_hub users pass; here it becomes
    the handle's `@revision`, so one string names the weights from then on.

    Args:
        weights: a Hub handle (`hf-hub:org/name[@rev]`, `hf://org/name[@rev]`), or a catalogue
            tag whose file is on the Hub (its URL is such a handle).
        revision: a branch, tag or commit; None returns `weights` as it is.

    Raises:
        ValueError: `weights` is not Hub weights (None, a local file, a catalogue tag of
            another source, a TF Hub or Kaggle handle), `revision` is empty, or the handle
            already names another revision. Nothing is downloaded before.
    """
    if revision is None:
        return weights
    revision = _check_revision(revision)
    handle = weights if is_handle(weights) else None
    if handle is None and isinstance(weights, str) and not os.path.exists(weights):
        from keras_bigtransfer.weights import catalogue

        entry = catalogue.find(weights)
        if entry is not None and is_handle(entry.url):
            handle = entry.url
    if handle is None:
        raise ValueError(
            f"revision={revision!r} applies to weights from the Hugging Face Hub (hf-hub:org/name, "
            f"hf://org/name, or a catalogue tag whose file is on the Hub); weights={weights!r} is "
            "not one. Drop revision=, or name the Hub repository."
        )
    repo_id, pinned = parse(handle)
    if pinned is not None and pinned != revision:
        raise ValueError(
            f"{handle!r} names revision {pinned!r} and revision={revision!r} names another; "
            "give the revision once."
        )
    return f"hf-hub:{repo_id}@{revision}"


def _env_true(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def offline():
    """`HF_HUB_OFFLINE` (huggingface_hub's switch) or `KERAS_BIGTRANSFER_OFFLINE`, read now."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or _env_true("KERAS_BIGTRANSFER_OFFLINE")


def cache_dir():
    """The Hub cache, from the environment as it is now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return os.path.expanduser(os.environ["HUGGINGFACE_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def _hub():
    return require("huggingface_hub", extra="hf", for_what="A Hugging Face Hub handle (hf-hub:)")


def _fetch(repo_id, filename, revision, local_only=None):
    """One file of the repository through huggingface_hub, verified against its blob name;
    None when the repository (or, offline, the cache) lacks it."""
    hub = _hub()
    from huggingface_hub import errors

    local = offline() if local_only is None else local_only
    try:
        path = hub.hf_hub_download(
            repo_id, filename, revision=revision, cache_dir=cache_dir(), local_files_only=local,
            library_name="keras_bigtransfer",
        )
    except errors.LocalEntryNotFoundError as e:
        if local:
            return None  # not in the cache
        # Online, huggingface_hub raises this when the Hub did not answer and no copy is cached.
        raise DownloadError(network_message(f"hf-hub:{repo_id}", e.__cause__ or e)) from e
    except errors.EntryNotFoundError:
        return None  # the Hub answered: the repository has no such file
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as e:
        raise ValueError(f"hf-hub:{repo_id}{'@' + revision if revision else ''}: {e}") from None
    except errors.HfHubHTTPError as e:
        raise DownloadError(f"hf-hub:{repo_id}: {e}") from e
    return verify_blob(path, f"hf-hub:{repo_id}", filename)


PROBE_TIMEOUT = 10  # seconds: huggingface_hub's own HEAD timeout (HF_HUB_ETAG_TIMEOUT)


def _unreachable(repo_id, filename, revision):
    """The error when the Hub gives no answer at all (DNS, refused, no route, timeout), else None.

    One HEAD request without retries (`get_hf_file_metadata`, `retry_on_errors=False`):
    `hf_hub_download` retries a network error with back-off for most of a minute before it
    falls back to the cache, and then reports the file as missing.
    """
    hub = _hub()
    from huggingface_hub import errors

    try:
        hub.get_hf_file_metadata(hub.hf_hub_url(repo_id, filename, revision=revision), timeout=PROBE_TIMEOUT)
    except (errors.HfHubHTTPError, errors.OfflineModeIsEnabled):
        return None  # an HTTP answer (a 404 included), or huggingface_hub's own offline switch
    except Exception as e:  # noqa: BLE001 - whatever the HTTP client raises when nothing answered
        return e
    return None


def _fetch_all(repo_id, filenames, revision):
    """The first of `filenames` the repository has (path, or None): online, one quick check that
    the Hub answers first; when it does not, a cached copy, else a `DownloadError` naming the
    network at once."""
    local = offline()
    if not local:
        problem = _unreachable(repo_id, filenames[0], revision)
        if problem is not None:
            for filename in filenames:
                path = _fetch(repo_id, filename, revision, local_only=True)
                if path is not None:
                    log.warning("hf-hub:%s: the Hub cannot be reached (%s); using the cached %s.",
                                repo_id, problem, path)
                    return path
            raise DownloadError(network_message(f"hf-hub:{repo_id}", problem))
    for filename in filenames:
        path = _fetch(repo_id, filename, revision, local_only=local)
        if path is not None:
            return path
    return None


VERIFIED_DIR = "hf-verified"  # under KERAS_BIGTRANSFER_HOME: one marker per verified blob


def verify_blob(path, source, filename):
    """`path` (a file of the Hub cache), once its blob matches its name.

    The Hub cache names each blob by its content: the SHA-256 for LFS files (weights), the git
    blob SHA-1 for small files (config.json). The first read checks it; a marker keyed by the
    blob's name, size and modification time (`<KERAS_BIGTRANSFER_HOME>/hf-verified/<blob>`,
    written atomically, never through a link) spares the hashing on later reads. A file that
    is not a `blobs/<hex>` link target (a copy, on file systems without links) is returned
    as it is: it has no name to check against.

    Raises:
        ChecksumError: the blob's bytes do not match its name (naming the blob and the cure).
    """
    blob = os.path.realpath(path)
    name = os.path.basename(blob)
    if os.path.basename(os.path.dirname(blob)) != "blobs" or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", name):
        return path
    st = os.stat(blob)
    stamp = f"{name} {st.st_size} {st.st_mtime_ns}\n"
    marker = cache_path(download_cache_dir(), f"{VERIFIED_DIR}/{name}")
    try:
        with open_no_follow(marker, "r") as f:
            if f.read() == stamp:
                return path
    except (FileNotFoundError, CacheError):
        pass  # never verified, or something else is there: hash now, and replace it below
    actual = _blob_digest(blob, len(name), st.st_size)
    if actual != name:
        raise ChecksumError(
            f"{source}: {filename} in the Hugging Face cache is corrupt: its blob {blob} hashes to "
            f"{actual}, not to its name. Delete {blob} and load it again online (or "
            f"`hf download {source.split(':', 1)[1]} {filename} --force-download`)."
        )
    with atomic_file(marker) as tmp, open_no_follow(tmp, "w") as f:
        f.write(stamp)
    return path


def _blob_digest(blob, hex_length, size):
    """SHA-256 of the bytes (64 hex: LFS), or git's blob SHA-1, `sha1(b"blob <size>\\x00" + bytes)` (40)."""
    digest = hashlib.sha256() if hex_length == 64 else hashlib.sha1(b"blob %d\0" % size)
    with open(blob, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(handle, revision=None):
    """The local path of a Hub repository's weights (`model.safetensors`, else `pytorch_model.bin`).

    Args:
        handle: `hf-hub:org/name[@revision]` or `hf://org/name[@revision]`.
        revision: a branch, tag or commit (default: the handle's, else `main`).

    Raises:
        OfflineError: offline and neither file is in the cache; says where it would be.
        ValueError: the handle is malformed, or the repository or revision does not exist.
        DownloadError: the Hub cannot be reached and no copy is cached (the message names the
            network and the offline switches; raised after one request, without retries), or
            the Hub kept failing.
        ChecksumError: the cached file does not match its blob name (`verify_blob`).
    """
    repo_id, revision = parse(handle, revision)
    path = _fetch_all(repo_id, WEIGHT_FILES, revision)
    if path is not None:
        return path
    where = os.path.join(cache_dir(), "models--" + repo_id.replace("/", "--"))
    if offline():
        raise OfflineError(
            f"hf-hub:{repo_id}: offline (HF_HUB_OFFLINE / KERAS_BIGTRANSFER_OFFLINE) and neither "
            f"{' nor '.join(WEIGHT_FILES)} of revision {revision or 'main'} is in the Hugging Face "
            f"cache ({where}). Download it once online, e.g. `hf download {repo_id}`."
        )
    raise ValueError(f"hf-hub:{repo_id}: the repository has neither {' nor '.join(WEIGHT_FILES)}.")


def config(handle, revision=None):
    """The repository's `config.json` (timm's: architecture, num_classes, pretrained_cfg), or None."""
    repo_id, revision = parse(handle, revision)
    path = _fetch_all(repo_id, ("config.json",), revision)
    if path is None:
        return None
    with open(path) as f:
        return json.load(f)
