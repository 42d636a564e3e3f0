"""Meta Pseudo Labels (Pham et al., CVPR 2021), on the fit_bit input pipeline.

Per step, with labeled (x_l, y_l) and unlabeled x_u (x_u_aug its RandAugmented copy):

1. The teacher labels x_u_aug: a hard label y_hat = argmax T(x_u_aug).
2. The student takes one SGD step on CE(y_hat, S(x_u_aug)); its labeled loss is
   measured before (old) and after (new) the step.
3. h = old - new, the first-order form of the paper's
   h = eta_S * grad L_l(theta_S')^T grad CE(y_hat, S(x_u; theta_S)): Taylor-expanding
   L_l(theta_S') around theta_S gives old - new. h > 0 means the pseudo-label
   helped the student. A moving baseline (as in the released code) is subtracted.
4. The teacher descends (h - baseline) * CE(y_hat, T(x_u_aug)) + CE_smoothed(y_l, T(x_l))
   + uda_weight * UDA, so labels that helped become more likely.

Sign and label choice, deliberately: the released code uses new - old (the opposite
sign, google-research#602) and a soft target stop_gradient(softmax(T(x_u_aug))) on
the very logits it differentiates, whose gradient is identically zero (#534/#541).
We use the derivation's sign and hard labels, the only choice for which the MPL
term has a gradient at all. Finally the student is fine-tuned on labeled data.
"""

import dataclasses
import logging
import math
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.training import config as config_lib
from keras_bigtransfer.training import data as data_lib
from keras_bigtransfer.training.fit_bit import current_learning_rate, diverged
from keras_bigtransfer.training.hyperrule import check_int, check_positive
from keras_bigtransfer.training.semi_supervised.common import (
    evaluate,
    fit_steps,
    prepare,
    randaugment_layer,
    warmup_cosine,
)
from keras_bigtransfer.training.semi_supervised.meta_step import (
    METRICS,
    MetaPseudoLabelsStep,
    MetaState,
    cross_entropy,
)

log = logging.getLogger(__name__)

SAVE_EVERY = 50  # MPL steps between checkpoints
_cross_entropy = cross_entropy  # the name the tests use


def _check_finite(out, step, teacher_opt, student_opt):
    """Raise `TrainingDivergedError` at the first non-finite loss: before it is added or backed up."""
    for name in ("teacher_loss", "student_loss"):
        if not math.isfinite(out[name]):
            optimizer = teacher_opt if name == "teacher_loss" else student_opt
            raise diverged("meta_pseudo_labels", name.replace("_", " "), out[name], step,
                           current_learning_rate(optimizer),
                           "Lower teacher_learning_rate and student_learning_rate, or check the labels and images.")


@dataclasses.dataclass(frozen=True)
class MetaPseudoLabelsConfig:
    """fit_meta_pseudo_labels' settings: everything that decides what a run trains (recorded
    whole in the run record of its `checkpoint_dir`).

    Attributes:
        steps: MPL steps (int >= 1; one teacher and one student update each). Required.
        uda_weight: weight of the teacher's UDA consistency loss: targets
            softmax(T(x_u) / uda_temperature), applied to T(x_u_aug), only where the
            teacher's confidence on x_u reaches uda_threshold.
        uda_threshold: see uda_weight.
        uda_temperature: see uda_weight.
        label_smoothing: on the labeled targets of the teacher and the fine-tune.
        finetune_steps: the student's final fine-tune on labeled data (0: none).
        batch_size: labeled images per step.
        unlabeled_ratio: unlabeled images per labeled image.
        teacher_learning_rate: SGD (momentum 0.9), warmup then cosine.
        student_learning_rate: the same for the student.
        finetune_learning_rate: constant, for the fine-tune.
        randaugment: (num_ops, magnitude) for x_u_aug (Keras' RandAugment); None for none.
        resolution: training crop size (default: the BiT-HyperRule's for the data).
        seed: seeds the pipeline and augmentation.

    Raises:
        ValueError: a setting out of range, naming it (at construction).
    """

    steps: int
    uda_weight: float = 1.0
    uda_threshold: float = 0.6
    uda_temperature: float = 0.7
    label_smoothing: float = 0.1
    finetune_steps: int = 0
    batch_size: int = 32
    unlabeled_ratio: int = 3
    teacher_learning_rate: float = 0.01
    student_learning_rate: float = 0.01
    finetune_learning_rate: float = 0.001
    randaugment: Optional[tuple] = (2, 9)
    resolution: Optional[int] = None
    seed: int = 0

    def __post_init__(self):
        check_int("steps", self.steps)
        check_int("finetune_steps", self.finetune_steps, minimum=0)
        check_int("batch_size", self.batch_size)
        check_int("unlabeled_ratio", self.unlabeled_ratio)
        for name in ("teacher_learning_rate", "student_learning_rate", "finetune_learning_rate"):
            check_positive(name, getattr(self, name))
        check_int("resolution", self.resolution, minimum=8, optional=True)
        check_int("seed", self.seed, minimum=0)


