"""Noisy Student training (Xie et al., "Self-training with Noisy Student improves
ImageNet classification", CVPR 2020), on the fit_bit input pipeline.

Each iteration: the teacher, without noise, labels the unlabeled images; the
labels are filtered by confidence and balanced per class; a student trains on
labeled plus pseudo-labeled images with input noise (Keras' RandAugment) and
model noise (dropout before the head, stochastic depth); the student becomes
the next iteration's teacher. As the released code: label smoothing on labeled
targets only, every example weighs the same in the loss (so an unlabeled batch
`unlabeled_ratio` times larger weighs that much more), soft labels by default.
"""

import contextlib
import dataclasses
import json
import logging
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from keras_bigtransfer.layers import StochasticDepth
from keras_bigtransfer.models.base import HEAD_LAYER
from keras_bigtransfer.training import checkpoint as checkpoint_lib
from keras_bigtransfer.training import config as config_lib
from keras_bigtransfer.training import data as data_lib
from keras_bigtransfer.training.fit_bit import zero_head
from keras_bigtransfer.training.hyperrule import check_int, check_positive
from keras_bigtransfer.training.semi_supervised.common import (
    evaluate,
    fit_steps,
    prepare,
    randaugment_layer,
    warmup_cosine,
)
from keras_bigtransfer.weights.atomic import atomic_directory, atomic_file

log = logging.getLogger(__name__)


def pseudo_label(teacher, images, rule, num_classes, batch_size=256):
    """The teacher's class probabilities for `images` (NHWC), without noise (inference mode,
    images resized to the crop size as at evaluation, in the teacher's layout)."""
    source = data_lib.load_source((images, np.zeros(len(images), "int64")), what="unlabeled_data")
    layout = data_lib.layout_of(teacher)
    batches = data_lib.eval_pipeline(source, rule, num_classes, batch_size, layout).map(lambda x, y: x)
    # convert_to_numpy, not np.asarray: a PyTorch output that requires grad has no __array__
    logits = np.concatenate([keras.ops.convert_to_numpy(teacher(x, training=False)) for x in batches])
    return tf.nn.softmax(logits.astype("float32")).numpy()


def select(probabilities, *, threshold, balance, soft_labels, seed=0):
    """Filter by confidence, balance per predicted class; return (indices, targets).

    Balancing follows the released `filter_unlabel.py`: every class is brought to the
    same count (here the mean count of the kept classes), surplus classes keeping
    their most confident images and sparse classes duplicated, the fractional copy
    drawn at random.
    """
    rng = np.random.default_rng(seed)
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    kept = np.flatnonzero(confidence >= threshold)
    if len(kept) == 0:
        raise ValueError(
            f"no unlabeled image reaches confidence_threshold={threshold}; lower it or "
            "train the teacher further."
        )
    indices = kept
    if balance:
        classes = np.unique(predicted[kept])
        target = int(round(len(kept) / len(classes)))
        chosen = []
        for c in classes:
            members = kept[predicted[kept] == c]
            members = members[np.argsort(-confidence[members])]
            if len(members) >= target:
                chosen.append(members[:target])
            else:
                copies, fraction = divmod(target, len(members))
                extra = rng.choice(members, size=fraction, replace=False)
                chosen.append(np.concatenate([np.tile(members, copies), extra]))
        indices = np.concatenate(chosen)
    if soft_labels:
        targets = probabilities[indices]
    else:
        targets = np.eye(probabilities.shape[1], dtype="float32")[predicted[indices]]
    return indices, targets.astype("float32")


