"""Safe extraction of .tar.gz archives (TF Hub modules, TF checkpoint releases) into the cache."""

import os
import shutil
import tarfile
import tempfile

import filelock

from keras_bigtransfer.weights import download


def _check_member(member, archive):
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{archive}: refusing absolute path {name!r} in the archive.")
    if ".." in parts:
        raise ValueError(f"{archive}: refusing path {name!r} that leaves the archive root.")
    if member.issym() or member.islnk():
        raise ValueError(f"{archive}: refusing link {name!r} -> {member.linkname!r}.")
    if not (member.isfile() or member.isdir()):
        raise ValueError(f"{archive}: refusing {name!r}, which is not a regular file or directory.")


def extract_module(archive):
    """Extract a .tar.gz module into the cache (once, atomically); return the directory.

    Absolute paths, `..`, links and device files are refused before anything is written.
    """
    archive = os.path.abspath(archive)
    key = download.file_digest(archive, "sha256")[:20]
    target = os.path.join(download.cache_dir(), "modules", key)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with filelock.FileLock(target + ".lock"):
        if os.path.isdir(target):
            return target
        try:
            tar = tarfile.open(archive, "r:*")
        except tarfile.TarError as e:
            raise ValueError(f"{archive} is not a SavedModel directory or a .tar.gz module: {e}") from e
        with tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            staging = tempfile.mkdtemp(prefix=".extract-", dir=os.path.dirname(target))
            try:
                tar.extractall(staging, members=members, filter="data")
                os.replace(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return target
