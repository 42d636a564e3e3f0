"""Optional dependencies (keras_bigtransfer/extras.py): every entry point that needs an extra
names it in one line when its module is missing.

Missing modules are simulated by an import hook refusing them, in a JAX subprocess for the entry points (the package as a JAX user without TensorFlow has it)
and in-process (`sys.modules[name] = None`) for the helper itself.
"""

import os
import subprocess
import sys
import zipfile

import pytest

from keras_bigtransfer import deploy, extras

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOCKED = ("tensorflow", "tensorflow_datasets", "torch", "huggingface_hub", "kagglehub", "tf2onnx", "openvino")

# Each entry point, with everything optional missing; prints LABEL|EXTRA|MESSAGE per attempt.
SCRIPT = r"""
import importlib.abc
import sys

BLOCKED = set(sys.argv[1].split(","))


class NotInstalled(importlib.abc.MetaPathFinder):  # as if not installed (sys.modules[name] = None
    def find_spec(self, name, path, target=None):   # would trip SciPy's probe of sys.modules["torch"])
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NotInstalled())
import keras
import keras_bigtransfer as kb
from keras_bigtransfer.extras import MissingExtraError
from keras_bigtransfer.weights import checkpoint

small = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)])
ENTRY_POINTS = {
    "fit_bit": lambda: kb.fit_bit,
    "fit_noisy_student": lambda: kb.fit_noisy_student,
    "load_tfds": lambda: kb.datasets.load_tfds("mnist", "train"),
    "export_saved_model": lambda: kb.hub.export(small, "exported"),
    "export_litert": lambda: kb.hub.export(small, "model.tflite", format="litert"),
    "load_saved_model": lambda: kb.hub.load("saved_model_dir"),
    "read_tf_checkpoint": lambda: checkpoint.read_arrays("tf_ckpt"),
    "read_pth": lambda: checkpoint.read_arrays("weights.pth"),
    "hf_hub": lambda: kb.hub.load("hf-hub:timm/vit_tiny_patch16_224.augreg_in21k"),
    "kaggle": lambda: kb.hub.load("kaggle://google/bit/tensorFlow2/m-r50x1"),
}
for label, entry in ENTRY_POINTS.items():
    try:
        entry()
    except MissingExtraError as e:
        print(f"{label}|{e.extra}|{e}", flush=True)
    except Exception as e:
        print(f"{label}|other|{type(e).__name__}: {e}", flush=True)
    else:
        print(f"{label}|none|", flush=True)
"""

EXPECTED = {  # label: (extra, what the one-line message names)
    "fit_bit": ("tensorflow", "fit_bit (and fit_noisy_student, fit_meta_pseudo_labels) needs TensorFlow"),
    "fit_noisy_student": ("tensorflow", "needs TensorFlow"),
    "load_tfds": ("tensorflow", "The TFDS dataset 'mnist' needs TensorFlow Datasets"),
    "export_saved_model": ("tensorflow", "A SavedModel export needs TensorFlow"),
    "export_litert": ("tensorflow", "needs TensorFlow"),
    "load_saved_model": ("tensorflow", "Loading the SavedModel saved_model_dir needs TensorFlow"),
    "read_tf_checkpoint": ("tensorflow", "Reading the TF checkpoint tf_ckpt needs TensorFlow"),
    "read_pth": ("torch", "Reading the PyTorch checkpoint weights.pth needs PyTorch (torch)"),
    "hf_hub": ("hf", "A Hugging Face Hub handle (hf-hub:) needs huggingface_hub"),
    "kaggle": ("kaggle", "A kaggle:// handle needs kagglehub"),
}


def _env(tmp_path, backend="jax"):
    return dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, KERAS_HOME=str(tmp_path / "keras"),
                KERAS_BIGTRANSFER_HOME=str(tmp_path / "home"), KERAS_BIGTRANSFER_OFFLINE="1")


def _files(tmp_path):
    (tmp_path / "saved_model_dir").mkdir()
    (tmp_path / "saved_model_dir" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "tf_ckpt.index").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "weights.pth", "w") as f:  # what torch.save writes: a zip with data.pkl
        f.writestr("weights/data.pkl", b"")


def test_every_entry_point_names_its_extra_in_one_line(tmp_path):
    _files(tmp_path)
    result = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(BLOCKED)], cwd=tmp_path,
                            env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = {}
    for line in result.stdout.splitlines():
        label, extra, message = line.split("|", 2)
        seen[label] = (extra, message)
    assert set(seen) == set(EXPECTED), result.stdout
    for label, (extra, words) in EXPECTED.items():
        got_extra, message = seen[label]
        assert got_extra == extra and words in message, (label, seen[label])
        assert message.endswith(f"pip install 'keras_bigtransfer[{extra}]'") or extra == "torch", message
    # torch: the CPU-only wheel, not ~3 GB of CUDA libraries, to read a .pth
    assert "--index-url https://download.pytorch.org/whl/cpu" in seen["read_pth"][1]


def test_cli_names_the_extra_in_one_line(tmp_path):
    script = ("import sys\nsys.modules['tensorflow'] = None\nfrom keras_bigtransfer import cli\n"
              "sys.argv = ['keras-bigtransfer', 'export', 'bit_s_r50x1', 'out']\ncli.run()\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "keras-bigtransfer: error: export: A SavedModel export needs TensorFlow: "
        "pip install 'keras_bigtransfer[tensorflow]'"], result.stderr[-3000:]


def test_require_returns_the_module_and_names_the_extra(monkeypatch):
    assert extras.require("json", extra="x", for_what="y") is sys.modules["json"]
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(extras.MissingExtraError) as raised:
        extras.require("kagglehub", extra="kaggle", for_what="A kaggle:// handle")
    assert isinstance(raised.value, ImportError) and raised.value.extra == "kaggle"
    assert raised.value.name == "kagglehub"
    assert str(raised.value) == "A kaggle:// handle needs kagglehub: pip install 'keras_bigtransfer[kaggle]'"


@pytest.mark.parametrize("format, module", [("onnx", "tf2onnx"), ("openvino", "openvino")])
def test_deploy_converters_name_the_deploy_extra(monkeypatch, format, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(extras.MissingExtraError, match=rf"The {format} export needs .*keras_bigtransfer\[deploy\]"):
        deploy._require(format)


def test_pytorch_exports_need_no_tensorflow(monkeypatch):
    """Keras' ONNX and OpenVINO routes from PyTorch import neither TensorFlow nor tf2onnx."""
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    deploy._require("onnx")
    deploy._require("openvino")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(extras.MissingExtraError, match=r"The onnx export from PyTorch needs .*\[deploy\]"):
        deploy._require("onnx")


def test_a_broken_install_is_not_reported_as_missing(tmp_path, monkeypatch):
    # An installed module whose own dependency is missing: its error, not "install the extra".
    (tmp_path / "half_installed.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as raised:
        extras.require("half_installed", extra="x", for_what="y")
    assert not isinstance(raised.value, extras.MissingExtraError)
    assert raised.value.name == "no_such_dependency_xyz"