@contextlib.contextmanager
def model_noise(model, dropout_rate, stochastic_depth):
    """`model` with dropout before its head and stochastic depth in its residual blocks.

    Yields a model sharing `model`'s weights. Stochastic depth uses the blocks the
    architecture has: ViT's `StochasticDepth` layers and EfficientNet's per-block
    drop-connect (a `Dropout` with noise_shape (batch, 1, 1, 1)), at rates growing
    linearly with depth to `stochastic_depth`. BiT has none (logged). Rates are
    restored on exit.
    """
    residual = [l for l in model.layers if isinstance(l, StochasticDepth)] or [
        l for l in model.layers
        if isinstance(l, keras.layers.Dropout) and getattr(l, "noise_shape", None) is not None
    ]
    saved = [layer.rate for layer in residual]
    if stochastic_depth and not residual:
        log.info("%s has no residual-drop layers; stochastic depth is not applied.", model.name)
    for i, layer in enumerate(residual):
        layer.rate = stochastic_depth * (i + 1) / len(residual)
    head = model.get_layer(HEAD_LAYER)
    features = keras.layers.Dropout(dropout_rate, name="noisy_student_dropout")(head.input)
    # The same input structure as `model` (a single tensor, not a one-item list), so callers pass
    # the same batches to both.
    noisy = keras.Model(model.input, head(features), name=model.name + "_noisy")
    try:
        yield noisy
    finally:
        for layer, rate in zip(residual, saved):
            layer.rate = rate


def student_dataset(labeled, unlabeled_images_, targets, rule, num_classes, *, unlabeled_ratio,
                    label_smoothing, randaugment, seed, data_format="channels_last"):
    """Batches of labeled (smoothed one-hot) plus `unlabeled_ratio` times as many
    pseudo-labeled images, all through fit_bit's pipeline, then RandAugment (on NHWC), then
    in `data_format`'s layout."""
    labeled_rule = dataclasses.replace(rule, mixup_alpha=0.0)
    unlabeled_rule = dataclasses.replace(rule, mixup_alpha=0.0, batch_size=rule.batch_size * unlabeled_ratio)
    base = data_lib.load_source((unlabeled_images_, np.zeros(len(unlabeled_images_), "int64")),
                                what="unlabeled_data")
    pseudo = dataclasses.replace(
        base, dataset=tf.data.Dataset.from_tensor_slices((unlabeled_images_, targets)),
        num_examples=len(targets),
    )
    lab = data_lib.train_pipeline(labeled, labeled_rule, num_classes, seed=seed)
    unl = data_lib.train_pipeline(pseudo, unlabeled_rule, num_classes, seed=seed + 7)
    smooth = float(label_smoothing)

    def combine(l, u):
        y_l = l[1] * (1.0 - smooth) + smooth / num_classes
        return tf.concat([l[0], u[0]], 0), tf.concat([y_l, u[1]], 0)

    ds = tf.data.Dataset.zip(lab, unl).map(combine, num_parallel_calls=data_lib.AUTOTUNE)
    if randaugment:
        augment = randaugment_layer(randaugment, seed)
        ds = ds.map(lambda x, y: (augment(x), y))  # sequential: see randaugment_layer
    return data_lib.to_layout(ds, data_format).prefetch(data_lib.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class NoisyStudentConfig:
    """fit_noisy_student's settings: everything that decides what a run trains (recorded whole
    in the run record of its `checkpoint_dir`).

    Attributes:
        iterations: teacher -> student rounds (int >= 1); each student teaches the next one.
        soft_labels: train on the teacher's probabilities (True) or its argmax.
        confidence_threshold: keep pseudo-labels whose top probability reaches this, in [0, 1).
        balance: equalize the pseudo-labeled images per class (duplicate / keep most confident).
        unlabeled_ratio: unlabeled images per labeled image in each batch (int >= 1).
        randaugment: (num_ops, magnitude) of Keras' RandAugment on the student's inputs,
            magnitude on the released code's 0-10 level scale; None for no input noise.
        dropout_rate: dropout on the features before the student's head.
        stochastic_depth: drop rate of the student's last residual block (linear in depth).
        label_smoothing: on labeled targets only.
        steps: training steps per iteration (int >= 1).
        batch_size: labeled images per batch (the unlabeled part is unlabeled_ratio times larger).
        learning_rate: peak of SGD with momentum 0.9, linear warmup over 5% of the steps,
            cosine decay.
        resolution: training crop size (default: the BiT-HyperRule's for the data).
        seed: seeds the pipeline, augmentation and balancing.

    Raises:
        ValueError: a setting out of range, naming it (at construction).
    """

    iterations: int = 1
    soft_labels: bool = True
    confidence_threshold: float = 0.3
    balance: bool = True
    unlabeled_ratio: int = 3
    randaugment: Optional[tuple] = (2, 9)
    dropout_rate: float = 0.5
    stochastic_depth: float = 0.2
    label_smoothing: float = 0.1
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 0.01
    resolution: Optional[int] = None
    seed: int = 0

    def __post_init__(self):
        check_int("iterations", self.iterations)
        if not 0.0 <= self.confidence_threshold < 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1); got {self.confidence_threshold!r}.")
        check_int("unlabeled_ratio", self.unlabeled_ratio)
        check_int("steps", self.steps)
        check_int("batch_size", self.batch_size)
        check_positive("learning_rate", self.learning_rate)
        check_int("resolution", self.resolution, minimum=8, optional=True)
        check_int("seed", self.seed, minimum=0)


