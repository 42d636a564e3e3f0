"""Training data from any source, and the BiT-HyperRule input pipeline (tf.data).

Sources: a `tf.data.Dataset` of (image, label), a tuple of NumPy arrays, a TFDS
"name:split" string, or a directory of class folders. The pipeline hands the model
float32 RGB in [0, 1], the package's input convention, by the package's one image rule:

- uint8 is divided by 255; float is taken as [0, 1] (a warning, once, when values lie
  far outside: max > 2 or min < -1); any other dtype (uint16, int32, int64, bool) is
  refused: convert to uint8 or to float in [0, 1] first.
- 1 channel (grayscale) is repeated to RGB; 3 is RGB; 2 or 4 (an alpha channel) are
  refused: drop the alpha first (`images[..., :3]`, `images[..., :1]`).
- Image files (class folders) are decoded to RGB by Pillow: palette expanded, alpha
  dropped, grayscale repeated; 16-bit and float files are refused.

Labels: integer class indices (NumPy or tf.data; shape () or (1,)), floats holding
whole numbers, or one-hot / soft label vectors of length num_classes (non-negative,
summing to 1). Checked before training for NumPy; per element for tf.data.
"""

import dataclasses
import os
import warnings
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_bigtransfer.layers.image_input import grayscale_rule
from keras_bigtransfer.preprocessing import to_numpy
from keras_bigtransfer.preprocessing import IMAGE_EXTENSIONS, image_file_size, read_image_file
from keras_bigtransfer.training.hyperrule import check_int

AUTOTUNE = tf.data.AUTOTUNE

# Files of other extensions in class folders (.DS_Store, CSVs, notes) are skipped.
FAR_ABOVE, FAR_BELOW = 2.0, -1.0  # float images beyond these are not [0, 1] images
SOFT_LABEL_TOLERANCE = 0.01  # |sum - 1| allowed for a soft label (float16 rounding)


@dataclasses.dataclass
class Source:
    """A dataset of unbatched (image, label) plus what is known about it."""

    dataset: tf.data.Dataset
    num_examples: Optional[int]
    image_size: Optional[tuple]
    num_classes: Optional[int]
    what: str = "train_data"  # the argument it came from, for messages
    pixels_checked: bool = False  # float range already checked (NumPy): no per-element check
    class_names: Optional[tuple] = None  # one per class index, where the data names them


def load_source(data, *, data_dir=None, what="train_data"):
    """Turn any supported `data` into a `Source`; images and labels that break the
    package's rules (module docstring) raise a ValueError here, before any training."""
    if isinstance(data, tf.data.Dataset):
        return _from_dataset(data, what)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = (to_numpy(a) for a in data)  # any backend's tensors too
        if images.ndim not in (3, 4):
            raise ValueError(f"{what}: images must be (N, H, W) or (N, H, W, C); got {images.shape}.")
        if len(images) != len(labels):
            raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels.")
        if not len(images):
            raise ValueError(f"{what} holds no examples.")
        check_images(images, what)
        labels, num_classes = check_labels(labels, what)
        return Source(
            tf.data.Dataset.from_tensor_slices((images, labels)),
            num_examples=len(images), image_size=tuple(images.shape[1:3]),
            num_classes=num_classes, what=what, pixels_checked=True,
        )
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if os.path.isdir(path):
            return _from_directory(path, what)
        if ":" in path:
            return _from_tfds(path, data_dir, what)
        raise ValueError(
            f"{what}={path!r} is neither a directory of class folders nor a TFDS "
            '"name:split" string such as "cifar10:train".'
        )
    raise TypeError(
        f"{what} must be a tf.data.Dataset of (image, label), a tuple (images, labels) of "
        f"NumPy arrays, a TFDS 'name:split' string or a directory; got {type(data).__name__}."
    )


# --- the image rule ---------------------------------------------------------------------

def _dtype_error(what, dtype):
    return ValueError(
        f"{what}: images of dtype {dtype} are not accepted. The package takes uint8 in [0, 255] "
        "(divided by 255) or float in [0, 1]: convert them first, e.g. (images / 65535).astype"
        "('float32') for 16-bit images, or images.astype('uint8') for 0-255 values in another type."
    )


