"""A reader of `.safetensors` files (the Hugging Face Hub's, timm's), with no dependency.

The format (huggingface/safetensors `docs/` and `safetensors/src/tensor.rs`): an 8-byte
little-endian header length N, N bytes of UTF-8 JSON {name: {"dtype", "shape",
"data_offsets": [begin, end]}, optionally "__metadata__": {str: str}}, then the raw
little-endian tensor bytes, offsets counted from the end of the header. Nothing is
executed or unpickled, so reading one is safe by construction.

Arrays come back as `LazyArray`s read straight from the file at their offsets, one at a
time (and row blocks at a time for `row_blocks`): loading EfficientNet-L2 holds one
array beside the model's variables, not a second copy of the checkpoint.
"""

import json
import os
import struct

import numpy as np

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.weights.lazy import LazyArray, reading

# safetensors dtype names -> NumPy (little-endian). BF16 is widened to float32 on read.
DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}
MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


def _not_json(name):
    raise ValueError(f"{name} is not JSON")


def read_header(path):
    """(header dict without `__metadata__`, metadata dict, byte offset of the data).

    The header is checked as the reference library checks it (`validate_layout`): a file it
    refuses (overlapping tensors, gaps, trailing bytes, a `__metadata__` that is not a
    {str: str} object) raises ValueError here too.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short for a safetensors file.")
        (length,) = struct.unpack("<Q", raw)
        if length > min(MAX_HEADER, size - 8):
            raise ValueError(f"{path}: not a safetensors file (header length {length}).")
        try:
            # NaN and Infinity are not JSON (the reference's serde refuses them).
            header = json.loads(f.read(length).decode("utf-8"), parse_constant=_not_json)
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"{path}: not a safetensors file (bad JSON header: {e}).") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (the header is not a JSON object).")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: not a safetensors file (__metadata__ must map strings to strings).")
    start = 8 + length
    validate_layout(path, header, size - start)
    return header, metadata, start


def _is_count(value):
    # A JSON unsigned integer as serde reads a `usize`: not a bool, not a float like 1.0.
    return type(value) is int and 0 <= value < 2 ** 64


def validate_layout(path, header, data_size):
    """The format's rules for the tensor entries, as the reference (`tensor.rs`, `validate`) checks them.

    Each entry is {"dtype": a known name, "shape": [unsigned ints], "data_offsets": [begin, end]};
    sorted by offsets, each tensor starts where the previous one ended (the first at 0), holds
    exactly prod(shape) * itemsize bytes, and the last ends at the end of the file: no overlap,
    no gap, no trailing bytes.

    Raises:
        ValueError: one line naming the file and the tensor at fault.
    """
    entries = []
    for name, info in header.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        shape = info.get("shape") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets))
                or not isinstance(shape, list) or not all(map(_is_count, shape)) or "dtype" not in info):
            raise ValueError(f"{path}: tensor {name!r} has a malformed header entry (it needs dtype, a shape "
                             "of unsigned integers and data_offsets [begin, end]).")
        if info["dtype"] not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {info['dtype']!r}, which this reader does "
                             f"not know (known: {', '.join(DTYPES)}).")
        entries.append((offsets[0], offsets[1], name, info))
    position = 0
    for begin, end, name, info in sorted(entries, key=lambda e: (e[0], e[1])):
        if begin != position or end < begin:
            raise ValueError(
                f"{path}: tensor {name!r} has offsets {begin}..{end}; it must start at {position}, where the "
                "previous tensor ends (tensors may not overlap or leave gaps).")
        expected = int(np.prod(info["shape"], dtype=object)) * np.dtype(DTYPES[info["dtype"]]).itemsize
        if end - begin != expected:
            raise ValueError(
                f"{path}: tensor {name!r} ({info['dtype']}, shape {info['shape']}) has offsets {begin}..{end}, "
                f"{end - begin} bytes for the {expected} its shape needs.")
        position = end
    if position != data_size:
        raise ValueError(
            f"{path}: the tensors cover {position} bytes of data but the file holds {data_size} after its "
            "header (" + ("truncated file?)." if position > data_size else "trailing bytes).")
        )


def is_safetensors(path):
    """Whether `path` starts like a safetensors file (header length, then a JSON object)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(9)
        if len(raw) < 9 or raw[8:9] != b"{":
            return False
        (length,) = struct.unpack("<Q", raw[:8])
        return 2 <= length <= min(MAX_HEADER, os.path.getsize(path) - 8)
    except OSError:
        return False


def _lazy(path, name, start, dtype_name, shape, begin, end):
    stored = np.dtype(DTYPES[dtype_name])
    total = int(np.prod(shape, dtype=np.int64))
    wide = np.float32 if dtype_name == "BF16" else stored

    def widen(raw):
        if dtype_name == "BF16":  # the upper half of a float32
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw

    # Untrusted input, as every checkpoint reader's (weights/lazy.py): a failure while
    # reading a tensor is a one-line WeightsError naming the file and the tensor.
    def load():
        with reading(path, f"{name} cannot be read"), open(path, "rb") as f:
            f.seek(start + begin)
            raw = np.frombuffer(f.read(end - begin), dtype=stored, count=total)
        return widen(raw).reshape(shape)

    def flat_chunks(elements):
        with reading(path, f"{name} cannot be read"), open(path, "rb") as f:
            f.seek(start + begin)
            for first in range(0, total, elements):
                count = min(elements, total - first)
                data = f.read(count * stored.itemsize)
                if len(data) != count * stored.itemsize:
                    raise WeightsError(f"{path}: {name} ends early (truncated file?).")
                yield widen(np.frombuffer(data, dtype=stored))

    return LazyArray(load, shape, wide, flat_chunks if shape else None)


def read(path, lazy=True):
    """{tensor name: array} of a safetensors file (`LazyArray`s unless lazy=False).

    A malformed header raises ValueError here; `checkpoint.read_arrays`, the way the package
    reads files, turns it (as every reader's error) into a `WeightsError` naming the file.
    """
    path = os.fspath(path)
    header, _, start = read_header(path)
    arrays = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        arrays[name] = _lazy(path, name, start, info["dtype"], tuple(info["shape"]), begin, end)
    if not lazy:
        arrays = {name: np.asarray(array) for name, array in arrays.items()}
    return arrays


def metadata(path):
    """The file's `__metadata__` (timm writes {"format": "pt"})."""
    return read_header(path)[1]
