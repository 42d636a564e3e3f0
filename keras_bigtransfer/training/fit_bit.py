"""fit_bit(): fine-tune any model of the package with the BiT-HyperRule in one call."""

import contextlib
import dataclasses
import logging
import math

import keras
import numpy as np

from keras_bigtransfer.errors import TrainingDivergedError
from keras_bigtransfer.models.base import HEAD_LAYER
from keras_bigtransfer.training import checkpoint as checkpoint_lib
from keras_bigtransfer.training import data as data_lib
from keras_bigtransfer.training.hyperrule import HyperRuleSchedule, check_fit_arguments, hyperrule

log = logging.getLogger(__name__)

MAX_EPOCHS = 10  # evaluation / checkpoint points over a run


def classifier_head(model):
    """The model's linear classifier (the layer named "head" in every family)."""
    try:
        head = model.get_layer(HEAD_LAYER)
    except ValueError:
        raise ValueError(
            f"{model.name} has no classifier head: build it with include_top=True and "
            "num_classes set to the number of classes in your data."
        ) from None
    if head.activation not in (None, keras.activations.linear):
        raise ValueError(
            f"{model.name}'s head applies {head.activation.__name__}; fit_bit trains on logits: "
            "build the model with classifier_activation=None."
        )
    if head.units < 2:  # softmax over one class is always 1: the loss is 0 whatever the data
        raise ValueError(
            f"{model.name}'s head has {head.units} class; classification needs at least 2: "
            "build the model with num_classes set to the number of classes in your data."
        )
    return head


def zero_head(model):
    """Zero the classifier's kernel and bias: BiT's transfer initialization."""
    head = classifier_head(model)
    for variable in head.weights:
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    return head.units


def freeze_batch_norm(model):
    """Keep every BatchNormalization layer of `model` (nested models included) at its
    pretrained statistics: non-trainable, so it normalizes with its moving averages in
    training too. Returns `model`, so a constructor call can be wrapped.

    Short fine-tunes of BatchNorm models (EfficientNet) on small data do better this way:
    the moving averages cannot follow the new data in a few hundred steps, and the
    per-batch statistics of a small batch are noisy. GroupNorm models (BiT, ViT's
    LayerNorm) have no running statistics and are unaffected. Undo with
    `layer.trainable = True`; recompile after either.
    """
    pending = [model]
    while pending:
        layer = pending.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        pending.extend(getattr(layer, "layers", ()))
    return model


_freeze = freeze_batch_norm  # fit_bit's argument of the same name hides the function there


class _LearningRateLogger(keras.callbacks.Callback):
    """Puts the current learning rate into the logs the progress bar shows."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def _log(self, logs):
        if logs is not None:
            logs["learning_rate"] = float(self.schedule(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        self._log(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._log(logs)


def current_learning_rate(optimizer):
    """The rate `optimizer` applies at its current step (its schedule evaluated there)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def diverged(trainer, what, value, step, learning_rate, remedy):
    """The `TrainingDivergedError` of a non-finite loss, naming the step and the rate."""
    return TrainingDivergedError(
        f"{trainer}: the {what} became {value} at step {step} (learning rate {learning_rate:g}); the run "
        f"diverged and its weights are unusable, so nothing was returned or written. {remedy}",
        step=step, learning_rate=learning_rate)


class RaiseOnDivergence(keras.callbacks.Callback):
    """Raise `TrainingDivergedError` at the first non-finite training loss.

    Keras' `TerminateOnNaN` only stops, and `fit` then returns normally: a caller (the CLI)
    would publish the NaN weights as a model. Raising here also keeps the diverged epoch out
    of any backup (`EpochBackup` runs at epoch ends).
    """

    def __init__(self, trainer, remedy):
        super().__init__()
        self.trainer = trainer
        self.remedy = remedy

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            optimizer = self.model.optimizer
            step = int(keras.ops.convert_to_numpy(optimizer.iterations))
            raise diverged(self.trainer, "loss", float(loss), step, current_learning_rate(optimizer), self.remedy)


def _epochs(total_steps):
    """The largest number of epochs <= MAX_EPOCHS that divides total_steps exactly."""
    return max(e for e in range(1, min(MAX_EPOCHS, total_steps) + 1) if total_steps % e == 0)


