"""Read a checkpoint file into {key: array}, choosing the reader by file content."""

import os
import zipfile

import numpy as np

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


def sniff_kind(path):
    """'npz', 'h5', 'keras' (a Keras 3 zip), 'gzip' or 'unknown', by content."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _HDF5_MAGIC:
        return "h5"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == _ZIP_MAGIC:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if "config.json" in names:
            return "keras"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
    return "unknown"


def sniff_format(path):
    """'npz', 'h5' or raise: decided by the file's first bytes, not its name."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _HDF5_MAGIC:
        return "h5"
    if head[:4] == _ZIP_MAGIC:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise ValueError(
            f"{path} is a zip archive but not a NumPy .npz checkpoint "
            f"(its members include {names[:3]}); a .keras file loads with keras.saving.load_model."
        )
    raise ValueError(
        f"{path} is neither a NumPy .npz nor an HDF5 (.h5) checkpoint "
        f"(first bytes {head!r})."
    )


def read_arrays(path):
    """All arrays of an .npz or .h5 checkpoint as {key: np.ndarray}.

    npz keys are used as stored; h5 keys are the full dataset paths. Pickled
    objects are refused (`allow_pickle=False`).
    """
    path = os.fspath(path)
    fmt = sniff_format(path)
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                arrays[name] = obj[()]
        f.visititems(visit)
    return arrays
