"""The pieces Noisy Student and Meta Pseudo Labels share: their preamble (models, data, rule and
run record), unlabeled images, the training rule, the learning-rate schedule, RandAugment,
evaluation and the steps-to-epochs split."""

import contextlib
import dataclasses
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

from keras_bigtransfer.layers.image_input import check_images
from keras_bigtransfer.preprocessing import to_numpy
from keras_bigtransfer.training import checkpoint as checkpoint_lib
from keras_bigtransfer.training import config as config_lib
from keras_bigtransfer.training import data as data_lib
from keras_bigtransfer.training.fit_bit import RaiseOnDivergence, _epochs, classifier_head
from keras_bigtransfer.training.hyperrule import hyperrule


@dataclasses.dataclass
class Prepared:
    """What `prepare` read and made: the class count, the labeled source, the unlabeled images
    (NumPy), the rule, the begun run record (None without checkpoint_dir), its directory, the
    strategy (or None) and its scope (a null context without one)."""

    num_classes: int
    labeled: Any
    images: np.ndarray
    rule: Any
    run: Optional[checkpoint_lib.Run]
    checkpoint_dir: Optional[str]
    strategy: Any
    scope: Any
    data_format: str


def prepare(trainer, config, teacher, student, labeled_data, unlabeled_data, *, strategy, checkpoint_dir,
            overwrite, owned):
    """The preamble of both recipes, in this order: the models' shared class count and layout, `checkpoint_dir`
    made and proved writable (before any expensive work), the labeled source and the unlabeled
    images read, fit_bit's rule for the labeled set (`config.batch_size`, `.resolution`, `.steps`;
    a crop the models' ViT patches divide; no MixUp) and the run record (`config` whole, the two
    data descriptions) checked against `checkpoint_dir` and begun. `owned(checkpoint_dir)`: the
    names there that belong to the run. Returns a `Prepared`.

    Raises:
        ValueError: the models' classes or image layouts (`data_format`) disagree, or
            `checkpoint_dir` holds another run.
        WeightsError: `checkpoint_dir` holds a run of other models.
        OSError: `checkpoint_dir` cannot be written.
    """
    num_classes = shared_classes(teacher, student)
    data_format = shared_data_format(teacher, student)
    if checkpoint_dir is not None:
        checkpoint_dir = checkpoint_lib.writable_dir(checkpoint_dir)
    labeled = data_lib.load_source(labeled_data, what="labeled_data")
    images = unlabeled_images(unlabeled_data)
    rule = train_rule(labeled, config.batch_size, config.resolution, config.steps).for_model(teacher, student)
    rule = dataclasses.replace(rule, mixup_alpha=0.0)  # neither recipe uses MixUp
    run = None
    if checkpoint_dir is not None:
        settings = {"config": config_lib.record(config),
                    "labeled_data": checkpoint_lib.describe_data(labeled_data, labeled),
                    "unlabeled_data": checkpoint_lib.describe_data(images)}
        run = checkpoint_lib.Run(checkpoint_dir, trainer, checkpoint_lib.describe_models(teacher=teacher, student=student),
                                 settings, overwrite=overwrite, owned=owned(checkpoint_dir))
        run.begin()
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    return Prepared(num_classes, labeled, images, rule, run, checkpoint_dir, strategy, scope, data_format)


def unlabeled_images(unlabeled_data):
    """Images of `unlabeled_data` as a NumPy array: an array, a tuple (images, ignored
    labels), or a `tf.data.Dataset` of images or of (image, label)."""
    if isinstance(unlabeled_data, tf.data.Dataset):
        spec = unlabeled_data.element_spec
        ds = unlabeled_data.map(lambda image, *_: image) if isinstance(spec, tuple) else unlabeled_data
        return np.stack(list(ds.as_numpy_iterator()))
    if isinstance(unlabeled_data, (tuple, list)) and len(unlabeled_data) == 2:
        unlabeled_data = unlabeled_data[0]
    images = to_numpy(unlabeled_data)  # any backend's tensors too
    check_images(images, "unlabeled_data")  # the package's image rule, before any training
    return images


def shared_classes(teacher, student):
    """The class count of `student`'s head; a ValueError unless `teacher`'s agrees."""
    num_classes = classifier_head(student).units
    if classifier_head(teacher).units != num_classes:
        raise ValueError(
            f"teacher has {classifier_head(teacher).units} classes, student {num_classes}; they must agree."
        )
    return num_classes