def fit_meta_pseudo_labels(teacher, student, labeled_data, unlabeled_data, *, config=None, validation_data=None,
                           strategy=None, checkpoint_dir=None, verbose=0, overwrite=False, **settings):
    """Train `teacher` and `student` by Meta Pseudo Labels; return (student, record).

    Args:
        teacher: a classifier (logits); it keeps training during MPL.
        student: a classifier of the same classes.
        labeled_data: any fit_bit training source.
        unlabeled_data: images as an array, (images, ignored labels), or a tf.data.Dataset.
        config: a `MetaPseudoLabelsConfig`; keyword `settings` apply over it (without a
            config, `steps=` is required).
        validation_data: the student's accuracy is measured after MPL and after the fine-tune.
        strategy: a `tf.distribute` strategy; build both models inside its scope.
        checkpoint_dir: both models, optimizers and the step are saved every 50 steps and at
            the end, the fine-tune every epoch; a rerun with the same arguments resumes, data
            included. A finished run, other models or other settings there are an error,
            checked first.
        verbose: print progress every 10 steps, and the fine-tune's as `keras.Model.fit`.
        overwrite: with `checkpoint_dir`, discard the run it holds and start afresh.
        **settings: any `MetaPseudoLabelsConfig` field by name (steps, uda_weight,
            uda_threshold, uda_temperature, label_smoothing, finetune_steps, batch_size,
            unlabeled_ratio, teacher_learning_rate, student_learning_rate,
            finetune_learning_rate, randaugment, resolution, seed; described there).

    Returns:
        (student, dict with per-step means of the losses and h, and accuracies).

    Raises:
        TypeError: `config` is not a `MetaPseudoLabelsConfig`, a setting is not one of its
            fields, or `steps` is missing.
        ValueError: a setting out of range, models of different classes or layouts, or a `checkpoint_dir`
            holding another run.
        TrainingDivergedError: a loss became NaN or infinite; it names the step and the rate.
    """
    config = config_lib.resolve(MetaPseudoLabelsConfig, config, settings, "fit_meta_pseudo_labels")
    setup = prepare("meta_pseudo_labels", config, teacher, student, labeled_data, unlabeled_data,
                    strategy=strategy, checkpoint_dir=checkpoint_dir, overwrite=overwrite,
                    owned=lambda d: ("mpl", "finetune"))
    state = _meta_pseudo_labels(config, setup, teacher, student, verbose)
    steps, rule, num_classes = config.steps, setup.rule, setup.num_classes
    record = {"steps": steps, **{f"mean_{k}": float(v) / steps for k, v in zip(METRICS, state.sums)}}
    if validation_data is not None:
        record["val_accuracy_after_mpl"] = evaluate(student, validation_data, rule, num_classes)
    if config.finetune_steps:
        with setup.scope:
            student.compile(
                optimizer=keras.optimizers.SGD(config.finetune_learning_rate, momentum=0.9),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                          label_smoothing=float(config.label_smoothing)),
            )
            finetune = data_lib.train_pipeline(setup.labeled, rule, num_classes, seed=config.seed + 11,
                                               data_format=setup.data_format)
            fit_steps(student, finetune,
                      config.finetune_steps, folder=setup.run.subdir("finetune") if setup.run is not None else None,
                      verbose=verbose, trainer="meta_pseudo_labels (fine-tuning)")
    if validation_data is not None:
        record["val_accuracy"] = evaluate(student, validation_data, rule, num_classes)
    if setup.run is not None:
        setup.run.finish()
    return student, record


