"""Read a checkpoint file into {key: array}, choosing the reader by file content."""

import os
import zipfile

import numpy as np

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


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
    """

    def __init__(self, load, shape, dtype, flat_chunks=None):
        self._load = load
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
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
        return LazyArray(self._load, shape, self.dtype, self._flat_chunks)

    def astype(self, dtype):
        return LazyArray(self._load, self.shape, dtype, self._flat_chunks)

    def __array__(self, dtype=None, copy=None):
        array = np.asarray(self._load()).astype(self.dtype, copy=False).reshape(self.shape)
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


def row_blocks(array, rows):
    """Yield (start, block): `array` (NumPy or `LazyArray`) in slices of `rows` along its
    first axis. A streaming `LazyArray` is read from its file one slice at a time."""
    if isinstance(array, LazyArray) and array.streams:
        yield from array._streamed_rows(rows)
        return
    array = np.asarray(array)
    for start in range(0, array.shape[0], rows):
        yield start, array[start:start + rows]


def as_float32(array):
    """float32 without reading a LazyArray now."""
    if isinstance(array, LazyArray):
        return array if array.dtype == np.float32 else array.astype(np.float32)
    return np.asarray(array, dtype=np.float32)


def _read_npy_header(f):
    version = np.lib.format.read_magic(f)
    read_header = (
        np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    )
    return read_header(f)  # shape, fortran_order, dtype


def _npz_lazy(path):
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            with archive.open(member) as f:
                shape, fortran_order, dtype = _read_npy_header(f)
            if dtype.hasobject:
                raise ValueError(f"{path}: {member} holds Python objects; refusing to unpickle it (allow_pickle=False).")

            def load(member=member):
                with zipfile.ZipFile(path) as archive, archive.open(member) as f:
                    return np.lib.format.read_array(f, allow_pickle=False)

            def flat_chunks(elements, member=member, dtype=dtype, total=int(np.prod(shape))):
                # Reads the member as a stream (inflating it if compressed): one chunk in memory.
                with zipfile.ZipFile(path) as archive, archive.open(member) as f:
                    _read_npy_header(f)
                    for first in range(0, total, elements):
                        count = min(elements, total - first)
                        data = f.read(count * dtype.itemsize)
                        if len(data) != count * dtype.itemsize:
                            raise ValueError(f"{path}: {member} ends early (truncated file?).")
                        yield np.frombuffer(data, dtype=dtype)

            arrays[member[: -len(".npy")]] = LazyArray(
                load, shape, dtype, None if fortran_order else flat_chunks
            )
    return arrays


def _h5_lazy(path, name, dataset):
    def load():
        with _h5py_file(path) as f:
            return f[name][()]

    def flat_chunks(elements, shape=dataset.shape):
        # h5py reads slices of the first axis; a chunk of flat elements spans whole stored rows.
        row = int(np.prod(shape[1:]))
        total = int(np.prod(shape))
        with _h5py_file(path) as f:
            ds = f[name]
            for first in range(0, total, elements):
                last = min(first + elements, total)
                rows = ds[first // row: -(-last // row)].reshape(-1)
                offset = (first // row) * row
                yield rows[first - offset: last - offset]

    return LazyArray(load, dataset.shape, dataset.dtype, flat_chunks if dataset.ndim else None)


def _h5py_file(path):
    import h5py

    return h5py.File(path, "r")


_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\n"  # pickle protocol 2, then torch's magic number


def sniff_kind(path):
    """'npz', 'h5', 'torch', 'keras' (a Keras 3 zip), 'gzip', 'safetensors' or 'unknown', by content."""
    from keras_bigtransfer.weights import safetensors

    with open(path, "rb") as f:
        head = f.read(8)
    if safetensors.is_safetensors(path):
        return "safetensors"
    if head == _HDF5_MAGIC:
        return "h5"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == _LEGACY_TORCH_MAGIC:
        return "torch"
    if head[:4] == _ZIP_MAGIC:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if "config.json" in names:
            return "keras"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
    return "unknown"


def tf_checkpoint_prefix(path):
    """The prefix of a TF checkpoint given as a prefix, an `.index` file or a directory; else None."""
    path = os.fspath(path)
    if os.path.isdir(path):  # the directory, or the folder a release archive unpacks to
        import tensorflow as tf

        for root, dirs, files in sorted(os.walk(path)):
            latest = tf.train.latest_checkpoint(root)
            indexes = sorted(f for f in files if f.endswith(".index"))
            if latest or indexes:
                return latest or os.path.join(root, indexes[-1][: -len(".index")])
        return None
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
    if os.path.isfile(path + ".index"):
        return path
    return None


def sniff_format(path):
    """'npz', 'h5', 'torch', 'safetensors', 'tf' or raise: decided by the file's content, not its name."""
    path = os.fspath(path)
    if not os.path.isfile(path) or path.endswith(".index"):  # a directory, prefix or .index
        if tf_checkpoint_prefix(path) is not None:
            return "tf"
        raise ValueError(f"{path} is neither a checkpoint file nor a TF checkpoint (no .index found).")
    kind = sniff_kind(path)
    if kind in ("npz", "h5", "torch", "safetensors"):
        return kind
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == _ZIP_MAGIC:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        raise ValueError(
            f"{path} is a zip archive but not a NumPy .npz checkpoint "
            f"(its members include {names[:3]}); a .keras file loads with keras.saving.load_model."
        )
    raise ValueError(
        f"{path} is neither a NumPy .npz, an HDF5 (.h5) nor a PyTorch checkpoint "
        f"(first bytes {head!r})."
    )


def read_arrays(path, lazy=False):
    """All arrays of an .npz, .h5 or PyTorch checkpoint as {key: np.ndarray}.

    With `lazy=True`, .npz and .h5 arrays are `LazyArray`s, read when converted.

    npz keys are used as stored; h5 keys are the full dataset paths; PyTorch state
    dicts keep their keys. Pickled objects are refused (`allow_pickle=False`,
    `torch.load(weights_only=True)`).
    """
    path = os.fspath(path)
    fmt = sniff_format(path)
    if fmt == "tf":
        return _read_tf(tf_checkpoint_prefix(path), lazy=lazy)
    if fmt == "torch":
        return _read_torch(path)
    if fmt == "safetensors":
        from keras_bigtransfer.weights import safetensors

        return safetensors.read(path, lazy=lazy)
    if fmt == "npz" and lazy:
        return _npz_lazy(path)
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            if lazy:
                arrays[name] = _h5_lazy(path, name, obj)
            else:
                arrays[name] = obj[()]
        f.visititems(visit)
    return arrays


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{path} is a PyTorch checkpoint; reading it needs torch: "
            "pip install 'keras_bigtransfer[torch]'."
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict.")
    return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def _read_tf(prefix, lazy=False):
    """A TF (1 or 2) name-based checkpoint, read with tf.train.load_checkpoint: no graph code."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    if lazy:  # one tensor at a time, and only those a converter uses (EMA shadows, not raw values)
        dtypes = reader.get_variable_to_dtype_map()
        return {name: LazyArray(lambda name=name: reader.get_tensor(name), shape, dtypes[name].as_numpy_dtype)
                for name, shape in reader.get_variable_to_shape_map().items()}
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
