"""Training data from any source, and the BiT-HyperRule input pipeline (tf.data).

Sources: a `tf.data.Dataset` of (image, label), a tuple of NumPy arrays, a TFDS
"name:split" string, or a directory of class folders. The pipeline hands the model
float32 RGB in [0, 1], the package's input convention, by the package's one image rule
(`layers/image_input.py`, which the models apply too, with the same messages):

- uint8 is divided by 255; float is taken as [0, 1] (a warning, once, when values lie
  far outside: max > 2 or min < -1); any other dtype (int16, uint16, int32, bool) is
  refused: convert to uint8 or to float in [0, 1] first.
- 1 channel (grayscale) is repeated to RGB; 3 is RGB; 4 (RGBA) and 2 (grayscale + alpha)
  lose their alpha channel, as Pillow's `convert("RGB")`; other counts are refused.
- Image files (class folders) are decoded to RGB by `preprocessing.read_image_file`.

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

from keras_bigtransfer.layers.image_input import (FAR_ABOVE, FAR_BELOW, MAX_IMAGE_CHANNELS, check_images, far_outside,
                                                   standardize_data_format, to_channels, warn_range)
from keras_bigtransfer.preprocessing import to_numpy
from keras_bigtransfer.preprocessing import IMAGE_EXTENSIONS, image_file_size, read_image_file
from keras_bigtransfer.training.hyperrule import check_int

AUTOTUNE = tf.data.AUTOTUNE

# The pipeline's functions are graph code already (tf.cond, control dependencies; Python `if`
# only on static shapes and dtypes): AutoGraph's conversion of them and of everything they call
# only cost time, about 5 s of building fit_bit's pipelines on 2 CPU cores.
_graph = tf.autograph.experimental.do_not_convert

# Files of other extensions in class folders (.DS_Store, CSVs, notes) are skipped.
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
        _check_numpy_images(images, what)
        if len(images) != len(labels):
            raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels.")
        if not len(images):
            raise ValueError(f"{what} holds no examples.")
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


# --- the image rule (layers/image_input.py) -------------------------------------------

def _check_numpy_images(images, what):
    """A NumPy batch by the image rule: its ValueErrors, and its warning for floats far outside [0, 1]."""
    check_images(images, what)
    if np.issubdtype(images.dtype, np.floating) and images.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN arrays: NaN, no warning
            low, high = float(np.nanmin(images)), float(np.nanmax(images))
        if far_outside(low, high):
            warn_range(low, high, what, stacklevel=4)


def _to_unit_rgb(image, what, check_range):
    """One image to float32 RGB in [0, 1] by the image rule. Static shapes and dtypes
    are checked when the pipeline is built; a channel count known only at run time is
    checked per element."""
    plan = check_images(image, what, batch=False)
    image = tf.cast(image, tf.float32)
    if plan.uint8:
        image = image / 255.0
    elif check_range:
        image = _warn_if_far_outside(image, what)
    if plan.keep is not None:
        return to_channels(image, plan, concatenate=tf.concat)
    image = image[..., None] if plan.add_channel_axis else image
    channels = tf.shape(image)[-1]
    assertion = tf.debugging.Assert(tf.logical_and(channels >= 1, channels <= MAX_IMAGE_CHANNELS), [
        f"{what}: an image has a channel count the rule cannot convert; it takes 3 (RGB), 1 (grayscale), "
        "or 4 / 2 (RGBA / grayscale + alpha, alpha dropped). Channels:", channels])
    with tf.control_dependencies([assertion]):
        keep = tf.where(tf.equal(channels % 2, 0), channels - 1, channels)  # alpha dropped
        image = image[..., :keep]
        image = tf.tile(image, [1, 1, 3 // keep])
    return tf.ensure_shape(image, [None, None, 3])


def _warn_if_far_outside(image, what):
    """Warn (once per pipeline) when a float image lies far outside [0, 1]."""
    warned = []

    def warn(low, high):
        if not warned:
            warned.append(True)
            warn_range(float(low), float(high), what)
        return np.float32(0)

    low, high = tf.reduce_min(image), tf.reduce_max(image)
    far = tf.logical_or(high > FAR_ABOVE, low < FAR_BELOW)  # far_outside, as a graph op
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


def check_classes(source, num_classes):
    """The model's class count (`num_classes`, its head's) checked against the data's: the
    recipes' and pipelines' one class-count check. Returns it as an int.

    Raises:
        ValueError: fewer than 2 classes, or labels beyond the head (naming the num_classes to
            build the model with).
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    if source.num_classes is not None and source.num_classes > num_classes:
        raise ValueError(f"{source.what}: the data has {source.num_classes} classes (labels up to "
                         f"{source.num_classes - 1}) but the model's head has {num_classes}: build the "
                         f"model with num_classes={source.num_classes}.")
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
    check_images(image_spec, what, batch=False)
    shape = image_spec.shape
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

