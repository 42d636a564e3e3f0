"""fit_bit(): fine-tune any model of the package in one call, by the BiT-HyperRule (default) or
the ViT paper's recipe."""

import contextlib
import dataclasses
import logging
import math
from typing import Optional

import keras
import numpy as np

from keras_bigtransfer.errors import TrainingDivergedError
from keras_bigtransfer.models.base import HEAD_LAYER
from keras_bigtransfer.training import checkpoint as checkpoint_lib
from keras_bigtransfer.training import data as data_lib
from keras_bigtransfer.training import config as config_lib
from keras_bigtransfer.training.hyperrule import (
    REFERENCE_BATCH,
    check_image_size,
    check_int,
    check_positive,
    hyperrule,
)
from keras_bigtransfer.training.vit_rule import vit_rule

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


# The recipes fit_bit trains by: name -> the function giving its rule for a dataset, with the
# signature (num_examples, image_size, batch_size=512, base_lr=<the recipe's>). Each rule carries
# its own table (training/hyperrule.py, training/vit_rule.py), schedule and optimizer.
RECIPES = {"bit": hyperrule, "vit": vit_rule}


@dataclasses.dataclass(frozen=True)
class FitBitConfig:
    """fit_bit's settings: everything that decides what a run trains (recorded whole in the
    run record of its `checkpoint_dir`).

    Attributes:
        recipe: "bit" (default): the BiT-HyperRule (`hyperrule`; Kolesnikov et al. 2020,
            section 3.3); "vit": the ViT paper's fine-tuning recipe (`vit_rule`; Dosovitskiy
            et al. 2021, appendix B.1.1): SGD momentum 0.9, no weight decay, linear warmup then
            cosine decay to 0, gradients clipped at global norm 1, 384-pixel crops.
        num_examples: override (or supply, where the data cannot tell) the dataset size the
            recipe reads. With `examples_per_class`, the size of the data the few-shot set is
            drawn from (its first `num_examples` where the size is unknown); the recipe then
            reads the few-shot set's size.
        image_size: the same for the images' (height, width): the BiT rule's input that picks
            its resolution (128 under 96x96 pixels, else 480), not the training resolution
            (that is `resolution`); not needed with `resolution`.
        batch_size: global batch size; the learning rate scales by batch_size/512 and the
            step counts by 512/batch_size (both recipes).
        base_lr: learning rate at batch 512; None: the recipe's (bit 0.003, vit 0.01).
        total_steps: override the recipe's length; the warmup (and BiT's decay boundaries)
            scale in proportion.
        examples_per_class: few-shot: k examples per class, drawn with a fixed seed.
        seed: seeds shuffling, augmentation, MixUp and the few-shot draw, together with
            TensorFlow's global seed (`keras.utils.set_random_seed`), which tf.data pairs
            with every op seed: the same batches need the same of both.
        resolution: train at this crop size instead of the recipe's (bit 128 / 480, vit 384),
            images resized to the recipe's ratio of it first (bit 1.25x as 160 -> 128, vit
            448/384); evaluation uses it too.
        freeze_batch_norm: train BatchNorm models with their pretrained statistics
            (`freeze_batch_norm(model)`; the layers stay frozen afterwards). No effect on
            BiT and ViT, which have no BatchNorm.

    Raises:
        ValueError: a setting out of range or an unknown recipe, naming it (at construction).
    """

    recipe: str = "bit"
    num_examples: Optional[int] = None
    image_size: Optional[tuple] = None
    batch_size: int = 512
    base_lr: Optional[float] = None
    total_steps: Optional[int] = None
    examples_per_class: Optional[int] = None
    seed: int = 0
    resolution: Optional[int] = None
    freeze_batch_norm: bool = False

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))}; got {self.recipe!r}.")
        check_int("num_examples", self.num_examples, optional=True)
        check_image_size("image_size", self.image_size, optional=True)
        check_int("batch_size", self.batch_size)
        check_positive("base_lr", self.base_lr, optional=True)
        check_int("total_steps", self.total_steps, optional=True)
        check_int("examples_per_class", self.examples_per_class, optional=True)
        check_int("seed", self.seed, minimum=0)
        check_int("resolution", self.resolution, minimum=8, optional=True)

    def rule(self, num_examples, image_size, model):
        """The recipe's rule for this data and `model` (a ViT's crop: a multiple of its patch)."""
        learning_rate = {} if self.base_lr is None else {"base_lr": self.base_lr}
        rule = RECIPES[self.recipe](int(num_examples), image_size, batch_size=self.batch_size, **learning_rate)
        if self.total_steps is not None:
            rule = rule.with_total_steps(int(self.total_steps))
        if self.resolution is not None:
            rule = rule.with_resolution(int(self.resolution))
        return rule.for_model(model)


