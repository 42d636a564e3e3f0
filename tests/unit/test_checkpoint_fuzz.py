"""Bounded fuzz of the checkpoint and archive readers (issue 15, item 20; issue 26, item 9).

Small valid files of every format (.npz stored and deflated, .h5, PyTorch zip and legacy,
a .tar.gz of a TF checkpoint) are mutated (bytes flipped, zeroed, inserted, the file cut)
and loaded into a tiny ViT. Every outcome must be a load or a `WeightsError` that names
the file on one line: no library exception (BadZipFile, EOFError, OSError, RuntimeError,
UnpicklingError, TensorFlow's OpError, ...) may escape. Derandomized, so a run is
reproducible; about 20 s in all.
"""

import io
import json
import struct
import itertools
import os
import tarfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer import hub as hub_weights  # load_weights: the model's family picks the key map
from keras_bigtransfer.weights import archive
from tests.unit.test_checkpoint_safety import published_arrays, tiny_vit

FORMATS = ["npz", "npz_compressed", "h5", "torch", "torch_legacy", "tf_tar_gz"]
EXAMPLES = 50  # per format; the TF archive (extracted, then read by TensorFlow) takes 10


def _write_valid(kind, path, arrays):
    if kind.startswith("npz"):
        with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            (np.savez_compressed if kind == "npz_compressed" else np.savez)(f, **arrays)
    elif kind == "h5":
        with h5py.File(path, "w") as f:
            for key, value in arrays.items():
                f.create_dataset(key, data=value)
    elif kind.startswith("torch"):
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path,
                   _use_new_zipfile_serialization=kind == "torch")
    else:  # a release archive: a TF name-based checkpoint in a folder, tarred and gzipped
        import tensorflow as tf

        folder = path + ".d"
        os.makedirs(folder)
        names = sorted(arrays)
        tf.raw_ops.SaveV2(prefix=os.path.join(folder, "model.ckpt"), tensor_names=names,
                          shape_and_slices=[""] * len(names), tensors=[arrays[n] for n in names])
        with tarfile.open(path, "w:gz") as tar:
            tar.add(folder, arcname="release")
    with open(path, "rb") as f:
        return f.read()


def _load(kind, path, model, names):
    if kind == "tf_tar_gz":
        path = archive.extract_module(path)
        names.append(os.path.basename(path))  # the extracted folder then names the failure
    return hub_weights.load_weights(model, path)


class Seeds(dict):
    """The valid files by format (a short repr: hypothesis prints its arguments)."""

    def __repr__(self):
        return f"Seeds({sorted(self)})"


@pytest.fixture(scope="module")
def fuzz_setup(tmp_path_factory):
    model = tiny_vit()
    arrays = published_arrays(model)
    folder = tmp_path_factory.mktemp("valid")
    return model, Seeds({kind: _write_valid(kind, str(folder / f"valid.{kind}"), arrays) for kind in FORMATS})


_POSITION = st.one_of(st.integers(0, 1023), st.integers(-1024, -1), st.floats(0, 1))
_MUTATION = st.tuples(st.sampled_from(["flip", "zero", "insert", "truncate"]), _POSITION,
                      st.binary(min_size=1, max_size=16))
_COUNTER = itertools.count()


def _mutate(data, mutations):
    data = bytearray(data)
    for kind, position, payload in mutations:
        if not data:
            break
        at = int(position * (len(data) - 1)) if isinstance(position, float) else position % len(data)
        if kind == "flip":
            for i, byte in enumerate(payload):
                if at + i < len(data):
                    data[at + i] ^= byte or 0xFF
        elif kind == "zero":
            data[at:at + len(payload)] = bytes(len(data[at:at + len(payload)]))
        elif kind == "insert":
            data[at:at] = payload
        else:
            del data[at:]
    return bytes(data)


def _check(fuzz_setup, tmp_path, kind, mutations):
    model, valid = fuzz_setup
    path = str(tmp_path / f"mutated{next(_COUNTER)}.{kind}")
    with open(path, "wb") as f:
        f.write(_mutate(valid[kind], mutations))
    names = [os.path.basename(path)]
    try:
        _load(kind, path, model, names)
    except WeightsError as e:
        message = str(e)
        assert any(name in message for name in names), message
        # One line, or one line and a listing of the keys at fault (assign.py's `_listing`: a
        # header "what (count):" then indented entries), as for a checkpoint that does not fit.
        header, *listing = message.split("\n")
        assert all(line.startswith("  ") or line.endswith("):") for line in listing), message


_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_MUTATIONS = st.lists(_MUTATION, min_size=1, max_size=3)


@pytest.mark.parametrize("kind", [k for k in FORMATS if k != "tf_tar_gz"])
@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(mutations=_MUTATIONS)
def test_mutated_checkpoints_load_or_raise_weights_error(fuzz_setup, tmp_path, kind, mutations):
    _check(fuzz_setup, tmp_path, kind, mutations)


@settings(max_examples=10, **_SETTINGS)
@given(mutations=_MUTATIONS)
def test_mutated_tf_release_archives_load_or_raise_weights_error(fuzz_setup, tmp_path, mutations):
    _check(fuzz_setup, tmp_path, "tf_tar_gz", mutations)


@pytest.mark.parametrize("kind", FORMATS)
def test_valid_fuzz_seeds_load(fuzz_setup, tmp_path, kind):
    model, valid = fuzz_setup
    path = str(tmp_path / f"valid.{kind}")
    with open(path, "wb") as f:
        f.write(valid[kind])
    _load(kind, path, model, [])
    arrays = published_arrays(model)
    np.testing.assert_array_equal(model.get_layer("head").kernel.numpy(), arrays["head/kernel"])