def train_pipeline(source, rule, num_classes, seed=0, data_format="channels_last"):
    """[0, 1] RGB -> resize -> random crop -> random horizontal flip -> batch -> MixUp.

    Batches are (batch, crop, crop, 3) float32, or (batch, 3, crop, crop) for
    `data_format="channels_first"` (a model built so: models' `data_format`).

    Every random op is stateless with a seed derived from `seed`, so two runs with
    the same seed see the same batches (the distributed test relies on it). A dataset
    smaller than the batch is sampled with replacement, as the official few-shot runs;
    its images are resized before they are pooled, so they may differ in size.
    """
    num_classes = check_classes(source, num_classes)
    size, crop = rule.resize_size, rule.crop_size
    what = source.what

    @_graph
    def prepare(image, label):
        image = _to_unit_rgb(image, what, check_range=not source.pixels_checked)
        return tf.image.resize(image, (size, size)), targets(label, num_classes, what)

    @_graph
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
            _graph(lambda r: tuple(t[tf.math.floormod(r, n)] for t in pool)))
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
    return to_layout(ds, data_format).prefetch(AUTOTUNE)


def layout_of(model):
    """The image layout `model` takes: its `data_format` ("channels_first" for a model built so),
    "channels_last" for a model without one."""
    return getattr(model, "data_format", "channels_last")


def to_layout(ds, data_format, images=(0,)):
    """Batches of NHWC images as the model takes them: NCHW for a channels_first model.
    `images`: the places in each element that hold image batches (the rest pass through)."""
    if standardize_data_format(data_format) == "channels_last":
        return ds

    def transpose(*element):
        return tuple(tf.transpose(t, (0, 3, 1, 2)) if i in images else t for i, t in enumerate(element))

    return ds.map(_graph(transpose), num_parallel_calls=AUTOTUNE, deterministic=True)


def _seed_pairs(seed):
    """Two stateless-op seeds per element. No batch op here: tf.distribute rebatches
    batch ops when it splits the global batch, which would shift these seeds."""
    return tf.data.Dataset.random(seed=seed).map(_graph(lambda r: tf.stack([tf.stack([r, 0]), tf.stack([r, 1])])))


def _mixup(ds, alpha, seed):
    """One lambda ~ Beta(alpha, alpha) per batch; partners are the batch reversed (official TF2/JAX)."""

    @_graph
    def mix(seeds, batch):
        images, labels = batch
        a = tf.random.stateless_gamma((), seed=seeds[0], alpha=alpha)
        b = tf.random.stateless_gamma((), seed=seeds[1], alpha=alpha)
        lam = a / (a + b)
        return (lam * images + (1 - lam) * tf.reverse(images, [0]),
                lam * labels + (1 - lam) * tf.reverse(labels, [0]))

    return tf.data.Dataset.zip(_seed_pairs(seed + 2), ds).map(mix, num_parallel_calls=AUTOTUNE, deterministic=True)


def eval_pipeline(source, rule, num_classes, batch_size, data_format="channels_last"):
    """Test images resized straight to the crop size (the official evaluation), with
    the training pipeline's image and label rules and layout."""
    num_classes = check_classes(source, num_classes)
    crop, what = rule.crop_size, source.what

    @_graph
    def prepare(image, label):
        image = _to_unit_rgb(image, what, check_range=not source.pixels_checked)
        return tf.image.resize(image, (crop, crop)), targets(label, num_classes, what)

    ds = source.dataset.map(prepare, num_parallel_calls=AUTOTUNE).batch(batch_size)
    return to_layout(ds, data_format).prefetch(AUTOTUNE)
