"""Real datasets available offline on these machines, and ImageNet's class names
(ILSVRC-2012's 1000 and ImageNet-21k's 21,843)."""

import functools
import os
import shutil

import numpy as np

from keras_bigtransfer.extras import require
from keras_bigtransfer.preprocessing import to_numpy
from keras_bigtransfer.weights.atomic import atomic_file

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
        for name in missing:
            with atomic_file(os.path.join(target, name)) as tmp:
                shutil.copyfile(os.path.join(system_dir, name), tmp)
    return keras.datasets.fashion_mnist.load_data()


def load_tfds(name, split, data_dir=None):
    """`tfds.load(name, split=split, as_supervised=True, with_info=True)` that honours
    `KERAS_BIGTRANSFER_OFFLINE`: offline, a dataset not yet prepared in `data_dir`
    raises `OfflineError` instead of being downloaded.

    Returns:
        (dataset, info), as `tfds.load` returns them.
    """
    tfds = require("tensorflow_datasets", extra="tensorflow", for_what=f"The TFDS dataset {name!r}")

    from keras_bigtransfer.errors import OfflineError
    from keras_bigtransfer.weights.download import ENV_OFFLINE, offline

    try:
        return tfds.load(name, split=split, data_dir=data_dir, as_supervised=True, with_info=True,
                         download=not offline())
    except tfds.core.DatasetNotFoundError:
        raise ValueError(f"TFDS has no dataset {name!r} (tensorflow_datasets.list_builders() lists them).") from None
    except AssertionError as e:  # what tfds raises for unprepared data with download=False
        if not offline():
            raise
        raise OfflineError(
            f"TFDS dataset {name!r} is not prepared (tfds: {e}) and {ENV_OFFLINE} is set, so it is not "
            "downloaded: prepare it online first (tfds build, or tfds.load with download=True), or pass "
            "the data_dir that holds it."
        ) from None


def per_class_subset(images, labels, per_class, seed=0):
    """`per_class` examples of every class, drawn with a fixed seed (NumPy arrays out;
    NumPy or any Keras backend's tensors in)."""
    images, labels = to_numpy(images), to_numpy(labels)
    rng = np.random.default_rng(seed)
    index = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                            for c in np.unique(labels)])
    rng.shuffle(index)
    return images[index], labels[index]


IMAGENET_CLASSES = 1000
IMAGENET21K_CLASSES = 21843


def _read_names(filename):
    # "synset<TAB>lemma" per line, in head order.
    path = os.path.join(os.path.dirname(__file__), "data", filename)
    with open(path, encoding="utf-8") as f:
        return tuple(line.rstrip("\n").split("\t", 1)[1] for line in f)


@functools.lru_cache(maxsize=1)
def imagenet_class_names():
    """The 1000 ILSVRC-2012 class names in the order of every ImageNet head here.

    Returns:
        A tuple of 1000 strings, e.g. index 281 is "tabby, tabby cat".
    """
    return _read_names("imagenet_classes.txt")


@functools.lru_cache(maxsize=1)
def imagenet21k_class_names():
    """The 21,843 ImageNet-21k (fall 2011) class names in the order of every 21k head here.

    The heads of BiT-M and of the ViT i21k checkpoints order the classes by sorted
    WordNet synset id; the names are WordNet's lemmas for those synsets (the list
    timm ships as `imagenet21k_goog_synsets.txt` and `imagenet_synset_to_lemma.txt`).

    Returns:
        A tuple of 21843 strings, e.g. index 9514 is "projectile, missile".
    """
    return _read_names("imagenet21k_classes.txt")


def class_names(num_classes):
    """The ImageNet class names for a head of `num_classes` outputs (1000 or 21843), else None."""
    if num_classes == IMAGENET_CLASSES:
        return imagenet_class_names()
    if num_classes == IMAGENET21K_CLASSES:
        return imagenet21k_class_names()
    return None


def decode_predictions(logits, top=5):
    """The `top` ImageNet classes of each row of (batch, 1000) or (batch, 21843) scores.

    Args:
        logits: logits or probabilities of an ILSVRC-2012 (1000) or ImageNet-21k
            (21843) head: NumPy or any Keras backend's tensor (what `model(x)` returns).
        top: how many classes per row.

    Returns:
        One list per row of (class index, class name, probability), best first;
        probabilities are the softmax of the row (rows that already sum to 1 are kept).
    """
    scores = to_numpy(logits).astype("float64")  # any backend's tensor (torch: one requiring grad)
    if scores.ndim != 2 or class_names(scores.shape[1]) is None:
        raise ValueError(
            f"decode_predictions expects (batch, {IMAGENET_CLASSES}) ILSVRC-2012 or (batch, "
            f"{IMAGENET21K_CLASSES}) ImageNet-21k scores; got shape {scores.shape}."
        )
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"decode_predictions: top must be a positive integer; got {top!r}.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("decode_predictions: the scores contain NaN or Inf.")
    if not (np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)):
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    names = class_names(scores.shape[1])
    return [[(int(i), names[i], float(row[i])) for i in np.argsort(row)[::-1][:top]] for row in scores]
