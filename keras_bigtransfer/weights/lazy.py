"""What every checkpoint reader shares: arrays read on use, and the guard that turns any
failure while reading a file into one `WeightsError` naming it.

`checkpoint.py` (npz, h5, torch, TF) and `safetensors.py` both build on this module, so
imports run one way: checkpoint -> safetensors -> lazy.
"""

import contextlib
import errno
import os

import numpy as np

from keras_bigtransfer.errors import WeightsError

# Errors that say nothing about the file's content: let them through unchanged.
_PASS_THROUGH = (ImportError, MemoryError, FileNotFoundError, PermissionError, IsADirectoryError)
_SYSTEM_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EMFILE, errno.ENFILE}


def one_line(text, limit=300):
    """`text` on one line, at most `limit` characters (library messages can span pages)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def reading(source, what="cannot be read as a checkpoint"):
    """Turn any failure while reading `source` into a one-line `WeightsError` naming it.

    Library errors (zipfile, zlib, h5py, torch, TensorFlow) surface as
    `WeightsError("<source>: <what>: <Type>: <message>")`, chained to the original;
    a `WeightsError` that does not name `source` yet gets it prefixed.
    """
    source = os.fspath(source)
    try:
        yield
    except WeightsError as e:
        if source in str(e) or os.path.basename(source) in str(e):
            raise
        raise WeightsError(f"{source}: {e}") from e
    except _PASS_THROUGH:
        raise
    except OSError as e:
        if e.errno in _SYSTEM_ERRNOS:  # the disk, not the file
            raise
        raise WeightsError(f"{source}: {what}: {type(e).__name__}: {one_line(e)}") from e
    except Exception as e:  # noqa: BLE001 - untrusted bytes: any library error means a bad file
        raise WeightsError(f"{source}: {what}: {type(e).__name__}: {one_line(e)}") from e



class LazyArray:
    """An array read from its file only when used, shape known before.

    Checkpoint readers hand these out so that loading holds one array at a time
    beside the model's variables, not a second copy of every weight: BiT-M-R152x4
    has 3.7 GB of parameters. `reshape` and `astype` are deferred, and
    `row_blocks(array, rows)` reads a large one a few rows at a time where the file allows.

    Args:
        load: () -> the whole stored array.
        shape, dtype: what `np.asarray` of this gives.
        flat_chunks: optional (elements) -> iterator over the stored array's
            elements in C order, `elements` at a time (the last chunk shorter),
            in the stored dtype.
        stored_dtype: the dtype in the file (kept through `astype`); default `dtype`.
    """

    def __init__(self, load, shape, dtype, flat_chunks=None, stored_dtype=None):
        self._load = load
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.stored_dtype = np.dtype(stored_dtype if stored_dtype is not None else dtype)
        self._flat_chunks = flat_chunks

    @property
    def ndim(self):
        return len(self.shape)

    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        size = int(np.prod(self.shape))
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1]))
            shape = tuple(size // known if s == -1 else s for s in shape)
        if int(np.prod(shape)) != size:
            raise ValueError(f"cannot reshape an array of shape {self.shape} into {shape}")
        # A C-order reshape keeps the element order, so chunked reads stay valid.
        return LazyArray(self._load, shape, self.dtype, self._flat_chunks, self.stored_dtype)

    def astype(self, dtype):
        return LazyArray(self._load, self.shape, dtype, self._flat_chunks, self.stored_dtype)

    def __array__(self, dtype=None, copy=None):
        array = np.asarray(self._load())
        if array.size != int(np.prod(self.shape)):
            raise WeightsError(f"holds {array.size} elements where its header declares {self.shape}.")
        array = array.astype(self.dtype, copy=False).reshape(self.shape)
        return array if dtype is None else array.astype(dtype, copy=False)

    @property
    def streams(self):
        """Whether `row_blocks` reads it in pieces (else it reads the whole array once)."""
        return self._flat_chunks is not None and self.ndim > 0

    def _streamed_rows(self, rows):
        row_shape = self.shape[1:]
        start = 0
        for chunk in self._flat_chunks(rows * int(np.prod(row_shape))):
            block = chunk.astype(self.dtype, copy=False).reshape((-1,) + row_shape)
            yield start, block
            start += block.shape[0]


def stored_dtype(array):
    """The dtype an array had in its file (a `LazyArray`'s before `astype`)."""
    dtype = getattr(array, "stored_dtype", None)
    return dtype if dtype is not None else np.asarray(array).dtype


def row_blocks(array, rows):
    """Yield (start, block): `array` (NumPy or `LazyArray`) in slices of `rows` along its
    first axis. A streaming `LazyArray` is read from its file one slice at a time."""
    if isinstance(array, LazyArray) and array.streams:
        yield from array._streamed_rows(rows)
        return
    array = np.asarray(array)
    if array.ndim == 0:
        yield 0, array
        return
    for start in range(0, array.shape[0], rows):
        yield start, array[start:start + rows]


def as_float32(array):
    """float32 without reading a LazyArray now."""
    if isinstance(array, LazyArray):
        return array if array.dtype == np.float32 else array.astype(np.float32)
    return np.asarray(array, dtype=np.float32)