def fit_noisy_student(teacher, student, labeled_data, unlabeled_data, *, config=None, validation_data=None,
                      strategy=None, checkpoint_dir=None, verbose=0, overwrite=False, **settings):
    """Train `student` by Noisy Student from a trained `teacher`; return (student, record).

    Args:
        teacher: a classifier (logits) trained on `labeled_data` (fit_bit does that).
        student: a classifier of the same classes, equal or larger; its weights at the
            call are every iteration's starting point (e.g. ImageNet-pretrained).
        labeled_data: any fit_bit training source: arrays, tf.data, TFDS name, directory.
        unlabeled_data: images as an array, (images, ignored labels), or a tf.data.Dataset;
            they are held in memory while labelled.
        config: a `NoisyStudentConfig` (default: its defaults); keyword `settings` apply over it.
        validation_data: evaluated (accuracy) after every iteration.
        strategy: a `tf.distribute` strategy; build the models inside its scope.
        checkpoint_dir: back up within iterations (every epoch, data position included)
            and keep finished ones; a rerun with the same arguments resumes. A finished
            run, other models or other settings there are an error, checked first.
        verbose: as in `keras.Model.fit`.
        overwrite: with `checkpoint_dir`, discard the run it holds and start afresh.
        **settings: any `NoisyStudentConfig` field by name (iterations, soft_labels,
            confidence_threshold, balance, unlabeled_ratio, randaugment, dropout_rate,
            stochastic_depth, label_smoothing, steps, batch_size, learning_rate, resolution,
            seed; described there).

    Returns:
        (the last student, a list with one dict per iteration: pseudo-label counts,
        the training loss, validation accuracy).

    Raises:
        TypeError: `config` is not a `NoisyStudentConfig`, or a setting is not one of its fields.
        ValueError: a setting out of range, models of different classes or layouts, or a `checkpoint_dir`
            holding another run.
        TrainingDivergedError: a loss became NaN or infinite; it names the step and the rate.
    """
    config = config_lib.resolve(NoisyStudentConfig, config, settings, "fit_noisy_student")
    setup = prepare("noisy_student", config, teacher, student, labeled_data, unlabeled_data,
                    strategy=strategy, checkpoint_dir=checkpoint_dir, overwrite=overwrite,
                    owned=lambda d: [n for n in os.listdir(d) if n.startswith("iteration_")])
    initial = [w.copy() for w in student.get_weights()]
    record = []
    for iteration in range(1, config.iterations + 1):
        done = _finished(setup.checkpoint_dir, iteration)
        if iteration > 1:
            teacher = student
            with setup.scope:
                student = keras.models.clone_model(teacher)
            student.set_weights(initial)
        if done is not None:
            student.load_weights(done["weights"])
            record.append(done["record"])
            continue
        entry = _iteration(config, setup, iteration, teacher, student, verbose)
        if validation_data is not None:
            entry["val_accuracy"] = evaluate(student, validation_data, setup.rule, setup.num_classes)
        record.append(entry)
        _save_finished(setup.checkpoint_dir, iteration, student, entry)
    if setup.run is not None:
        setup.run.finish()
    return student, record


