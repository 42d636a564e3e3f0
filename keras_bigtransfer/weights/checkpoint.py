"""Read a checkpoint file into {key: array}, choosing the reader by file content.

Checkpoints are untrusted input: every failure to read one becomes a `WeightsError`
naming the file and what is wrong, and declared shapes are checked against the bytes
actually stored before anything large is read.
"""

import os
import pickle
import re
import zipfile

import numpy as np

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.extras import require
from keras_bigtransfer.weights import safetensors
# Also the names of this module (checkpoint.LazyArray, checkpoint.reading, ...), where callers took them.
from keras_bigtransfer.weights.lazy import (  # noqa: F401
    LazyArray,
    as_float32,
    reading,
    row_blocks,
    stored_dtype,
)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"

# Deflate (np.savez_compressed, h5py's gzip filter) expands at most 1032:1, so an array
# declaring more bytes than that over what is stored is a lie (a decompression bomb).
MAX_INFLATION = 1032
_NUMERIC_KINDS = "fiubc"


def _check_declared(source, key, shape, dtype, stored_bytes, exact):
    """Refuse a header whose shape the stored bytes cannot hold (before reading them)."""
    if dtype.hasobject:
        raise WeightsError(f"{source}: {key} holds Python objects; refusing to unpickle it (allow_pickle=False).")
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
        raise WeightsError(f"{source}: {key} has dtype {dtype}, not a numeric array.")
    if any(d < 0 for d in shape):
        raise WeightsError(f"{source}: {key} declares a negative dimension {tuple(shape)}.")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if exact and nbytes != stored_bytes:
        raise WeightsError(
            f"{source}: {key} declares shape {tuple(shape)} {dtype} ({nbytes} bytes) "
            f"but stores {stored_bytes} bytes (truncated or corrupt file)."
        )
    if not exact and nbytes > (stored_bytes + 1024) * MAX_INFLATION:
        raise WeightsError(
            f"{source}: {key} declares shape {tuple(shape)} {dtype} ({nbytes} bytes) from only "
            f"{stored_bytes} compressed bytes (more than deflate's {MAX_INFLATION}:1 can expand)."
        )


def put(converted, path, key, array):
    """`converted[path] = (key, array)`, refusing a second checkpoint key for one variable."""
    if path in converted:
        raise WeightsError(
            f"duplicate keys: {converted[path][0]!r} and {key!r} both hold model variable {path}."
        )
    converted[path] = (key, array)


def _read_npy_header(f):
    version = np.lib.format.read_magic(f)
    read_header = (
        np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    )
    return read_header(f)  # shape, fortran_order, dtype


