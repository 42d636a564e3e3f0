"""Read a checkpoint file into {key: array}, choosing the reader by file content."""

import os
import zipfile

import numpy as np

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


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


def read_arrays(path):
    """All arrays of an .npz, .h5 or PyTorch checkpoint as {key: np.ndarray}.

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
