"""Training data from any source, and the BiT-HyperRule input pipeline (tf.data).

Sources: a `tf.data.Dataset` of (image, label), a tuple of NumPy arrays, a TFDS
"name:split" string, or a directory of class folders. Images may be uint8 in
[0, 255] or float in [0, 1], grayscale or RGB; the pipeline hands the model
float32 RGB in [0, 1], the package's input convention.
"""

import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class Source:
    """A dataset of unbatched (image, int label) plus what is known about it."""

    dataset: tf.data.Dataset
    num_examples: Optional[int]
    image_size: Optional[tuple]
    num_classes: Optional[int]
    scale: float = 1.0  # multiply float images by this to reach [0, 1]


def load_source(data, *, data_dir=None, what="train_data"):
    """Turn any supported `data` into a `Source`."""
    if isinstance(data, tf.data.Dataset):
        return _from_dataset(data)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = (np.asarray(a) for a in data)
        if len(images) != len(labels):
            raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels.")
        if images.ndim not in (3, 4):
            raise ValueError(f"{what}: images must be (N, H, W) or (N, H, W, C); got {images.shape}.")
        labels = labels.astype("int64").reshape(-1)
        return Source(
            tf.data.Dataset.from_tensor_slices((images, labels)),
            num_examples=len(images), image_size=tuple(images.shape[1:3]),
            num_classes=int(labels.max()) + 1 if len(labels) else None,
        )
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if os.path.isdir(path):
            return _from_directory(path)
        if ":" in path:
            return _from_tfds(path, data_dir)
        raise ValueError(
            f"{what}={path!r} is neither a directory of class folders nor a TFDS "
            '"name:split" string such as "cifar10:train".'
        )
    raise TypeError(
        f"{what} must be a tf.data.Dataset of (image, label), a tuple (images, labels) of "
        f"NumPy arrays, a TFDS 'name:split' string or a directory; got {type(data).__name__}."
    )


def _from_dataset(ds):
    spec = ds.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(f"the dataset must yield (image, label) pairs; its elements are {spec}.")
    if spec[0].shape.rank == 4:  # batched: the pipeline batches itself
        ds = ds.unbatch()
        spec = ds.element_spec
    cardinality = int(ds.cardinality())
    shape = spec[0].shape
    size = tuple(shape[:2]) if shape.rank in (2, 3) and None not in shape[:2] else None
    return Source(ds, num_examples=cardinality if cardinality >= 0 else None, image_size=size,
                  num_classes=None)


def _from_tfds(name_split, data_dir):
    import tensorflow_datasets as tfds

    name, split = name_split.split(":", 1)
    ds, info = tfds.load(name, split=split, data_dir=data_dir, as_supervised=True, with_info=True)
    shape = info.features["image"].shape
    try:
        num_examples = int(info.splits[split].num_examples)  # also resolves "train[:10%]"
    except KeyError:  # no split metadata (mocked or partial data): count what the dataset says
        cardinality = int(ds.cardinality())
        num_examples = cardinality if cardinality >= 0 else None
    return Source(
        ds, num_examples=num_examples,
        image_size=tuple(shape[:2]) if None not in shape[:2] else None,
        num_classes=int(info.features["label"].num_classes),
    )


def _from_directory(path):
    import keras
    from PIL import Image

    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise ValueError(f"{path} holds no class folders (expected {path}/<class>/<image files>).")
    first = next(
        (os.path.join(path, c, f) for c in classes for f in sorted(os.listdir(os.path.join(path, c)))),
        None,
    )
    if first is None:
        raise ValueError(f"{path}: the class folders hold no images.")
    with Image.open(first) as im:
        width, height = im.size
    ds = keras.utils.image_dataset_from_directory(
        path, labels="inferred", label_mode="int", class_names=classes, batch_size=None,
        image_size=(height, width), shuffle=False, verbose=False,
    )
    return Source(ds, num_examples=int(ds.cardinality()), image_size=(height, width),
                  num_classes=len(classes), scale=1.0 / 255.0)


