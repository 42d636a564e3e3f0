"""Safe extraction of .tar.gz archives (TF Hub modules, TF checkpoint releases) into the cache."""

import numbers
import os
import stat
import tarfile

from keras_bigtransfer.errors import CacheError, WeightsError
from keras_bigtransfer.weights import checkpoint, download
from keras_bigtransfer.weights.atomic import atomic_directory, cache_path


def _check_member(member, archive):
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise WeightsError(f"{archive}: refusing absolute path {name!r} in the archive.")
    if ".." in parts:
        raise WeightsError(f"{archive}: refusing path {name!r} that leaves the archive root.")
    if member.issym() or member.islnk():
        raise WeightsError(f"{archive}: refusing link {name!r} -> {member.linkname!r}.")
    if not (member.isfile() or member.isdir()):
        raise WeightsError(f"{archive}: refusing {name!r}, which is not a regular file or directory.")


def _check_kinds(member, kinds, archive):
    """Refuse a name that is a file in one member and a directory in another (itself, or as the
    folder of a later path): extraction would fail half-way with a bare OSError."""
    parts = [p for p in member.name.replace("\\", "/").split("/") if p not in ("", ".")]
    for depth in range(1, len(parts) + 1):
        name = "/".join(parts[:depth])
        kind = "file" if depth == len(parts) and member.isfile() else "directory"
        if kinds.setdefault(name, kind) != kind:
            raise WeightsError(f"{archive}: {name!r} is both a file and a directory in the archive; refusing it.")


# Extraction limits (each overridable by argument or environment variable). Generous for
# the largest published modules (BiT-M-R152x4 about 4.5 GB, a handful of files), and a
# ratio only a decompression bomb reaches: weights compress about 1.1:1.
MAX_EXTRACT_BYTES = 32 * 2**30
MAX_EXTRACT_FILES = 10_000
MAX_EXTRACT_RATIO = 100
_RATIO_FLOOR = 256 * 2**20  # archives expanding to less are never refused for their ratio


def _limit(value, argument, variable, default):
    """A positive integer limit: the argument, else the environment variable, else the default.

    A bad value is a bad argument (ValueError/TypeError naming it), raised before the archive is read.
    """
    if value is None:
        raw = os.environ.get(variable)
        if raw is None or not raw.strip():
            return default
        try:
            value, where = int(raw), f"{variable}={raw!r}"
        except ValueError:
            raise ValueError(f"{variable} must be a positive integer; got {raw!r}.") from None
    else:
        where = f"{argument}={value!r}"
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"extract_module: {argument} must be a positive integer; got {value!r}.")
        value = int(value)
    if value < 1:
        raise ValueError(f"extract_module: {where} must be a positive integer (a limit of 0 or less would "
                         "refuse every archive).")
    return value


def _scan_members(tar, archive, max_bytes, max_files, max_ratio):
    """The members of an open archive, refused (before anything is written) as soon as
    one is unsafe or the count, the total size or the expansion ratio passes its limit."""
    archive_bytes = max(1, os.path.getsize(archive))
    members, total, kinds = [], 0, {}
    override = ("pass {arg}= to extract_module or set {env} if the archive is trusted")
    for member in tar:
        _check_member(member, archive)
        _check_kinds(member, kinds, archive)
        members.append(member)
        total += member.size if member.isfile() else 0
        if len(members) > max_files:
            raise WeightsError(
                f"{archive}: more than {max_files} files in the archive; "
                + override.format(arg="max_files", env="KERAS_BIGTRANSFER_MAX_EXTRACT_FILES") + "."
            )
        if total > max_bytes:
            raise WeightsError(
                f"{archive}: expands to more than {max_bytes} bytes; "
                + override.format(arg="max_bytes", env="KERAS_BIGTRANSFER_MAX_EXTRACT_BYTES") + "."
            )
        if total > _RATIO_FLOOR and total > max_ratio * archive_bytes:
            raise WeightsError(
                f"{archive}: {archive_bytes} bytes expand to more than {total} bytes (over "
                f"{max_ratio}:1, a decompression bomb?); "
                + override.format(arg="max_ratio", env="KERAS_BIGTRANSFER_MAX_EXTRACT_RATIO") + "."
            )
    return members


def _extract(tar, staging, members):
    """extractall with the "data" filter where tarfile has it (Python 3.12, 3.11.4, 3.10.12);
    before that (3.10.0-3.10.11, 3.11.0-3.11.3) the members, already checked by `_check_member`
    (no absolute path, `..`, link or device), are extracted with what the filter would also
    do: no set-id, sticky or group/other-write mode bits, owner read/write, no ownership."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(staging, members=members, filter="data")
        return
    for member in members:
        member.mode = (member.mode & 0o755) | (0o700 if member.isdir() else 0o600)
        member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    tar.extractall(staging, members=members)


def extract_module(archive, *, max_bytes=None, max_files=None, max_ratio=None):
    """Extract a .tar.gz module into the cache (once, atomically); return the directory.

    Absolute paths, `..`, links and device files are refused before anything is written,
    and so are archives over the limits: `max_bytes` extracted (default 32 GiB,
    `KERAS_BIGTRANSFER_MAX_EXTRACT_BYTES`), `max_files` members (default 10,000,
    `KERAS_BIGTRANSFER_MAX_EXTRACT_FILES`), and, beyond 256 MiB extracted, `max_ratio`
    times the archive's size (default 100, `KERAS_BIGTRANSFER_MAX_EXTRACT_RATIO`).

    Raises:
        WeightsError: the archive is corrupt, unsafe or over a limit (naming it).
        ValueError, TypeError: a limit that is not a positive integer (naming it).
    """
    archive = os.path.abspath(archive)
    max_bytes = _limit(max_bytes, "max_bytes", "KERAS_BIGTRANSFER_MAX_EXTRACT_BYTES", MAX_EXTRACT_BYTES)
    max_files = _limit(max_files, "max_files", "KERAS_BIGTRANSFER_MAX_EXTRACT_FILES", MAX_EXTRACT_FILES)
    max_ratio = _limit(max_ratio, "max_ratio", "KERAS_BIGTRANSFER_MAX_EXTRACT_RATIO", MAX_EXTRACT_RATIO)
    key = download.file_digest(archive, "sha256")[:20]
    target = cache_path(download.cache_dir(), f"modules/{key}")  # no linked directory on the way
    with download.cache_lock(target):
        if os.path.lexists(target):
            if not stat.S_ISDIR(os.lstat(target).st_mode):  # a planted link: never read or replaced
                raise CacheError(f"{target} is a symbolic link or not a directory; the cache never "
                                 "follows a link. Remove it and try again.")
            return target
        with checkpoint.reading(archive, "is not a readable .tar.gz module"):
            with tarfile.open(archive, "r:*") as tar:
                members = _scan_members(tar, archive, max_bytes, max_files, max_ratio)
                with atomic_directory(target) as staging:
                    _extract(tar, staging, members)
    return target