def fit_bit(
    model,
    train_data,
    validation_data=None,
    *,
    num_examples=None,
    image_size=None,
    batch_size=512,
    base_lr=0.003,
    total_steps=None,
    strategy=None,
    checkpoint_dir=None,
    verbose=1,
    examples_per_class=None,
    data_dir=None,
    callbacks=(),
    seed=0,
    resolution=None,
    freeze_batch_norm=False,
    overwrite=False,
):
    """Fine-tune `model` on `train_data` with the BiT-HyperRule; return the History.

    Args:
        model: any keras_bigtransfer classifier (include_top=True, logits), with as
            many classes as the data. Its head is zero-initialized first (BiT).
        train_data: a `tf.data.Dataset` of (image, label), a tuple (images, labels) of
            NumPy arrays, a TFDS "name:split" string, or a directory of class folders.
            Images uint8 in [0, 255] or float in [0, 1]; grayscale is made RGB.
        validation_data: the same kinds; evaluated at the crop size after each epoch.
        num_examples: override (or supply, where the data cannot tell) the dataset size
            that the HyperRule reads. With `examples_per_class`, the size of the data the
            few-shot set is drawn from (its first `num_examples` where the size is unknown);
            the rule then reads the few-shot set's size.
        image_size: the same for the images' (height, width): the rule's input that
            picks its resolution (128 under 96x96 pixels, else 480), not the training
            resolution (that is `resolution`); not needed with `resolution`.
        batch_size: global batch size; the learning rate scales by batch_size/512 and
            the step counts by 512/batch_size.
        base_lr: learning rate at batch 512.
        total_steps: override the rule's length; warmup and decay boundaries scale in
            proportion.
        strategy: a `tf.distribute` strategy; build the model inside `strategy.scope()`.
        checkpoint_dir: back up after every epoch; a run killed at any point and started
            again with the same arguments continues from the last backup, data included, and
            ends with the weights of an uninterrupted run. The directory keeps a record of
            the run (`run.json`): a finished run, another model or other settings there are
            an error, checked before any training.
        verbose: as in `keras.Model.fit`.
        examples_per_class: few-shot: k examples per class, drawn with a fixed seed.
        data_dir: TFDS data directory (default: $TFDS_DATA_DIR, then ~/tensorflow_datasets).
        callbacks: extra Keras callbacks.
        seed: seeds shuffling, augmentation, MixUp and the few-shot draw.
        resolution: train at this crop size instead of the rule's 128 / 480 (images
            resized to 1.25x it first, as the rule's 160 -> 128); evaluation uses it too.
        freeze_batch_norm: train BatchNorm models with their pretrained statistics
            (`freeze_batch_norm(model)`; the layers stay frozen afterwards). No effect on
            BiT and ViT, which have no BatchNorm.
        overwrite: with `checkpoint_dir`, discard the run it holds (finished or not) and
            start afresh instead of raising.

    Returns:
        The `keras.callbacks.History` of the run.

    Raises:
        TrainingDivergedError: the training loss became NaN or infinite (a learning rate too
            high, bad labels or images); it names the step and the rate. Nothing is returned.
    """
    check_fit_arguments(num_examples=num_examples, image_size=image_size, batch_size=batch_size,
                        base_lr=base_lr, total_steps=total_steps, examples_per_class=examples_per_class,
                        seed=seed, resolution=resolution)
    num_classes = classifier_head(model).units
    if checkpoint_dir is not None:
        checkpoint_dir = checkpoint_lib.writable_dir(checkpoint_dir)  # before any expensive work
    source = data_lib.load_source(train_data, data_dir=data_dir)
    data_lib.check_classes(source, num_classes)  # before the few-shot draw
    if source.class_names and len(source.class_names) == num_classes and hasattr(model, "set_pretrained_cfg"):
        # Class folders (or TFDS label names) stay with the model: `predict` prints them.
        model.set_pretrained_cfg(label_names=list(source.class_names))
    if examples_per_class is not None:
        source = data_lib.few_shot(source, examples_per_class, num_classes, seed=seed,
                                   num_examples=num_examples)
        num_examples = None  # the rule reads the few-shot set's size
    num_examples = num_examples or source.num_examples
    # The data's image size only picks the rule's resolution, which `resolution` replaces.
    image_size = image_size or source.image_size or (resolution and (resolution, resolution))
    missing = [n for n, v in (("num_examples", num_examples), ("image_size", image_size)) if v is None]
    if missing:
        raise ValueError(
            "fit_bit cannot infer " + " and ".join(missing) + " from this data (a dataset of "
            "unknown length or image shape): pass " + ", ".join(f"{m}=" for m in missing) + "."
        )

    rule = hyperrule(int(num_examples), image_size, batch_size=batch_size, base_lr=base_lr)
    if total_steps is not None:
        rule = rule.with_total_steps(int(total_steps))
    if resolution is not None:
        rule = rule.with_resolution(int(resolution))
    rule = rule.for_model(model)  # a ViT's crop: a multiple of its patch size
    train = data_lib.train_pipeline(source, rule, num_classes, seed=seed)
    validation = None
    if validation_data is not None:
        val_source = data_lib.load_source(validation_data, data_dir=data_dir, what="validation_data")
        validation = data_lib.eval_pipeline(val_source, rule, num_classes, batch_size)

    if freeze_batch_norm:
        _freeze(model)
    epochs = _epochs(rule.total_steps)
    steps_per_epoch = rule.total_steps // epochs
    run = None
    if checkpoint_dir is not None:
        settings = {**dataclasses.asdict(rule), "seed": seed, "examples_per_class": examples_per_class,
                    "data": checkpoint_lib.describe_data(train_data, source)}
        run = checkpoint_lib.Run(checkpoint_dir, "fit_bit", checkpoint_lib.describe_models(model=model),
                                 settings, overwrite=overwrite)
    schedule = HyperRuleSchedule.from_rule(rule)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    start_step = 0
    with scope:
        zero_head(model)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=0.9),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
        if run is not None:
            start_step = checkpoint_lib.restore(model, checkpoint_dir)

    remedy = f"Lower base_lr (now {base_lr:g} at batch 512), or check the labels and images."
    run_callbacks = [_LearningRateLogger(schedule), RaiseOnDivergence("fit_bit", remedy), *callbacks]
    if run is not None:
        run.begin()
        run_callbacks.insert(0, checkpoint_lib.EpochBackup(checkpoint_dir, steps_per_epoch))
    if verbose:
        print(f"fit_bit: {rule}" + (f" (resuming at step {start_step})" if start_step else ""))
    history = model.fit(
        # The pipeline is seeded and stateless: skipping the batches already trained on
        # resumes the data where the backup was taken.
        train.skip(start_step) if start_step else train,
        validation_data=validation,
        epochs=epochs,
        initial_epoch=start_step // steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        callbacks=run_callbacks,
        verbose=verbose,
        shuffle=False,  # the pipeline shuffles
    )
    if run is not None and int(model.optimizer.iterations) >= rule.total_steps:
        run.finish()
    history.rule = rule
    return history
