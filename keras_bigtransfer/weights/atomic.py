"""Atomic writes: a file or directory appears whole at its final path or not at all.

Every writer in the package (downloads, converted checkpoints, exports, training
backups, extracted archives) goes through these two helpers, so a kill or an error
mid-write never leaves a truncated file where a reader would take it for complete.
"""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_file(path, suffix=""):
    """Yield a temporary path beside `path`; on success it replaces `path` atomically.

    The temporary file lives in the same directory (so `os.replace` is a rename on one
    file system) and is removed if the block raises. `suffix` keeps an extension that
    a writer needs (`np.savez` appends `.npz` otherwise, h5py checks nothing).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix or ".tmp",
                               dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path, replace=None):
    """Yield an empty staging directory beside `path`; on success it becomes `path`.

    Args:
        path: the final directory.
        replace: called with `path` when it already exists, before the swap; it must
            remove it or raise (the caller decides what may be replaced). With
            `replace=None` an existing `path` raises `FileExistsError`.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".staging-", dir=parent)
    try:
        yield staging
        if os.path.lexists(path):
            if replace is None:
                raise FileExistsError(f"{path} already exists.")
            replace(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