def _npz_members(path):
    """The .npy members of an .npz, refusing duplicates and compressions numpy never writes."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise WeightsError(f"{path}: duplicate keys {duplicates} (the archive stores them twice).")
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise WeightsError(
                f"{path}: {info.filename} uses zip compression {info.compress_type}; "
                "an .npz is stored or deflated."
            )
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise WeightsError(f"{path}: {info.filename} is stored uncompressed but its sizes differ.")
    return [info for info in infos if info.filename.endswith(".npy")]


def _npz_lazy(path):
    arrays = {}
    for info in _npz_members(path):
        member, key = info.filename, info.filename[: -len(".npy")]
        with reading(path, f"{key} cannot be read"), zipfile.ZipFile(path) as archive, \
                archive.open(member) as f:
            shape, fortran_order, dtype = _read_npy_header(f)
            header = f.tell()
        if info.file_size < header:
            raise WeightsError(f"{path}: {key} is shorter than its own header.")
        _check_declared(path, key, shape, dtype, info.file_size - header, exact=True)
        _check_declared(path, key, shape, dtype, info.compress_size, exact=False)

        def load(member=member, key=key):
            with reading(path, f"{key} cannot be read"), zipfile.ZipFile(path) as archive, \
                    archive.open(member) as f:
                return np.lib.format.read_array(f, allow_pickle=False)

        def flat_chunks(elements, member=member, key=key, dtype=dtype, total=int(np.prod(shape))):
            # Reads the member as a stream (inflating it if compressed): one chunk in memory.
            with reading(path, f"{key} cannot be read"), zipfile.ZipFile(path) as archive, \
                    archive.open(member) as f:
                _read_npy_header(f)
                for first in range(0, total, elements):
                    count = min(elements, total - first)
                    data = f.read(count * dtype.itemsize)
                    if len(data) != count * dtype.itemsize:
                        raise WeightsError(f"{path}: {key} ends early (truncated file?).")
                    yield np.frombuffer(data, dtype=dtype)
                if f.read(1):  # also makes zipfile check the CRC, which it does at the end
                    raise WeightsError(f"{path}: {key} is longer than its header declares.")

        arrays[key] = LazyArray(load, shape, dtype, None if fortran_order else flat_chunks)
    return arrays


def _h5_lazy(path, name, dataset):
    def load():
        with reading(path, f"{name} cannot be read"), _h5py_file(path) as f:
            return f[name][()]

    def flat_chunks(elements, shape=dataset.shape):
        # h5py reads slices of the first axis; a chunk of flat elements spans whole stored rows.
        row = int(np.prod(shape[1:]))
        total = int(np.prod(shape))
        with reading(path, f"{name} cannot be read"), _h5py_file(path) as f:
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


# Names only datasets get (Keras' `kernel:0`, the published `gamma`, ...), never a layer's
# group: a group so named stands where a dataset belongs.
_H5_DATASET_NAME = re.compile(
    r"(:\d+|^(kernel|bias|gamma|beta|moving_mean|moving_variance|depthwise_kernel))$"
)


def _h5_arrays(path, lazy):
    """{dataset path: array} of an HDF5 file, refusing what could read outside it.

    As Keras' own h5 loader: soft and external links, external storage and virtual
    datasets are refused, naming the key (they can make a "weight" of any local file).
    """
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        links = []
        f.visititems_links(lambda name, link: links.append((name, link)))
        for name, link in links:
            if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                raise WeightsError(
                    f"{path}: {name} is an HDF5 {type(link).__name__}; refusing links (as Keras does)."
                )
        for name, _ in links:
            obj = f[name]
            if isinstance(obj, h5py.Group):
                if _H5_DATASET_NAME.search(name.rsplit("/", 1)[-1]):
                    raise WeightsError(f"{path}: {name} is an HDF5 group where a dataset (an array) belongs.")
                continue
            if not isinstance(obj, h5py.Dataset):
                raise WeightsError(f"{path}: {name} is a {type(obj).__name__}, not a dataset.")
            if obj.external:
                raise WeightsError(
                    f"{path}: {name} keeps its data in external files {[e[0] for e in obj.external]}; "
                    "refusing external storage (as Keras does)."
                )
            if obj.is_virtual:
                raise WeightsError(f"{path}: {name} is a virtual dataset; refusing it (as Keras does).")
            stored = obj.id.get_storage_size()
            filtered = obj.chunks is not None and bool(obj.id.get_create_plist().get_nfilters())
            nbytes = int(np.prod(obj.shape, dtype=object)) * obj.dtype.itemsize
            if nbytes and not stored:
                raise WeightsError(f"{path}: {name} declares shape {obj.shape} but stores no data.")
            _check_declared(path, name, obj.shape, obj.dtype, stored, exact=False)
            if not filtered and stored < nbytes:
                raise WeightsError(
                    f"{path}: {name} declares shape {obj.shape} {obj.dtype} ({nbytes} bytes) "
                    f"but stores {stored} bytes."
                )
            arrays[name] = _h5_lazy(path, name, obj) if lazy else obj[()]
    return arrays


_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\n"  # pickle protocol 2, then torch's magic number


def sniff_kind(path):
    """'npz', 'h5', 'torch', 'keras' (a Keras 3 zip), 'gzip', 'safetensors' or 'unknown', by content."""
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
        with reading(path, "is a corrupt zip archive"), zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if "config.json" in names:
            return "keras"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
    return "unknown"


def tf_checkpoint_prefix(path):
    """The prefix of a TF checkpoint given as a prefix, an `.index` file or a directory; else None.

    A directory is searched only where the published layouts put a checkpoint: in itself, or
    else in its immediate sub-folders (a release archive such as tensorflow/tpu's
    `efficientnet-b0.tar.gz` unpacks to `efficientnet-b0/model.ckpt.*`). In one folder, its TF
    `checkpoint` file names the checkpoint (it must lie in that folder); without one, a single
    `.index` does.

    Raises:
        WeightsError: the directory is ambiguous (several checkpoints: each candidate named),
            or its `checkpoint` file is unreadable or names a checkpoint outside the folder.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        found = _tf_prefixes_in(path)
        if not found:
            folders = sorted(os.path.join(path, d) for d in os.listdir(path)
                             if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))
            found = [prefix for folder in folders for prefix in _tf_prefixes_in(folder)]
        if len(found) > 1:
            raise WeightsError(
                f"{path} holds {len(found)} TF checkpoints ({', '.join(found)}); pass the one to load "
                "(its prefix or .index file)."
            )
        return found[0] if found else None
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
    if os.path.isfile(path + ".index"):
        return path
    return None