def _iteration(config, setup, iteration, teacher, student, verbose):
    """One Noisy Student round: pseudo-label, select, train the noised student; its record entry."""
    rule, num_classes, seed = setup.rule, setup.num_classes, config.seed + iteration
    probabilities = pseudo_label(teacher, setup.images, rule, num_classes)
    indices, targets = select(probabilities, threshold=config.confidence_threshold, balance=config.balance,
                              soft_labels=config.soft_labels, seed=seed)
    ds = student_dataset(setup.labeled, setup.images[indices], targets, rule, num_classes,
                         unlabeled_ratio=config.unlabeled_ratio, label_smoothing=config.label_smoothing,
                         randaugment=config.randaugment, seed=seed, data_format=setup.data_format)
    with setup.scope:
        zero_head(student)
        with model_noise(student, config.dropout_rate, config.stochastic_depth) as noisy:
            _seed_noise(noisy, seed)
            noisy.compile(optimizer=keras.optimizers.SGD(warmup_cosine(config.learning_rate, rule.total_steps),
                                                         momentum=0.9),
                          loss=keras.losses.CategoricalCrossentropy(from_logits=True))
            losses = _EpochLosses()
            folder = setup.run.subdir(f"iteration_{iteration}") if setup.run is not None else None

            def resume(epoch):
                # The backed-up epochs' losses, so the record covers the whole iteration.
                losses.losses = _read_losses(folder)[:epoch] if folder is not None else []

            trained_steps = fit_steps(
                noisy, ds, rule.total_steps, folder=folder, callbacks=[losses], on_resume=resume,
                on_backup=lambda step: _write_losses(folder, losses.losses),
                verbose=verbose, trainer=f"noisy_student (iteration {iteration})")
    return {
        "iteration": iteration,
        "pseudo_labeled": int(np.sum(probabilities.max(1) >= config.confidence_threshold)),
        "trained_on_unlabeled": int(len(indices)),
        "per_class": np.bincount(probabilities[indices].argmax(1), minlength=num_classes).tolist(),
        "loss": losses.losses,  # the backed-up epochs' too, when resumed
        "steps": trained_steps,
    }


LOSSES = "losses.json"


def _seed_noise(model, seed):
    """Seed the model's dropout and stochastic-depth generators from `seed`. Keras seeds them
    from its global RNG when the layers are made, which a resumed process has used differently."""
    for i, state in enumerate(checkpoint_lib.random_states(model)):
        value = np.random.SeedSequence([seed, i]).generate_state(1, np.uint32)[0]
        state.assign(np.array([value, 0], dtype=state.dtype))


class _EpochLosses(keras.callbacks.Callback):
    """The training loss of every epoch, resumed runs included."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_epoch_end(self, epoch, logs=None):
        self.losses.append(float((logs or {}).get("loss", float("nan"))))


def _read_losses(folder):
    try:
        with open(os.path.join(folder, LOSSES)) as f:
            return [float(v) for v in json.load(f)]
    except (OSError, ValueError):
        return []


def _write_losses(folder, losses):
    # Written after the backup, atomically; a kill in between loses one informational loss.
    with atomic_file(os.path.join(folder, LOSSES)) as tmp:
        with open(tmp, "w") as f:
            json.dump(losses, f)


def _finished(checkpoint_dir, iteration):
    """The kept result of a finished iteration: one directory, swapped in whole."""
    if checkpoint_dir is None:
        return None
    folder = os.path.join(checkpoint_dir, f"iteration_{iteration}", "result")
    if not os.path.isdir(folder):
        return None
    with open(os.path.join(folder, "record.json")) as f:
        return {"weights": os.path.join(folder, "student.weights.h5"), "record": json.load(f)}


def _save_finished(checkpoint_dir, iteration, student, entry):
    if checkpoint_dir is None:
        return
    with atomic_directory(os.path.join(checkpoint_dir, f"iteration_{iteration}", "result")) as staging:
        student.save_weights(os.path.join(staging, "student.weights.h5"))
        with open(os.path.join(staging, "record.json"), "w") as f:
            json.dump(entry, f)
