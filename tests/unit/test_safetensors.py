"""Our .safetensors reader against the reference writer (huggingface/safetensors)."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.weights import checkpoint, safetensors


def test_reads_what_the_reference_writes_lazily_and_in_row_blocks(tmp_path):
    tensors = {
        "f32": torch.randn(7, 5), "f16": torch.randn(3, 4).half(), "bf16": torch.randn(6).bfloat16(),
        "i64": torch.arange(12).reshape(3, 4), "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    assert checkpoint.sniff_format(path) == "safetensors"
    arrays = checkpoint.read_arrays(path, lazy=True)
    assert isinstance(arrays["f32"], checkpoint.LazyArray)
    for name, tensor in tensors.items():
        expected = tensor.float().numpy() if name == "bf16" else tensor.numpy()
        np.testing.assert_array_equal(np.asarray(arrays[name]), expected, err_msg=name)
    rows = np.concatenate([block for _, block in checkpoint.row_blocks(arrays["f32"], 2)])
    np.testing.assert_array_equal(rows, tensors["f32"].numpy())
    assert safetensors.metadata(path) == {"format": "pt"}


def test_truncated_and_malformed_files_raise(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.randn(64, 64)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ValueError, match="truncated"):
        checkpoint.read_arrays(path)
    with pytest.raises(WeightsError, match=r"model\.safetensors.*truncated"):  # the package's checkpoint error
        checkpoint.read_arrays(path)
    path.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}")
    with pytest.raises(ValueError):
        safetensors.read(path)
    path.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}")
    with pytest.raises(WeightsError, match="model.safetensors"):
        checkpoint.read_arrays(path)
