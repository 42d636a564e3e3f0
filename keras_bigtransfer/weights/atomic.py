"""Atomic writes: a file or directory appears whole at its final path or not at all.

Every writer in the package (downloads, converted checkpoints, exports, training
backups, extracted archives) goes through these two helpers, so a kill or an error
mid-write never leaves a truncated file where a reader would take it for complete.

`check_writable`, `check_file_target` and `check_removable` are the rule of where a writer may write, checked
before any work: the exports (`tfhub/export.py`, `deploy/`) and the CLI all ask them.
"""

import contextlib
import os
import shutil
import tempfile


def check_writable(path, prefix=""):
    """Raise unless `path` can be created or replaced: its nearest existing ancestor is a writable directory.

    Args:
        path: the file or directory about to be written.
        prefix: what the messages start with ("export: ", "--out: ").

    Raises:
        NotADirectoryError: that ancestor is a file.
        PermissionError: that directory is not writable.
    """
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise NotADirectoryError(f"{prefix}cannot write {path}: {parent} is a file, not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{prefix}cannot write {path}: {parent} is not writable.")


def check_removable(path, prefix=""):
    """Raise unless `path` may be removed to make room for a replacement.

    Whatever the caller's rule (an earlier export, `overwrite=True`), a writer never removes
    the current directory or one of its ancestors, the home directory or the root: a typo
    such as `export(model, "..", overwrite=True)` must not delete the user's work. A symbolic
    link is removed as a link (its target is untouched), so it passes.

    Raises:
        PermissionError: one line, starting with `prefix` and naming the path.
    """
    if os.path.islink(path) or not os.path.lexists(path):
        return
    real = os.path.realpath(path)
    cwd = os.path.realpath(os.getcwd())
    what = None
    if real == os.path.dirname(real):
        what = "the root directory"
    elif real == os.path.realpath(os.path.expanduser("~")):
        what = "the home directory"
    elif cwd == real:
        what = "the current directory"
    elif cwd.startswith(real.rstrip(os.sep) + os.sep):
        what = "an ancestor of the current directory"
    if what is not None:
        raise PermissionError(f"{prefix}{path} is {what}; it is never removed to make room for an output. "
                              "Choose another path.")


def check_file_target(path, overwrite=False, prefix=""):
    """Raise unless a writer may put a file at `path` (then `atomic_file` writes it).

    A directory is never replaced by a file; an existing file only with `overwrite=True`;
    and `check_writable` holds.

    Raises:
        IsADirectoryError, FileExistsError, NotADirectoryError, PermissionError: one line,
        starting with `prefix` and naming the path.
    """
    if os.path.isdir(path) and not os.path.islink(path):
        raise IsADirectoryError(f"{prefix}{path} is a directory; a file goes there (a directory is never "
                                "replaced by a file). Choose another path.")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{prefix}{path} exists; pass overwrite=True (CLI: --overwrite) to replace it, "
                              "or choose another path.")
    check_writable(path, prefix)


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
