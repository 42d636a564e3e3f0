"""Read a checkpoint file into {key: array}, choosing the reader by file content."""

import os
import zipfile

import numpy as np

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


class LazyArray:
    """An array read from its file only when converted (`np.asarray`), shape known before.

    Checkpoint readers hand these out so that loading holds one array at a time
    beside the model's variables, not a second copy of every weight: BiT-M-R152x4
    has 3.7 GB of parameters. `reshape` and `astype` are deferred too.
    """

    def __init__(self, load, shape, dtype, transforms=()):
        self._load = load
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._transforms = tuple(transforms)

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
        return LazyArray(self._load, shape, self.dtype, self._transforms + (lambda a: a.reshape(shape),))

    def astype(self, dtype):
        return LazyArray(self._load, self.shape, dtype, self._transforms + (lambda a: a.astype(dtype),))

    def __array__(self, dtype=None, copy=None):
        array = self._load()
        for transform in self._transforms:
            array = transform(array)
        return array if dtype is None else array.astype(dtype, copy=False)


def as_float32(array):
    """float32 without reading a LazyArray now."""
    if isinstance(array, LazyArray):
        return array if array.dtype == np.float32 else array.astype(np.float32)
    return np.asarray(array, dtype=np.float32)


def _npz_lazy(path):
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            with archive.open(member) as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(f)
            if dtype.hasobject:
                raise ValueError(f"{path}: {member} holds Python objects; refusing to unpickle it (allow_pickle=False).")

            def load(member=member):
                with zipfile.ZipFile(path) as archive, archive.open(member) as f:
                    return np.lib.format.read_array(f, allow_pickle=False)

            arrays[member[: -len(".npy")]] = LazyArray(load, shape, dtype)
    return arrays


_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\n"  # pickle protocol 2, then torch's magic number


def sniff_kind(path):
    """'npz', 'h5', 'torch', 'keras' (a Keras 3 zip), 'gzip' or 'unknown', by content."""
    with open(path, "rb") as f:
        head = f.read(8)
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
    """'npz', 'h5', 'torch', 'tf' or raise: decided by the file's content, not its name."""
    path = os.fspath(path)
    if not os.path.isfile(path) or path.endswith(".index"):  # a directory, prefix or .index
        if tf_checkpoint_prefix(path) is not None:
            return "tf"
        raise ValueError(f"{path} is neither a checkpoint file nor a TF checkpoint (no .index found).")
    kind = sniff_kind(path)
    if kind in ("npz", "h5", "torch"):
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
        return _read_tf(tf_checkpoint_prefix(path))
    if fmt == "torch":
        return _read_torch(path)
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
                def load(name=name):
                    with h5py.File(path, "r") as f:
                        return f[name][()]

                arrays[name] = LazyArray(load, obj.shape, obj.dtype)
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


def _read_tf(prefix):
    """A TF (1 or 2) name-based checkpoint, read with tf.train.load_checkpoint: no graph code."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