def _meta_pseudo_labels(config, setup, teacher, student, verbose):
    """The MPL steps (resumed from `setup.checkpoint_dir`'s backup); returns the `MetaState`."""
    steps, rule, num_classes, images = config.steps, setup.rule, setup.num_classes, setup.images
    seed, strategy, checkpoint_dir = config.seed, setup.strategy, setup.checkpoint_dir
    unlabeled = data_lib.load_source((images, np.zeros(len(images), "int64")), what="unlabeled_data")
    augment = randaugment_layer(config.randaugment, seed) if config.randaugment else (lambda x: x)
    lab = data_lib.train_pipeline(setup.labeled, rule, num_classes, seed=seed, data_format=setup.data_format)
    unl = data_lib.train_pipeline(
        unlabeled, dataclasses.replace(rule, batch_size=config.batch_size * config.unlabeled_ratio), num_classes,
        seed=seed + 7,
    ).map(lambda x, _: (x, augment(x)))  # sequential: see randaugment_layer
    unl = data_lib.to_layout(unl, setup.data_format, images=(0, 1))  # RandAugment takes NHWC
    batches = tf.data.Dataset.zip(lab, unl).prefetch(data_lib.AUTOTUNE)

    with setup.scope:
        teacher_opt = keras.optimizers.SGD(warmup_cosine(config.teacher_learning_rate, steps), momentum=0.9)
        student_opt = keras.optimizers.SGD(warmup_cosine(config.student_learning_rate, steps), momentum=0.9)
        teacher_opt.build(teacher.trainable_variables)
        student_opt.build(student.trainable_variables)
        # One step on any backend (meta_step.py): the losses once, the gradients per backend.
        mpl_step = MetaPseudoLabelsStep(
            teacher, student, teacher_opt, student_opt, num_classes=num_classes,
            label_smoothing=config.label_smoothing, uda_weight=config.uda_weight,
            uda_threshold=config.uda_threshold, uda_temperature=config.uda_temperature, strategy=strategy)
    # The step count and the sums of the per-step metrics (so a resumed run reports whole-run means).
    state = MetaState(teacher, student, teacher_opt, student_opt, mpl_step.baseline, setup.scope)

    saver = None
    if checkpoint_dir is not None:
        saver = state.saver(os.path.join(checkpoint_dir, "mpl"))
        try:
            resumed = saver.restore()
        except (AssertionError, ValueError, KeyError, OSError, tf.errors.OpError) as e:
            raise WeightsError(
                f"checkpoint_dir={checkpoint_dir!r}: {saver.latest} does not restore "
                f"into these models ({str(e)[:300]}). Pass a new checkpoint_dir, or overwrite=True "
                "to discard it and start afresh."
            ) from e
        if resumed:
            log.info("resumed Meta Pseudo Labels at step %d", state.step)

    # The pipeline is seeded: skipping the batches already trained on resumes the data.
    batches = batches.skip(state.step) if state.step else batches
    if strategy is not None:
        iterator = iter(strategy.experimental_distribute_dataset(batches))
    elif keras.backend.backend() == "tensorflow":
        iterator = iter(batches)
    else:  # JAX and PyTorch take NumPy batches
        iterator = batches.as_numpy_iterator()
    while state.step < steps:
        labeled_batch, unlabeled_batch = next(iterator)
        out = mpl_step(labeled_batch, unlabeled_batch)
        _check_finite(out, state.step + 1, teacher_opt, student_opt)
        state.add(out)
        if verbose and state.step % 10 == 0:
            print(f"mpl step {state.step}/{steps}: " + ", ".join(f"{k} {float(v):.4f}" for k, v in out.items()))
        if saver is not None and (state.step % SAVE_EVERY == 0 or state.step == steps):
            saver.save()

    return state
