"""Every function of the package that takes logits or images takes the running backend's
tensors (issue 25, item 1): `decode_predictions(model(x))` on PyTorch, where `model(x)` requires
grad and `np.asarray` refuses it, and the same for images, labels and calibration data. And the
grayscale rule (item 9) on the backend's own tensors. One subprocess per backend."""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.toys import ROOT

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import keras, numpy as np
    from keras_bigtransfer import datasets, preprocessing
    from keras_bigtransfer.deploy.calibration import load_representative_data
    from tests.toys import tiny_model
    assert keras.backend.backend() == {backend!r}
    rng = np.random.default_rng(0)
    model = tiny_model(num_classes=1000)
    photos = rng.random((4, 24, 24, 3), dtype=np.float32)
    logits = model(photos)
    if {backend!r} == "torch":
        assert logits.requires_grad  # what made np.asarray fail
    # Tensors that carry a gradient (torch: requires_grad), as a model or a variable makes them.
    images = keras.Variable(photos) * 1.0
    labels = keras.ops.convert_to_tensor(np.array([0, 1, 0, 1]))
    top = datasets.decode_predictions(logits, top=2)
    assert len(top) == 4 and len(top[0]) == 2
    assert top == datasets.decode_predictions(keras.ops.convert_to_numpy(logits), top=2)
    np.testing.assert_allclose(preprocessing.eval_transform(images, 16), preprocessing.eval_transform(photos, 16))
    np.testing.assert_allclose(preprocessing.eval_transform(images[0], 16), preprocessing.eval_transform(photos[0], 16))
    np.testing.assert_allclose(preprocessing.center_crop(images[0], 16), preprocessing.center_crop(photos[0], 16))
    sub_images, sub_labels = datasets.per_class_subset(images, labels, 1)
    assert sub_images.shape == (2, 24, 24, 3) and sorted(sub_labels.tolist()) == [0, 1]
    np.testing.assert_allclose(load_representative_data(images, (24, 24, 3)), photos)
    from keras_bigtransfer.training import data as data_lib
    assert data_lib.load_source((images, labels)).num_examples == 4
    # Grayscale batches of the backend's own tensors (item 9).
    gray = keras.Variable(photos[..., 0]) * 1.0
    want = keras.ops.convert_to_numpy(model(np.repeat(photos[..., :1], 3, axis=-1)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(gray)), want, atol=1e-6)
    print("OK")
""")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_functions_taking_logits_or_images_take_backend_tensors(backend, tmp_path):
    path = tmp_path / f"tensors_{backend}.py"
    path.write_text(SCRIPT.format(root=ROOT, backend=backend))
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="",
               JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]
