"""Real datasets available offline on these machines, and ImageNet's class names."""

import functools
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
    """Fashion-MNIST through `keras.datasets.fashion_mnist.load_data()`, offline when it can be.

    The Debian package `dataset-fashion-mnist` ships the four files; they are copied
    into the Keras cache (`$KERAS_HOME/datasets/fashion-mnist/`) where `load_data`
    finds them, so nothing touches the network. Where neither the cache nor the system
    copy has them (Colab, say), `load_data` downloads them, unless
    `KERAS_BIGTRANSFER_OFFLINE` is set.

    Returns:
        ((x_train, y_train), (x_test, y_test)): uint8 (N, 28, 28) images, int labels.
    """
    import keras

    from keras_bigtransfer.weights.download import offline

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    target = os.path.join(home, "datasets", "fashion-mnist")
    missing = [f for f in FASHION_MNIST_FILES if not os.path.exists(os.path.join(target, f))]
    if missing:
        absent = [f for f in missing if not os.path.exists(os.path.join(system_dir, f))]
        if absent and offline():
            raise FileNotFoundError(
                f"Fashion-MNIST files {absent} are neither in {target} nor in {system_dir}: "
                "apt-get install dataset-fashion-mnist (Debian), or place them in " + target
                + " (KERAS_BIGTRANSFER_OFFLINE is set, so they are not downloaded)"
            )
        if absent:
            return keras.datasets.fashion_mnist.load_data()
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


@functools.lru_cache(maxsize=1)
def imagenet_class_names():
    """The 1000 ILSVRC-2012 class names in the order of every ImageNet head here.

    Returns:
        A tuple of 1000 strings, e.g. index 281 is "tabby, tabby cat".
    """
    path = os.path.join(os.path.dirname(__file__), "data", "imagenet_classes.txt")
    with open(path, encoding="utf-8") as f:
        return tuple(line.rstrip("\n").split("\t", 1)[1] for line in f)


def decode_predictions(logits, top=5):
    """The `top` ImageNet classes of each row of (batch, 1000) logits or probabilities.

    Returns:
        One list per row of (class index, class name, probability), best first;
        probabilities are the softmax of the row (rows that already sum to 1 are kept).
    """
    scores = np.asarray(logits, dtype="float64")
    if scores.ndim != 2 or scores.shape[1] != 1000:
        raise ValueError(f"decode_predictions expects (batch, 1000) ImageNet scores; got shape {scores.shape}.")
    if not (np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)):
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    names = imagenet_class_names()
    return [[(int(i), names[i], float(row[i])) for i in np.argsort(row)[::-1][:top]] for row in scores]
