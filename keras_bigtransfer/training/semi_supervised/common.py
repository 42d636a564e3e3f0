"""The pieces Noisy Student and Meta Pseudo Labels share: unlabeled images, the training
rule, the learning-rate schedule, RandAugment, evaluation and the steps-to-epochs split."""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_bigtransfer.training import data as data_lib
from keras_bigtransfer.training.fit_bit import _epochs, classifier_head
from keras_bigtransfer.training.hyperrule import hyperrule


def unlabeled_images(unlabeled_data):
    """Images of `unlabeled_data` as a NumPy array: an array, a tuple (images, ignored
    labels), or a `tf.data.Dataset` of images or of (image, label)."""
    if isinstance(unlabeled_data, tf.data.Dataset):
        spec = unlabeled_data.element_spec
        ds = unlabeled_data.map(lambda image, *_: image) if isinstance(spec, tuple) else unlabeled_data
        return np.stack(list(ds.as_numpy_iterator()))
    if isinstance(unlabeled_data, (tuple, list)) and len(unlabeled_data) == 2:
        unlabeled_data = unlabeled_data[0]
    images = np.asarray(unlabeled_data)
    if images.ndim not in (3, 4):
        raise ValueError(
            f"unlabeled_data: images must be (N, H, W) or (N, H, W, C); got shape {images.shape}."
        )
    return images


def shared_classes(teacher, student):
    """The class count of `student`'s head; a ValueError unless `teacher`'s agrees."""
    num_classes = classifier_head(student).units
    if classifier_head(teacher).units != num_classes:
        raise ValueError(
            f"teacher has {classifier_head(teacher).units} classes, student {num_classes}; they must agree."
        )
    return num_classes


def train_rule(labeled, batch_size, resolution, steps):
    """fit_bit's rule for the labeled set, with an optional training resolution."""
    rule = hyperrule(labeled.num_examples, labeled.image_size, batch_size=batch_size)
    if resolution is not None:
        rule = rule.with_resolution(int(resolution))
    return rule.with_total_steps(int(steps))


def warmup_cosine(learning_rate, steps):
    """Linear warmup over 5% of `steps` to `learning_rate`, then cosine decay to 0."""
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, steps), warmup_target=learning_rate, warmup_steps=max(1, steps // 20)
    )


def randaugment_layer(randaugment, seed):
    """Keras' RandAugment from (num_ops, magnitude), magnitude on the released code's
    level scale (10 = its "max" ranges; Keras cannot go beyond, so higher is clipped).

    Map it over a dataset sequentially: the layer draws from a stateful seed generator,
    and parallel calls take the draws in a different order on every run."""
    num_ops, magnitude = randaugment
    return keras.layers.RandAugment(
        value_range=(0, 1), num_ops=int(num_ops), factor=min(float(magnitude) / 10.0, 1.0), seed=seed
    )


def fit_steps(model, dataset, steps, *, backup_dir=None, verbose=0):
    """`model.fit` for exactly `steps` steps, split into epochs as fit_bit splits them (the
    largest count <= 10 that divides `steps`), backed up after every epoch to `backup_dir`."""
    epochs = _epochs(int(steps))
    callbacks = []
    if backup_dir is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False))
    return model.fit(dataset, epochs=epochs, steps_per_epoch=int(steps) // epochs, callbacks=callbacks,
                     verbose=verbose, shuffle=False)


def evaluate(model, validation_data, rule, num_classes, batch_size=256):
    """Top-1 accuracy of `model` on `validation_data` through fit_bit's evaluation pipeline."""
    source = data_lib.load_source(validation_data, what="validation_data")
    correct = total = 0
    for x, y in data_lib.eval_pipeline(source, rule, num_classes, batch_size):
        correct += int(np.sum(np.argmax(np.asarray(model(x, training=False)), 1) == np.argmax(y, 1)))
        total += int(y.shape[0])
    return correct / total


def backup_dir(checkpoint_dir, *parts):
    """`checkpoint_dir/parts...`, or None without a checkpoint_dir."""
    return None if checkpoint_dir is None else os.path.join(checkpoint_dir, *parts)
