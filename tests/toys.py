"""Tiny models and data for the training tests: they build and train in seconds on a CPU."""

import os

import keras
import numpy as np

import keras_bigtransfer as kb
from keras_bigtransfer.models import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def smallest_variants():
    """The smallest registered variant of each family (by `Variant.num_params`), in registration
    order: the per-family picks of `make test-backends` and of the no-TensorFlow checks."""
    from keras_bigtransfer.models import registry

    return [min(registry.variants(f.name), key=lambda v: v.num_params or float("inf")).name
            for f in registry.families()]


def tiny_model(num_classes=2, activation=None, seed=0, batch_norm=False):
    """A small model of the package's shape (ImageModel, WSConv2D, GroupNorm, "head");
    `batch_norm=True`: BatchNormalization instead of GroupNorm (EfficientNet's kind)."""
    keras.utils.set_random_seed(seed)
    inputs = base.image_inputs((None, None, 3))
    x = kb.layers.WSConv2D(8, 3, strides=4, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x) if batch_norm else keras.layers.GroupNormalization(4)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(num_classes, activation=activation, name="head")(x)
    return kb.ImageModel(inputs, x, name="tiny")


def colour_data(n, size=16, seed=0):
    """Class 0 reddish, class 1 bluish, noisy uint8 images: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 120, (n, size, size, 3)).astype(np.uint8)
    images[labels == 0, ..., 0] += 100
    images[labels == 1, ..., 2] += 100
    return images, labels


class Crash(keras.callbacks.Callback):
    """Stands for a kill: raises after `at` steps, between two backups."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.at:
            raise KeyboardInterrupt("simulated kill")


def first_batch_losses(strategy=None):
    """The semi-supervised recipes' `fit_steps` for 2 steps (2 one-step epochs) on a pipeline whose
    k-th batch pulled holds the value k (a stateful counter, like RandAugment's draws), with a
    model that never changes (learning rate 0, output 0): the two losses are k**2 of the batches
    trained on, [1.0, 4.0] when training starts at the pipeline's first batch."""
    import contextlib

    import tensorflow as tf

    from keras_bigtransfer.training.semi_supervised.common import fit_steps

    counter = tf.Variable(0.0)
    counted = tf.data.Dataset.range(10).map(lambda i: counter.assign_add(1.0))
    counted = counted.map(lambda k: (tf.fill((4, 2), k), tf.fill((4, 1), k)))
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        probe = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros")])
        probe.compile(keras.optimizers.SGD(0.0), loss="mse")
    seen = []

    class Losses(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(logs["loss"]))

    fit_steps(probe, counted, 2, callbacks=[Losses()])
    return seen
