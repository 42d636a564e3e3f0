"""JAX and PyTorch users never import TensorFlow (issue 17): the scenarios of no_tensorflow.py
run in fresh subprocesses under KERAS_BACKEND=jax and =torch and must end with
"tensorflow" not in sys.modules.

The one exception is Keras' own: `Model.save` (a .keras file) imports TensorFlow when it is
installed (keras/src/saving/serialization_lib.py checks `tf.available` to recognise a
tf.TensorShape). The scenarios that save a .keras file therefore assert that no
keras_bigtransfer frame is on the stack of that import; everything else is strict.
"""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "no_tensorflow.py")
BACKENDS = ["jax", "torch"]


def run(backend, *args, cwd=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=900,
                            env=env, cwd=cwd or ROOT)
    assert result.returncode == 0, f"{backend} {args}: rc={result.returncode}\n{result.stderr[-6000:]}"
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_checkpoints_and_models_without_tensorflow(backend, tmp_path):
    """Every checkpoint format that does not need TensorFlow loads (strict: no TensorFlow at
    all), then one model per family builds, runs, saves and loads a .keras file (TensorFlow
    only from Keras' own Model.save). One process: JAX compiles the shared ops once."""
    out = run(backend, "checkpoints+models", str(tmp_path))
    assert "checkpoints: NO_TENSORFLOW" in out
    assert "models: NO_TENSORFLOW" in out or "models: TENSORFLOW_BY_KERAS_ONLY" in out


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_list_convert_predict_without_tensorflow(backend, tmp_path):
    import numpy as np
    from PIL import Image

    assert "bit_m_r50x1_ilsvrc2012" in run(backend, "cli", "list", "--family", "bit")
    # A published BiT .npz made here (NumPy only), converted and used for prediction.
    import keras_bigtransfer as kb  # this process's own backend (TensorFlow in the main suite)
    from keras_bigtransfer.models.bit import convert as bit_convert

    model = kb.BiT_S_R50x1(weights=None, num_classes=4)
    model.get_layer("head").kernel.assign(np.random.default_rng(0).normal(0, 0.1, (2048, 4)).astype("float32"))
    npz = str(bit_convert.save_npz(model, tmp_path / "BiT-S-R50x1.npz"))
    photo = str(tmp_path / "photo.png")
    Image.fromarray((np.random.default_rng(1).random((40, 40, 3)) * 255).astype("uint8")).save(photo)

    copy = str(tmp_path / "copy.npz")
    assert "NO_TENSORFLOW" in run(backend, "cli", "convert", npz, copy)
    assert os.path.isfile(copy)
    keras_file = str(tmp_path / "bit.keras")
    assert "TENSORFLOW_BY_KERAS_ONLY" in run(backend, "cli", "convert", npz, keras_file) or os.path.isfile(keras_file)
    assert os.path.isfile(keras_file)
    out = run(backend, "cli", "predict", npz, photo, "--image_size=32", "--top_k=2")
    assert "NO_TENSORFLOW" in out and photo in out
