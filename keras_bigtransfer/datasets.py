"""Real datasets available offline on these machines."""

import os
import shutil

import numpy as np

FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
FASHION_MNIST_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")


def fashion_mnist(system_dir=FASHION_MNIST_SYSTEM_DIR):
    """Fashion-MNIST through `keras.datasets.fashion_mnist.load_data()`, offline.

    The Debian package `dataset-fashion-mnist` ships the four files; they are copied
    into the Keras cache (`$KERAS_HOME/datasets/fashion-mnist/`) where `load_data`
    finds them, so nothing touches the network.

    Returns:
        ((x_train, y_train), (x_test, y_test)): uint8 (N, 28, 28) images, int labels.
    """
    import keras

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    target = os.path.join(home, "datasets", "fashion-mnist")
    missing = [f for f in FASHION_MNIST_FILES if not os.path.exists(os.path.join(target, f))]
    if missing:
        absent = [f for f in missing if not os.path.exists(os.path.join(system_dir, f))]
        if absent:
            raise FileNotFoundError(
                f"Fashion-MNIST files {absent} are neither in {target} nor in {system_dir}: "
                "apt-get install dataset-fashion-mnist (Debian), or place them in " + target
            )
        os.makedirs(target, exist_ok=True)
        for name in missing:
            shutil.copyfile(os.path.join(system_dir, name), os.path.join(target, name) + ".tmp")
            os.replace(os.path.join(target, name) + ".tmp", os.path.join(target, name))
    return keras.datasets.fashion_mnist.load_data()


def per_class_subset(images, labels, per_class, seed=0):
    """`per_class` examples of every class, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    index = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                            for c in np.unique(labels)])
    rng.shuffle(index)
    return images[index], labels[index]