def shared_data_format(teacher, student):
    """The image layout both models take; a ValueError naming both when they differ (the
    pipelines feed the two the same batches)."""
    teacher_layout, student_layout = data_lib.layout_of(teacher), data_lib.layout_of(student)
    if teacher_layout != student_layout:
        raise ValueError(
            f"teacher takes {teacher_layout} images, student {student_layout}; build both under "
            "the same keras.config.image_data_format()."
        )
    return student_layout


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

    Map it over a dataset sequentially, and iterate that dataset once: the layer draws from a
    stateful seed generator, so parallel calls take the draws in a different order on every
    run, and every iterator advances it (`fit_steps` keeps Keras from opening a throwaway one)."""
    num_ops, magnitude = randaugment
    return keras.layers.RandAugment(
        value_range=(0, 1), num_ops=int(num_ops), factor=min(float(magnitude) / 10.0, 1.0), seed=seed
    )


def fit_steps(model, dataset, steps, *, folder=None, callbacks=(), on_resume=None, on_backup=None,
              verbose=0, trainer="training"):
    """`model.fit` for exactly `steps` steps, split into epochs as fit_bit splits them (the
    largest count <= 10 that divides `steps`).

    With `folder` (a `training.checkpoint.Run` subdirectory), the model and optimizer are
    backed up atomically after every epoch and a rerun resumes from the last backup, the
    data where it stopped (the pipeline is seeded, so the batches already trained on are
    skipped). `on_resume(epoch)` is called with the epoch resumed at (0 for a fresh start),
    `on_backup(step)` after each backup. Returns the step count trained in all.

    Raises:
        TrainingDivergedError: the loss became non-finite (`trainer` names the recipe).
    """
    epochs = _epochs(int(steps))
    steps_per_epoch = int(steps) // epochs
    remedy = "Lower the learning rate, or check the labels and images."
    callbacks, start_step = [RaiseOnDivergence(trainer, remedy), *callbacks], 0
    if folder is not None:
        start_step = checkpoint_lib.restore(model, folder)
        callbacks.append(checkpoint_lib.EpochBackup(folder, steps_per_epoch, on_backup=on_backup))
    if on_resume is not None:
        on_resume(start_step // steps_per_epoch)
    build_compiled_loss(model, dataset)
    model.fit(dataset.skip(start_step) if start_step else dataset, epochs=epochs,
              initial_epoch=start_step // steps_per_epoch, steps_per_epoch=steps_per_epoch,
              callbacks=callbacks, verbose=verbose, shuffle=False)
    return int(model.optimizer.iterations.numpy())  # .numpy(): a MirroredVariable under a strategy


def build_compiled_loss(model, dataset):
    """Builds `model`'s compiled loss on a zero batch of `dataset`'s shapes, before `fit`.

    Otherwise Keras' `fit` on JAX and PyTorch builds it from a first batch of an iterator it then
    throws away, and that iterator's prefetching runs a timing-dependent number of batches
    through RandAugment's stateful seed generator: the batches trained on, and a resumed run's,
    would change from run to run and between image layouts.

    For the recipes' models: functional, one output, compiled with a loss and no metrics, on
    batches of (images, labels) with every dimension but the batch known. Anything else is left
    to Keras. Under a `tf.distribute` strategy, Keras' `fit` on TensorFlow opens and throws away
    a first iterator in any case (keras 3.15, `_maybe_symbolic_build`)."""
    element = dataset.element_spec
    if getattr(model, "loss", None) is None or not isinstance(element, tuple) or len(element) < 2:
        return
    specs = (element[0], element[1])
    output_shape = getattr(model, "output_shape", None)
    if not all(isinstance(spec, tf.TensorSpec) and None not in spec.shape[1:] for spec in specs) or \
            not isinstance(output_shape, tuple) or None in output_shape[1:]:
        return
    x, y = (np.zeros((1, *spec.shape[1:]), spec.dtype.as_numpy_dtype) for spec in specs)
    model.compute_loss(x=x, y=y, y_pred=np.zeros((1, *output_shape[1:]), "float32"))


def evaluate(model, validation_data, rule, num_classes, batch_size=256):
    """Top-1 accuracy of `model` on `validation_data` through fit_bit's evaluation pipeline."""
    source = data_lib.load_source(validation_data, what="validation_data")
    correct = total = 0
    for x, y in data_lib.eval_pipeline(source, rule, num_classes, batch_size, data_lib.layout_of(model)):
        correct += int(np.sum(np.argmax(keras.ops.convert_to_numpy(model(x, training=False)), 1) == np.argmax(y, 1)))
        total += int(y.shape[0])
    return correct / total
