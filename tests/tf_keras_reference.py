"""keras.applications' EfficientNet (tf_keras) as a reference, on every Keras backend.

tf_keras needs TensorFlow, which the JAX and PyTorch test processes must not import: there
`efficientnet_reference` computes it in a `KERAS_BACKEND=tensorflow` subprocess
(`python -m tests.tf_keras_reference VARIANT SIZE SEED OUT_DIR`) and hands back files, the
published-layout .h5 and an .npz of the random images and tf_keras' logits. On TensorFlow it runs
in the calling process. This module imports neither TensorFlow nor Keras at import time.
"""

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def tf_keras_efficientnet(variant, size, rng):
    """tf_keras's own EfficientNet with random non-zero weights and ImageNet normalization."""
    import tf_keras

    ref = getattr(tf_keras.applications, f"EfficientNet{variant.upper()}")(
        weights=None, input_shape=(size, size, 3), classifier_activation=None)
    for layer in ref.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([1 + 0.1 * rng.standard_normal(c), 0.1 * rng.standard_normal(c),
                               0.1 * rng.standard_normal(c), 0.5 + rng.random(c)])
        elif isinstance(layer, tf_keras.layers.Dense):
            layer.set_weights([0.05 * rng.standard_normal(w.shape) for w in layer.get_weights()])
        elif isinstance(layer, tf_keras.layers.Normalization) and layer.weights:  # V1; V2's are constants
            layer.set_weights([IMAGENET_MEAN, IMAGENET_STD**2, np.array(0)])
    return ref


def write_published_h5(ref, path):
    """`save_weights` h5, with the normalization variance holding the std as the published files do."""
    import h5py

    ref.save_weights(str(path))
    with h5py.File(path, "r+") as f:
        for name in f.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            if name.startswith("normalization") and name in f[name]:  # V1 only: V2 stores no statistics
                group = f[name][name]
                group["variance:0"][...] = IMAGENET_STD
    return str(path)


def _write(variant, size, seed, out_dir):
    rng = np.random.default_rng(seed)
    ref = tf_keras_efficientnet(variant, size, rng)
    h5 = write_published_h5(ref, os.path.join(out_dir, f"efficientnet{variant}.h5"))
    images = rng.random((2, size, size, 3), dtype=np.float32)
    logits = ref(images * 255.0, training=False).numpy()  # tf_keras takes [0, 255]
    np.savez(os.path.join(out_dir, f"efficientnet{variant}_reference.npz"), images=images, logits=logits)
    return h5


def efficientnet_reference(variant, size, out_dir, seed=0):
    """Returns (h5 path, images (2, size, size, 3) float32 in [0, 1], tf_keras logits (2, 1000)).

    In this process on TensorFlow; in a `KERAS_BACKEND=tensorflow` subprocess otherwise."""
    import keras

    out_dir = str(out_dir)
    if keras.backend.backend() == "tensorflow":
        h5 = _write(variant, size, seed, out_dir)
    else:
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
        done = subprocess.run([sys.executable, "-m", "tests.tf_keras_reference", variant, str(size), str(seed),
                               out_dir], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        h5 = os.path.join(out_dir, f"efficientnet{variant}.h5")
    arrays = np.load(os.path.join(out_dir, f"efficientnet{variant}_reference.npz"))
    return h5, arrays["images"], arrays["logits"]


if __name__ == "__main__":
    variant, size, seed, out_dir = sys.argv[1:]
    _write(variant, int(size), int(seed), out_dir)
