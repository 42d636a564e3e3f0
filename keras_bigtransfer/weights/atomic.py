"""Atomic writes: a file or directory appears whole at its final path or not at all.

Every writer in the package (downloads, converted checkpoints, exports, training
backups, extracted archives) goes through these two helpers, so a kill or an error
mid-write never leaves a truncated file where a reader would take it for complete.

`check_writable`, `check_file_target` and `check_removable` are the rule of where a writer may write, checked
before any work: the exports (`tfhub/export.py`, `deploy/`) and the CLI all ask them.

What is written gets the modes an ordinary `open`/`mkdir` would give (files 0666, directories
0777, less the umask), not `tempfile`'s private 0600/0700: a server running as another user
reads an export as it reads any other file. Writers into a cache that others may share
(`weights/download.py`, `weights/archive.py`, `weights/hf_hub.py`) never follow a link:
`cache_path`, `open_no_follow` and `refuse_link`.
"""

import contextlib
import errno
import os
import shutil
import stat
import tempfile

from keras_bigtransfer.errors import CacheError


def umask():
    """The process umask, read without changing it where Linux shows it (/proc/self/status,
    kernel 4.7+); elsewhere set and restored at once, as `os.umask` alone allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode():
    """The mode `open(path, "w")` gives a new file: 0o666 less the umask."""
    return 0o666 & ~umask()


def directory_mode():
    """The mode `os.mkdir` gives a new directory: 0o777 less the umask."""
    return 0o777 & ~umask()


def make_temp_directory(prefix, directory):
    """`tempfile.mkdtemp` (a new, unguessable name), with the mode `os.mkdir` would give."""
    path = tempfile.mkdtemp(prefix=prefix, dir=directory)
    os.chmod(path, directory_mode())
    return path


def refuse_link(path):
    """Raise `CacheError` when `path` exists and is not a regular file (a symbolic link, a
    directory, a FIFO, a device): a cache writer never writes through or over one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise CacheError(
            f"{path} is {kind}; the cache writes only regular files and never follows a link. "
            "Nothing was written; remove it (someone else may have placed it) and try again."
        )


_MODES = {
    "rb": os.O_RDONLY, "rb+": os.O_RDWR, "r": os.O_RDONLY,
    "wb": os.O_WRONLY | os.O_CREAT, "w": os.O_WRONLY | os.O_CREAT,
    "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
}


def open_no_follow(path, mode):
    """`open(path, mode)` for a file in the cache that never follows a link and opens only a
    regular file ("wb"/"w" truncate it after that check, so a device is never truncated).

    Raises:
        CacheError: `path` is a symbolic link or not a regular file (nothing written).
    """
    refuse_link(path)  # the clear message; O_NOFOLLOW closes the race where the OS has it
    flags = _MODES[mode] | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO, errno.EMLINK):
            refuse_link(path)
            raise CacheError(f"{path} is a symbolic link or not a regular file; nothing was written.") from e
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CacheError(f"{path} is not a regular file; the cache writes only regular files.")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    if mode in ("wb", "w"):
        f.truncate(0)
    return f


def cache_path(root, relative):
    """`root`/`relative` with every directory below `root` created and checked to be a real
    directory, not a link: a link planted inside a shared cache would send writes elsewhere.

    Args:
        root: the cache directory (itself may be a link, set up by its owner).
        relative: a `/`-separated path under it; no part may be empty, `.` or `..`.

    Raises:
        ValueError: `relative` has an empty, `.` or `..` part, or a backslash or NUL.
        CacheError: a directory on the way is a link or not a directory.
    """
    parts = relative.split("/")
    if relative.startswith("/") or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise ValueError(f"{relative!r} is not a path inside the cache (an empty, '.' or '..' part).")
    os.makedirs(root, exist_ok=True)
    current = root
    for part in parts[:-1]:
        current = os.path.join(current, part)
        try:
            os.mkdir(current)
        except FileExistsError:
            pass
        if not stat.S_ISDIR(os.lstat(current).st_mode):
            raise CacheError(
                f"{current} is a symbolic link or not a directory; the cache never follows a link "
                "below its root. Nothing was written; remove it and try again."
            )
    return os.path.join(current, parts[-1])


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
    a writer needs (`np.savez` appends `.npz` otherwise, h5py checks nothing). The file gets
    the umask's mode (`file_mode`); a link found at the temporary path when the block ends
    raises `CacheError` and nothing is moved into place.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix or ".tmp",
                               dir=directory)
    try:
        # mkstemp's 0600 would make every export private; by descriptor, so never through a link
        if hasattr(os, "fchmod"):
            os.fchmod(fd, file_mode())
        else:
            os.chmod(tmp, file_mode())
    finally:
        os.close(fd)
    try:
        yield tmp
        with open_no_follow(tmp, "rb+") as f:  # a link swapped in under its name is refused
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
    staging = make_temp_directory("." + os.path.basename(path) + ".staging-", parent)
    try:
        yield staging
        if os.path.lexists(path):
            if replace is None:
                raise FileExistsError(f"{path} already exists.")
            replace(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