def _channels_error(what, channels):
    if channels in (2, 4):
        kind, keep = ("gray+alpha", "images[..., :1]") if channels == 2 else ("RGBA", "images[..., :3]")
        return ValueError(
            f"{what}: images have {channels} channels ({kind}); the package takes 1 (grayscale) or "
            f"3 (RGB). Drop the alpha channel first: {keep}."
        )
    return ValueError(f"{what}: images have {channels} channels; the package takes 1 (grayscale) or 3 (RGB).")


def _range_warning(what, low, high):
    warnings.warn(
        f"{what}: float images range over [{low:g}, {high:g}]; the package expects float images in "
        "[0, 1] (uint8 in [0, 255] is divided by 255). Divide 0-255 float images by 255.",
        UserWarning, stacklevel=3,
    )


def _check_dtype(dtype, what):
    dtype = tf.as_dtype(dtype)
    if dtype != tf.uint8 and not dtype.is_floating:
        raise _dtype_error(what, dtype.name)


def check_images(images, what="images"):
    """The package's image rule on a NumPy batch (N, H, W[, C]): ValueError for other
    integer dtypes and 2- or 4-channel images, a warning for floats far outside [0, 1]."""
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise _dtype_error(what, images.dtype)
    if images.ndim == 4 and images.shape[-1] not in (1, 3):
        raise _channels_error(what, images.shape[-1])
    if np.issubdtype(images.dtype, np.floating) and images.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN arrays: NaN, no warning
            low, high = float(np.nanmin(images)), float(np.nanmax(images))
        if high > FAR_ABOVE or low < FAR_BELOW:
            _range_warning(what, low, high)