def fit_bit(model, train_data, validation_data=None, *, config=None, strategy=None, checkpoint_dir=None,
            data_dir=None, callbacks=(), verbose=1, overwrite=False, **settings):
    """Fine-tune `model` on `train_data` with the BiT-HyperRule (or the ViT recipe); return the History.

    `fit_bit(model, data, recipe="vit", batch_size=64)` and
    `fit_bit(model, data, config=FitBitConfig(recipe="vit", batch_size=64))` are the same call.

    Args:
        model: any keras_bigtransfer classifier (include_top=True, logits), with as
            many classes as the data. Its head is zero-initialized first (BiT; ViT B.1.1).
        train_data: a `tf.data.Dataset` of (image, label), a tuple (images, labels) of
            NumPy arrays, a TFDS "name:split" string, or a directory of class folders.
            Images uint8 in [0, 255] or float in [0, 1]; grayscale is made RGB.
        validation_data: the same kinds; evaluated at the crop size after each epoch.
        config: a `FitBitConfig` (default: its defaults); keyword `settings` apply over it.
        strategy: a `tf.distribute` strategy; build the model inside `strategy.scope()`.
        checkpoint_dir: back up after every epoch; a run killed at any point and started
            again with the same arguments continues from the last backup, data included, and
            ends with the weights of an uninterrupted run. The directory keeps a record of
            the run (`run.json`, the config whole): a finished run, another model, another
            recipe or other settings there are an error, checked before any training.
        data_dir: TFDS data directory (default: $TFDS_DATA_DIR, then ~/tensorflow_datasets).
        callbacks: extra Keras callbacks.
        verbose: as in `keras.Model.fit`.
        overwrite: with `checkpoint_dir`, discard the run it holds (finished or not) and
            start afresh instead of raising.
        **settings: any `FitBitConfig` field by name: recipe, num_examples, image_size,
            batch_size, base_lr, total_steps, examples_per_class, seed, resolution,
            freeze_batch_norm (described there).

    Returns:
        The `keras.callbacks.History` of the run; its `rule` attribute is the rule trained by
        (a `HyperRule` or `ViTRule`).

    Raises:
        TypeError: `config` is not a `FitBitConfig`, or a setting is not one of its fields.
        ValueError: a setting out of range, a model without a usable head, data of more
            classes than the head, or a `checkpoint_dir` holding another run.
        TrainingDivergedError: the training loss became NaN or infinite (a learning rate too
            high, bad labels or images); it names the step and the rate. Nothing is returned.
    """
    config = config_lib.resolve(FitBitConfig, config, settings, "fit_bit")
    num_classes = classifier_head(model).units
    if checkpoint_dir is not None:
        checkpoint_dir = checkpoint_lib.writable_dir(checkpoint_dir)  # before any expensive work
    source = data_lib.load_source(train_data, data_dir=data_dir)
    data_lib.check_classes(source, num_classes)  # before the few-shot draw
    if source.class_names and len(source.class_names) == num_classes and hasattr(model, "set_pretrained_cfg"):
        # Class folders (or TFDS label names) stay with the model: `predict` prints them.
        model.set_pretrained_cfg(label_names=list(source.class_names))
    num_examples = config.num_examples
    if config.examples_per_class is not None:
        source = data_lib.few_shot(source, config.examples_per_class, num_classes, seed=config.seed,
                                   num_examples=num_examples)
        num_examples = None  # the rule reads the few-shot set's size
    num_examples = num_examples or source.num_examples
    # The data's image size only picks the rule's resolution, which `resolution` replaces.
    image_size = config.image_size or source.image_size or (config.resolution and (config.resolution,) * 2)
    missing = [n for n, v in (("num_examples", num_examples), ("image_size", image_size)) if v is None]
    if missing:
        raise ValueError(
            "fit_bit cannot infer " + " and ".join(missing) + " from this data (a dataset of "
            "unknown length or image shape): pass " + ", ".join(f"{m}=" for m in missing) + "."
        )

    rule = config.rule(num_examples, image_size, model)
    # A model built channels_first takes NCHW batches (the pipeline transposes them).
    data_format = data_lib.layout_of(model)
    train = data_lib.train_pipeline(source, rule, num_classes, seed=config.seed, data_format=data_format)
    validation = None
    if validation_data is not None:
        val_source = data_lib.load_source(validation_data, data_dir=data_dir, what="validation_data")
        validation = data_lib.eval_pipeline(val_source, rule, num_classes, config.batch_size, data_format)

    if config.freeze_batch_norm:
        freeze_batch_norm(model)
    epochs = _epochs(rule.total_steps)
    steps_per_epoch = rule.total_steps // epochs
    run = None
    if checkpoint_dir is not None:
        settings = {"config": config_lib.record(config), "rule": dataclasses.asdict(rule),
                    "data": checkpoint_lib.describe_data(train_data, source)}
        run = checkpoint_lib.Run(checkpoint_dir, "fit_bit", checkpoint_lib.describe_models(model=model),
                                 settings, overwrite=overwrite, recipe=config.recipe)
    schedule = rule.schedule()
    if rule.GLOBAL_CLIPNORM is not None and getattr(strategy, "num_replicas_in_sync", 1) > 1:
        # Keras' optimizer clips in `apply`, before its all-reduce (tensorflow/tensorflow#33929).
        log.warning("fit_bit: under %s, Keras clips each replica's gradient before the all-reduce, not "
                    "their sum: the %s recipe's clip at global norm %g then lets through up to %d times "
                    "that (one device clips the whole gradient).", type(strategy).__name__, config.recipe,
                    rule.GLOBAL_CLIPNORM, strategy.num_replicas_in_sync)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    start_step = 0
    with scope:
        zero_head(model)
        model.compile(
            optimizer=rule.optimizer(),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
        if run is not None:
            start_step = checkpoint_lib.restore(model, checkpoint_dir)

    base_lr = rule.peak_lr * REFERENCE_BATCH / rule.batch_size
    remedy = f"Lower base_lr (now {base_lr:g} at batch 512), or check the labels and images."
    run_callbacks = [_LearningRateLogger(schedule), RaiseOnDivergence("fit_bit", remedy), *callbacks]
    if run is not None:
        run.begin()
        run_callbacks.insert(0, checkpoint_lib.EpochBackup(checkpoint_dir, steps_per_epoch))
    if verbose:
        print(f"fit_bit ({config.recipe} recipe): {rule}" + (f" (resuming at step {start_step})" if start_step else ""))
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