@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(mutations=_MUTATIONS)
def test_mutated_hub_cache_blobs_are_refused(fuzz_setup, tmp_path, monkeypatch, mutations):
    """The Hugging Face cache names a blob by its SHA-256 (issue 26 item 11): a blob whose bytes
    were changed in place is refused before any reader sees it; an unchanged one is read."""
    from keras_bigtransfer.errors import ChecksumError
    from tests import hf_cache

    _, valid = fuzz_setup
    run = tmp_path / f"hub{next(_COUNTER)}"
    run.mkdir()
    monkeypatch.setenv("KERAS_BIGTRANSFER_HOME", str(run / "home"))  # no marker from another example
    hf_cache.use_cache(monkeypatch, run / "hub")
    (run / "seed").write_bytes(valid["npz"])
    snapshot = hf_cache.add_files(run / "hub", "timm/fuzz", {"model.safetensors": run / "seed"})
    blob = os.path.realpath(os.path.join(snapshot, "model.safetensors"))
    mutated = _mutate(valid["npz"], mutations)
    with open(blob, "wb") as f:
        f.write(mutated)
    if mutated == valid["npz"]:
        assert hub_weights.resolve("hf-hub:timm/fuzz") == os.path.join(snapshot, "model.safetensors")
    else:
        with pytest.raises(ChecksumError, match="corrupt"):
            hub_weights.resolve("hf-hub:timm/fuzz")
# The safetensors header rules (issue 26, item 9): headers are generated from parts the format
# allows and parts it does not (overlaps, gaps, trailing bytes, bad types, bad __metadata__), and
# our reader's accept/refuse decision must be the reference library's (safetensors.safe_open).
_ST_DTYPES = {"F32": 4, "F16": 2, "I64": 8, "U8": 1, "BF16": 2}
_SHAPE = st.lists(st.integers(0, 3), max_size=3)
_TENSOR = st.tuples(st.sampled_from(sorted(_ST_DTYPES)), _SHAPE,
                    st.sampled_from(["exact", "exact", "exact", "overlap", "gap", "short", "long", "swap",
                                     "float", "negative", "bool", "three", "nodtype", "fp8"]))
_METADATA = st.sampled_from([None, "absent", {"format": "pt"}, {}, {"n": 1}, ["x"], "text", {"k": None}])


def _safetensors_bytes(tensors, metadata, tail, padding):
    header, data, position = {}, b"", 0
    for i, (dtype, shape, how) in enumerate(tensors):
        size = int(np.prod(shape, dtype=np.int64)) * _ST_DTYPES[dtype]
        begin = position
        if how == "overlap" and position:
            begin = position - 1
        elif how == "gap":
            begin = position + 1
        end = begin + size + {"short": -1, "long": 1}.get(how, 0)
        offsets = [end, begin] if how == "swap" and end != begin else [begin, end]
        entry = {"dtype": dtype, "shape": list(shape), "data_offsets": offsets}
        if how == "float":
            entry["shape"] = [float(d) for d in shape] or [1.0]
        elif how == "negative":
            entry["data_offsets"] = [begin - 1, end]
        elif how == "bool":
            entry["shape"] = [True] * len(shape) or [True]
        elif how == "three":
            entry["data_offsets"] = offsets + [end]
        elif how == "nodtype":
            del entry["dtype"]
        elif how == "fp8":
            entry["dtype"] = "F8_E4M3" if size == 0 else "NOPE"
        header[f"t{i}"] = entry
        position = max(position, end)
        data = data.ljust(max(len(data), position), b"\x01")
    if metadata != "absent":
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode() + b" " * padding
    return struct.pack("<Q", len(raw)) + raw + data + b"\x00" * tail


def _reference_accepts(path):
    from safetensors import safe_open

    try:
        with safe_open(path, "np") as f:
            list(f.keys())
        return True
    except Exception:  # the reference's SafetensorError (or a deserialization error)
        return False


@settings(max_examples=150, **_SETTINGS)
@given(tensors=st.lists(_TENSOR, max_size=4), metadata=_METADATA, tail=st.sampled_from([0, 0, 1, 7]),
       padding=st.sampled_from([0, 3]))
def test_safetensors_header_decisions_match_the_reference(tmp_path, tensors, metadata, tail, padding):
    pytest.importorskip("safetensors")
    from keras_bigtransfer.weights import checkpoint, safetensors

    path = str(tmp_path / f"fuzz{next(_COUNTER)}.safetensors")
    with open(path, "wb") as f:
        f.write(_safetensors_bytes(tensors, metadata, tail, padding))
    reference = _reference_accepts(path)
    try:
        ours = safetensors.read_header(path)
    except ValueError as e:
        ours = None
        assert path in str(e) and "\n" not in str(e), e
    if reference:
        # Accepted by the reference: ours accepts too, except dtypes this reader does not know.
        known = all(info.get("dtype") in safetensors.DTYPES for info in ours[0].values()) if ours else False
        assert ours is not None or any(t[2] == "fp8" for t in tensors), (tensors, metadata, tail)
        if known:
            from safetensors.numpy import load_file

            expected = load_file(path)
            arrays = checkpoint.read_arrays(path)
            for name, info in ours[0].items():
                if info["dtype"] != "BF16":
                    np.testing.assert_array_equal(np.asarray(arrays[name]), expected[name])
    else:
        assert ours is None, f"the reference refuses this file but ours reads it: {tensors} {metadata} {tail}"
        with pytest.raises(WeightsError, match=os.path.basename(path)):
            checkpoint.read_arrays(path)