def _to_unit_rgb(image, what, check_range):
    """One image to float32 RGB in [0, 1] by the image rule. Static shapes and dtypes
    are checked when the pipeline is built; a channel count known only at run time is
    checked per element."""
    _check_dtype(image.dtype, what)
    if image.dtype == tf.uint8:
        image = tf.cast(image, tf.float32) / 255.0
    else:
        image = tf.cast(image, tf.float32)
        if check_range:
            image = _warn_if_far_outside(image, what)
    add_axis, repeats = grayscale_rule(image.shape, batch=False)  # the models' rule too
    if add_axis:
        image = image[..., None]
    if image.shape.rank != 3:
        raise ValueError(f"{what}: each image must be (H, W) or (H, W, C); got shape {image.shape}.")
    channels = image.shape[-1]
    if channels is None:
        channels = tf.shape(image)[-1]
        ok = tf.logical_or(tf.equal(channels, 1), tf.equal(channels, 3))
        assertion = tf.debugging.Assert(ok, [
            f"{what}: an image has a channel count other than 1 (grayscale) or 3 (RGB); 2- or "
            "4-channel images carry alpha: drop it first (image[..., :3]). Channels:", channels])
        with tf.control_dependencies([assertion]):
            image = tf.tile(image, [1, 1, 3 // channels])
        return tf.ensure_shape(image, [None, None, 3])
    if channels not in (1, 3):
        raise _channels_error(what, channels)
    return tf.tile(image, [1, 1, repeats]) if repeats > 1 else image


def _warn_if_far_outside(image, what):
    """Warn (once per pipeline) when a float image lies far outside [0, 1]."""
    warned = []

    def warn(low, high):
        if not warned:
            warned.append(True)
            _range_warning(what, float(low), float(high))
        return np.float32(0)

    low, high = tf.reduce_min(image), tf.reduce_max(image)
    far = tf.logical_or(high > FAR_ABOVE, low < FAR_BELOW)
    done = tf.cond(far, lambda: tf.numpy_function(warn, [low, high], tf.float32, stateful=True),
                   lambda: tf.constant(0.0))
    with tf.control_dependencies([done]):
        return tf.identity(image)


# --- labels -----------------------------------------------------------------------------

def check_labels(labels, what="labels"):
    """NumPy labels checked and normalized: (int64 class indices, num_classes) or
    (float32 label vectors, their length). ValueError for negative or fractional
    indices, and for label vectors that are not distributions."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    if labels.dtype == bool or not (np.issubdtype(labels.dtype, np.integer)
                                    or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(f"{what}: labels must be integer class indices or float label vectors; "
                         f"got dtype {labels.dtype}.")
    if labels.ndim == 1:
        if np.issubdtype(labels.dtype, np.floating):
            bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
            if len(bad):
                raise ValueError(f"{what}: labels are class indices, whole numbers; labels[{bad[0]}] = "
                                 f"{labels[bad[0]].item()!r} ({len(bad)} such). For soft labels pass (N, "
                                 "num_classes) vectors.")
        bad = np.flatnonzero(labels < 0)
        if len(bad):
            raise ValueError(f"{what}: labels are class indices from 0; labels[{bad[0]}] = "
                             f"{labels[bad[0]].item()!r} ({len(bad)} negative).")
        labels = labels.astype(np.int64)
        return labels, int(labels.max()) + 1
    if labels.ndim == 2:
        vectors = labels.astype(np.float32)
        sums = vectors.sum(axis=1)
        bad = np.flatnonzero(~np.isfinite(sums) | (vectors < 0).any(axis=1)
                             | (np.abs(sums - 1) > SOFT_LABEL_TOLERANCE))
        if len(bad):
            raise ValueError(f"{what}: one-hot or soft labels must be non-negative and sum to 1; "
                             f"labels[{bad[0]}] = {labels[bad[0]].tolist()} ({len(bad)} such rows).")
        return vectors, labels.shape[1]
    raise ValueError(f"{what}: labels must be (N,) class indices or (N, num_classes) one-hot or soft "
                     f"labels; got shape {labels.shape}.")


def targets(label, num_classes, what="labels"):
    """A label as a float32 vector of length `num_classes`: one-hot for a class index
    (shape () or (1,)); a one-hot or soft label vector passes as it is. Shapes are
    checked when the pipeline is built, values (index range, fractional indices,
    distributions) per element."""
    num_classes = check_int("num_classes", num_classes, minimum=2)
    label = tf.convert_to_tensor(label)
    if not (label.dtype.is_integer or label.dtype.is_floating) or label.dtype == tf.bool:
        raise ValueError(f"{what}: labels must be integers or floats; got {label.dtype.name}.")
    if label.shape.rank == 1 and label.shape[0] == 1:
        label = label[0]
    if label.shape.rank == 0:
        checks = [tf.debugging.Assert(
            tf.logical_and(label >= 0, label < tf.cast(num_classes, label.dtype)),
            [f"{what}: a class index is outside [0, {num_classes}) (the model's classes):", label])]
        if label.dtype.is_floating:
            checks.append(tf.debugging.Assert(
                tf.equal(label, tf.round(label)),
                [f"{what}: a class index is fractional (labels are whole numbers):", label]))
        with tf.control_dependencies(checks):
            return tf.one_hot(tf.cast(label, tf.int32), num_classes)
    if label.shape.rank == 1:
        if label.shape[0] is not None and label.shape[0] != num_classes:
            raise ValueError(f"{what}: label vectors have length {label.shape[0]} but the model has "
                             f"{num_classes} classes; one-hot or soft labels need one entry per class.")
        label = tf.cast(label, tf.float32)
        total = tf.reduce_sum(label)
        ok = tf.logical_and(tf.reduce_all(label >= 0), tf.abs(total - 1.0) <= SOFT_LABEL_TOLERANCE)
        checks = [
            tf.debugging.assert_equal(tf.shape(label)[0], num_classes, message=(
                f"{what}: label vectors need one entry for each of the model's {num_classes} classes")),
            tf.debugging.Assert(ok, [f"{what}: a one-hot or soft label is not non-negative summing "
                                     "to 1; its sum:", total]),
        ]
        with tf.control_dependencies(checks):
            return tf.ensure_shape(tf.identity(label), [num_classes])
    raise ValueError(f"{what}: each label must be a class index or a vector of {num_classes} class "
                     f"probabilities; got shape {label.shape}.")


def _label_class(label):
    """The class of one NumPy label: the index, or the largest entry of a vector."""
    label = np.asarray(label)
    return int(np.argmax(label)) if label.ndim and label.size > 1 else int(label.reshape(()))


def _check_classes(source, num_classes):
    num_classes = check_int("num_classes", num_classes, minimum=2)
    if source.num_classes is not None and source.num_classes > num_classes:
        raise ValueError(f"{source.what}: the labels go up to class {source.num_classes - 1} but the "
                         f"model has {num_classes} classes (build it with num_classes="
                         f"{source.num_classes}).")
    return num_classes


# --- sources ----------------------------------------------------------------------------

def _from_dataset(ds, what):
    spec = ds.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(f"{what}: the dataset must yield (image, label) pairs; its elements are {spec}.")
    if spec[0].shape.rank == 4:  # batched: the pipeline batches itself
        ds = ds.unbatch()
        spec = ds.element_spec
    image_spec, label_spec = spec
    _check_dtype(image_spec.dtype, what)
    shape = image_spec.shape
    if shape.rank not in (None, 2, 3):
        raise ValueError(f"{what}: each image must be (H, W) or (H, W, C); got shape {shape}.")
    if shape.rank == 3 and shape[-1] is not None and shape[-1] not in (1, 3):
        raise _channels_error(what, shape[-1])
    label_dtype = label_spec.dtype
    if label_dtype == tf.bool or not (label_dtype.is_integer or label_dtype.is_floating):
        raise ValueError(f"{what}: labels must be integers or floats; got {label_dtype.name}.")
    if label_spec.shape.rank is not None and label_spec.shape.rank > 1:
        raise ValueError(f"{what}: each label must be a class index or a label vector; got shape "
                         f"{label_spec.shape}.")
    cardinality = int(ds.cardinality())
    size = tuple(shape[:2]) if shape.rank in (2, 3) and None not in shape[:2] else None
    return Source(ds, num_examples=cardinality if cardinality >= 0 else None, image_size=size,
                  num_classes=None, what=what)


def _from_tfds(name_split, data_dir, what):
    from keras_bigtransfer.datasets import load_tfds  # honours KERAS_BIGTRANSFER_OFFLINE

    name, split = name_split.split(":", 1)
    ds, info = load_tfds(name, split, data_dir)
    source = _from_dataset(ds, what)  # the same dtype and channel checks
    shape = info.features["image"].shape
    try:
        num_examples = int(info.splits[split].num_examples)  # also resolves "train[:10%]"
    except KeyError:  # no split metadata (mocked or partial data): what the dataset says
        num_examples = source.num_examples
    return dataclasses.replace(
        source, num_examples=num_examples,
        image_size=tuple(shape[:2]) if None not in shape[:2] else None,
        num_classes=int(info.features["label"].num_classes),
        class_names=tuple(getattr(info.features["label"], "names", None) or ()) or None,
    )


def _from_directory(path, what):
    """Class folders of image files, each read at its own size (the pipeline's resize is
    the only one). Other files are skipped with a warning saying how many; unreadable
    images are named, before training where the header is bad, when decoded otherwise."""
    classes = sorted(d for d in os.listdir(path)
                     if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))
    if not classes:
        raise ValueError(f"{what}: {path} holds no class folders (expected {path}/<class>/<image files>).")
    files, labels, sizes, skipped = [], [], [], []
    for label, name in enumerate(classes):
        # Images in sub-folders of a class folder belong to the class, as in Keras.
        for root, dirs, names in os.walk(os.path.join(path, name)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file in sorted(names):
                full = os.path.join(root, file)
                if file.startswith(".") or not file.lower().endswith(IMAGE_EXTENSIONS):
                    skipped.append(os.path.relpath(full, path))
                    continue
                size = image_file_size(full, what)  # the header only; the package's reading rule
                files.append(full)
                labels.append(label)
                sizes.append(size)
    if skipped:
        shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        warnings.warn(f"{what}: skipped {len(skipped)} file(s) that are not images ({shown}); image "
                      f"files end in {', '.join(IMAGE_EXTENSIONS)}.", UserWarning, stacklevel=3)
    if not files:
        raise ValueError(f"{what}: the class folders of {path} hold no image files.")

    def decode(file):
        # Truncated or corrupt past the header: a ValueError naming the file.
        return read_image_file(file.decode(), what)

    def load(file, label):
        image = tf.numpy_function(decode, [file], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3]), label

    ds = tf.data.Dataset.from_tensor_slices((files, np.array(labels, np.int64)))
    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    # The rule reads one size: the median (height, width) of the images.
    image_size = tuple(int(v) for v in np.median(np.array(sizes), axis=0))
    return Source(ds, num_examples=len(files), image_size=image_size, num_classes=len(classes),
                  what=what, pixels_checked=True, class_names=tuple(classes))


def few_shot(source, examples_per_class, num_classes, seed=0, num_examples=None):
    """k labelled examples per class, drawn with a fixed seed (the paper's protocol).

    A dataset of unknown size needs `num_examples`: its first `num_examples` elements
    are drawn from. The returned source knows its size (k * num_classes).
    """
    examples_per_class = check_int("examples_per_class", examples_per_class)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    ds = source.dataset
    if source.num_examples is None:
        if num_examples is None:
            raise ValueError("examples_per_class needs the dataset's size and this dataset's is "
                             "unknown: pass num_examples= (the number of examples to draw from).")
        ds = ds.take(check_int("num_examples", num_examples))
    elif int(ds.cardinality()) == tf.data.INFINITE_CARDINALITY:
        raise ValueError("examples_per_class needs a finite dataset; this one repeats forever.")
    labels = np.fromiter((_label_class(y) for y in ds.map(lambda x, y: y).as_numpy_iterator()),
                         dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < examples_per_class:
            raise ValueError(f"class {c} has {len(idx)} examples; {examples_per_class} requested.")
        chosen.extend(rng.choice(idx, examples_per_class, replace=False))
    chosen = tf.constant(np.sort(np.array(chosen)), dtype=tf.int64)
    picked = ds.enumerate().filter(
        lambda i, _: tf.reduce_any(tf.equal(i, chosen))
    ).map(lambda _, xy: xy)
    return dataclasses.replace(source, dataset=picked.cache(), num_examples=len(chosen))


# --- pipelines --------------------------------------------------------------------------

def train_pipeline(source, rule, num_classes, seed=0):
    """[0, 1] RGB -> resize -> random crop -> random horizontal flip -> batch -> MixUp.

    Every random op is stateless with a seed derived from `seed`, so two runs with
    the same seed see the same batches (the distributed test relies on it). A dataset
    smaller than the batch is sampled with replacement, as the official few-shot runs;
    its images are resized before they are pooled, so they may differ in size.
    """
    num_classes = _check_classes(source, num_classes)
    size, crop = rule.resize_size, rule.crop_size
    what = source.what

    def prepare(image, label):
        image = _to_unit_rgb(image, what, check_range=not source.pixels_checked)
        return tf.image.resize(image, (size, size)), targets(label, num_classes, what)

    def augment(seeds, element):
        image, label = element
        image = tf.image.stateless_random_crop(image, (crop, crop, 3), seed=seeds[0])
        image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
        return image, label

    ds = source.dataset
    if source.num_examples is not None and source.num_examples < rule.batch_size:
        n = source.num_examples
        pool = list(ds.map(prepare).batch(n).take(1))[0]
        ds = tf.data.Dataset.random(seed=seed).map(
            lambda r: tuple(t[tf.math.floormod(r, n)] for t in pool))
    else:
        buffer = min(source.num_examples or 10_000, 10_000)
        # One shuffle over the endless stream: every iterator of this dataset (Keras and
        # tf.distribute make their own) sees the same order for the same seed. Images are
        # resized after it, so the buffer holds them at their own size.
        ds = ds.repeat().shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
        ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = tf.data.Dataset.zip(_seed_pairs(seed + 1), ds).map(augment, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(rule.batch_size, drop_remainder=True)
    if rule.mixup_alpha > 0:
        ds = _mixup(ds, rule.mixup_alpha, seed)
    return ds.prefetch(AUTOTUNE)


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
    """Test images resized straight to the crop size (the official evaluation), with
    the training pipeline's image and label rules."""
    num_classes = _check_classes(source, num_classes)
    crop, what = rule.crop_size, source.what

    def prepare(image, label):
        image = _to_unit_rgb(image, what, check_range=not source.pixels_checked)
        return tf.image.resize(image, (crop, crop)), targets(label, num_classes, what)

    return source.dataset.map(prepare, num_parallel_calls=AUTOTUNE).batch(batch_size).prefetch(AUTOTUNE)