def few_shot(source, examples_per_class, num_classes, seed=0):
    """k labelled examples per class, drawn with a fixed seed (the paper's protocol)."""
    if source.num_examples is None:
        raise ValueError("examples_per_class needs a dataset of known size.")
    labels = np.fromiter((int(y) for _, y in source.dataset.as_numpy_iterator()), dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < examples_per_class:
            raise ValueError(f"class {c} has {len(idx)} examples; {examples_per_class} requested.")
        chosen.extend(rng.choice(idx, examples_per_class, replace=False))
    chosen = tf.constant(np.sort(np.array(chosen)), dtype=tf.int64)
    picked = source.dataset.enumerate().filter(
        lambda i, _: tf.reduce_any(tf.equal(i, chosen))
    ).map(lambda _, xy: xy)
    return dataclasses.replace(source, dataset=picked.cache(), num_examples=len(chosen))


def _to_unit_rgb(image, scale):
    if image.dtype == tf.uint8:
        image = tf.cast(image, tf.float32) / 255.0
    else:
        image = tf.cast(image, tf.float32) * scale
    if image.shape.rank == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return image


def train_pipeline(source, rule, num_classes, seed=0):
    """resize -> random crop -> random horizontal flip -> [0, 1] -> batch -> MixUp.

    Every random op is stateless with a seed derived from `seed`, so two runs with
    the same seed see the same batches (the distributed test relies on it). A dataset
    smaller than the batch is sampled with replacement, as the official few-shot runs.
    """
    size, crop = rule.resize_size, rule.crop_size

    def augment(seeds, element):
        image, label = element
        image = _to_unit_rgb(image, source.scale)
        image = tf.image.resize(image, (size, size))
        image = tf.image.stateless_random_crop(image, (crop, crop, 3), seed=seeds[0])
        image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
        return image, targets(label, num_classes)

    ds = source.dataset
    if source.num_examples is not None and source.num_examples < rule.batch_size:
        pool = list(ds.batch(source.num_examples).take(1))[0]
        n = source.num_examples
        ds = tf.data.Dataset.random(seed=seed).map(
            lambda r: tuple(t[tf.math.floormod(r, n)] for t in pool))
    else:
        buffer = min(source.num_examples or 10_000, 10_000)
        # One shuffle over the endless stream: every iterator of this dataset (Keras and
        # tf.distribute make their own) sees the same order for the same seed.
        ds = ds.repeat().shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
    ds = tf.data.Dataset.zip(_seed_pairs(seed + 1), ds).map(augment, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(rule.batch_size, drop_remainder=True)
    if rule.mixup_alpha > 0:
        ds = _mixup(ds, rule.mixup_alpha, seed)
    return ds.prefetch(AUTOTUNE)


def targets(label, num_classes):
    """One-hot for an integer label; a float vector (a soft pseudo-label) passes as it is."""
    if label.dtype.is_floating and label.shape.rank == 1:
        return tf.cast(label, tf.float32)
    return tf.one_hot(tf.cast(label, tf.int32), num_classes)


def _seed_pairs(seed):
    """Two stateless-op seeds per element. No batch op here: tf.distribute rebatches
    batch ops when it splits the global batch, which would shift these seeds."""
    return tf.data.Dataset.random(seed=seed).map(lambda r: tf.stack([tf.stack([r, 0]), tf.stack([r, 1])]))


def _mixup(ds, alpha, seed):
    """One lambda ~ Beta(alpha, alpha) per batch; partners are the batch reversed (official TF2/JAX)."""

    def mix(seeds, batch):
        images, labels = batch
        a = tf.random.stateless_gamma((), seed=seeds[0], alpha=alpha)
        b = tf.random.stateless_gamma((), seed=seeds[1], alpha=alpha)
        lam = a / (a + b)
        return (lam * images + (1 - lam) * tf.reverse(images, [0]),
                lam * labels + (1 - lam) * tf.reverse(labels, [0]))

    return tf.data.Dataset.zip(_seed_pairs(seed + 2), ds).map(mix, num_parallel_calls=AUTOTUNE, deterministic=True)


def eval_pipeline(source, rule, num_classes, batch_size):
    """Test images resized straight to the crop size (the official evaluation)."""
    crop = rule.crop_size

    def prepare(image, label):
        image = tf.image.resize(_to_unit_rgb(image, source.scale), (crop, crop))
        return image, tf.one_hot(tf.cast(label, tf.int32), num_classes)

    return source.dataset.map(prepare, num_parallel_calls=AUTOTUNE).batch(batch_size).prefetch(AUTOTUNE)