def _tf_prefixes_in(folder):
    """The TF checkpoints of one folder: the one its `checkpoint` file names, else every `.index`."""
    indexes = sorted(f[: -len(".index")] for f in os.listdir(folder)
                     if f.endswith(".index") and os.path.isfile(os.path.join(folder, f)))
    if not os.path.isfile(os.path.join(folder, "checkpoint")):
        return [os.path.join(folder, p) for p in indexes]
    tf = require("tensorflow", extra="tensorflow", for_what=f"Reading the TF checkpoint directory {folder}")
    with reading(folder, "has an unreadable TF 'checkpoint' file"):
        latest = tf.train.latest_checkpoint(folder)
    if latest is None:  # names files that are not there: the .index files decide
        return [os.path.join(folder, p) for p in indexes]
    if os.path.dirname(os.path.abspath(latest)) != os.path.abspath(folder):
        raise WeightsError(f"{folder}: its TF 'checkpoint' file names {latest}, outside the folder; "
                           "pass the checkpoint to load (its prefix or .index file).")
    return [latest]


def sniff_format(path):
    """'npz', 'h5', 'torch', 'safetensors', 'tf' or raise `WeightsError`: decided by content, not name."""
    path = os.fspath(path)
    if not os.path.isfile(path) or path.endswith(".index"):  # a directory, prefix or .index
        if tf_checkpoint_prefix(path) is not None:
            return "tf"
        raise WeightsError(f"{path} is neither a checkpoint file nor a TF checkpoint (no .index found).")
    kind = sniff_kind(path)
    if kind in ("npz", "h5", "torch", "safetensors"):
        return kind
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == _ZIP_MAGIC:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        raise WeightsError(
            f"{path} is a zip archive but not a NumPy .npz checkpoint "
            f"(its members include {names[:3]}); a .keras file loads with keras.saving.load_model."
        )
    raise WeightsError(
        f"{path} is neither a NumPy .npz, an HDF5 (.h5) nor a PyTorch checkpoint "
        f"(first bytes {head!r})."
    )


def read_arrays(path, lazy=False, format=None):
    """All arrays of an .npz, .h5, .safetensors, PyTorch or TF checkpoint as {key: np.ndarray}.

    With `lazy=True`, .npz, .h5 and TF arrays are `LazyArray`s, read when converted,
    their declared shapes checked against the stored sizes first.

    npz keys are used as stored; h5 keys are the full dataset paths; PyTorch state
    dicts keep their keys. Pickled objects are refused (`allow_pickle=False`,
    `torch.load(weights_only=True)`), and so are HDF5 links, external and virtual
    datasets, duplicate keys and arrays that are not numeric.

    `format`: `sniff_format`'s answer when the caller has it already (it is not sniffed again).

    Raises:
        WeightsError: naming the file and what is wrong, for any file that cannot be read.
    """
    path = os.fspath(path)
    with reading(path):
        fmt = format or sniff_format(path)
        if fmt == "tf":
            arrays = _read_tf(tf_checkpoint_prefix(path))
        elif fmt == "torch":
            arrays = _read_torch(path)
        elif fmt == "safetensors":
            arrays = safetensors.read(path, lazy=True)
        elif fmt == "npz":
            arrays = _npz_lazy(path)
        else:
            arrays = _h5_arrays(path, lazy=True)
        if not lazy:
            arrays = {key: np.asarray(value) for key, value in arrays.items()}
    return arrays


def _read_torch(path):
    torch = require("torch", extra="torch", for_what=f"Reading the PyTorch checkpoint {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message suggests weights_only=False, which would run the file's code: not ours.
        raise WeightsError(
            f"{path}: refused: it holds pickled objects other than tensors (code a full unpickling would "
            "run), which a weights-only load does not allow. Load only files from a source you trust, "
            "preferably .safetensors."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict.")
    arrays = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        if value.dtype == torch.bfloat16:  # NumPy has no bfloat16
            value = value.float()
        arrays[str(key)] = value.detach().cpu().numpy()
    return arrays


def _read_tf(prefix):
    """A TF (1 or 2) name-based checkpoint, read with tf.train.load_checkpoint: no graph code.

    The arrays are `LazyArray`s: a tensor is read when it is used.
    """
    tf = require("tensorflow", extra="tensorflow", for_what=f"Reading the TF checkpoint {prefix}")
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    arrays = {}
    for name, shape in reader.get_variable_to_shape_map().items():
        bfloat16 = dtypes[name] == tf.bfloat16  # NumPy has no bfloat16: read as float32
        dtype = np.dtype(np.float32 if bfloat16 else dtypes[name].as_numpy_dtype)
        if dtype.kind not in _NUMERIC_KINDS:
            continue  # strings and resources (e.g. the object graph): not weights

        def load(name=name, bfloat16=bfloat16):
            with reading(prefix, f"{name} cannot be read"):
                value = reader.get_tensor(name)
                return value.astype(np.float32) if bfloat16 else value

        arrays[name] = LazyArray(load, shape, dtype)
    return arrays
