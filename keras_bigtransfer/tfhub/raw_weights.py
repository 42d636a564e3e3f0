"""The raw (unstandardized) kernels of an export, kept beside the folded inference graph.

`export` serves a graph whose `WSConv2D` layers are folded into plain convolutions holding
standardized kernels. Weight standardization is not idempotent for training: a re-imported
`WSConv2D` given those kernels starts from unit-variance weights, so its gradients, and the
model after a few SGD steps, differ from the original's. The export therefore also writes
`assets/keras_bigtransfer_raw.npz`: every variable whose folded value differs from the
model's own (the weight-standardized kernels), under its Keras path; `hub.load` of the export
assigns them back, so that a round trip changes nothing, training included.
"""

import os

import numpy as np

RAW_ASSET = "keras_bigtransfer_raw.npz"


def differing(model, folded):
    """{variable path: value} of `model`'s variables whose value in `folded` differs."""
    folded_values = {v.path: v for v in folded.weights}
    raw = {}
    for variable in model.weights:
        other = folded_values.get(variable.path)
        value = np.asarray(variable.numpy())
        if other is not None and not np.array_equal(value, np.asarray(other.numpy())):
            raw[variable.path] = value
    return raw


def write(saved_model_dir, arrays):
    """Write {path: array} to `<saved_model_dir>/assets/keras_bigtransfer_raw.npz`; return its name."""
    os.makedirs(os.path.join(saved_model_dir, "assets"), exist_ok=True)
    paths = sorted(arrays)
    with open(os.path.join(saved_model_dir, "assets", RAW_ASSET), "wb") as f:
        np.savez(f, paths=np.array(paths, dtype=str), **{f"w{i}": arrays[p] for i, p in enumerate(paths)})
    return RAW_ASSET


def read(saved_model_dir):
    """{path: array} of an export's raw kernels; {} for an export without them (older ones)."""
    file = os.path.join(saved_model_dir, "assets", RAW_ASSET)
    if not os.path.exists(file):
        return {}
    with np.load(file, allow_pickle=False) as npz:
        return {str(p): npz[f"w{i}"] for i, p in enumerate(npz["paths"])}
