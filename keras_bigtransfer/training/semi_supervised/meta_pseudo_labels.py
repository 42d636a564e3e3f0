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

import contextlib
import dataclasses
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.training import checkpoint as checkpoint_lib
from keras_bigtransfer.training import data as data_lib
from keras_bigtransfer.training.fit_bit import current_learning_rate, diverged
from keras_bigtransfer.training.hyperrule import check_int
from keras_bigtransfer.training.semi_supervised.common import (
    evaluate,
    fit_steps,
    randaugment_layer,
    shared_classes,
    train_rule,
    unlabeled_images,
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


def fit_meta_pseudo_labels(
    teacher,
    student,
    labeled_data,
    unlabeled_data,
    *,
    steps,
    uda_weight=1.0,
    uda_threshold=0.6,
    uda_temperature=0.7,
    label_smoothing=0.1,
    finetune_steps=0,
    batch_size=32,
    unlabeled_ratio=3,
    teacher_learning_rate=0.01,
    student_learning_rate=0.01,
    finetune_learning_rate=0.001,
    randaugment=(2, 9),
    resolution=None,
    validation_data=None,
    strategy=None,
    checkpoint_dir=None,
    seed=0,
    verbose=0,
    overwrite=False,
):
    """Train `teacher` and `student` by Meta Pseudo Labels; return (student, record).

    Args:
        teacher: a classifier (logits); it keeps training during MPL.
        student: a classifier of the same classes.
        labeled_data: any fit_bit training source.
        unlabeled_data: images as an array, (images, ignored labels), or a tf.data.Dataset.
        steps: MPL steps (one teacher and one student update each).
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
        randaugment: (num_ops, magnitude) for x_u_aug (Keras' RandAugment).
        resolution: training crop size (default: the BiT-HyperRule's for the data).
        validation_data: the student's accuracy is measured after MPL and after the fine-tune.
        strategy: a `tf.distribute` strategy; build both models inside its scope.
        checkpoint_dir: both models, optimizers and the step are saved every 50 steps and at
            the end, the fine-tune every epoch; a rerun with the same arguments resumes, data
            included. A finished run, other models or other settings there are an error,
            checked first.
        seed: seeds the pipeline and augmentation.
        verbose: print progress every 10 steps, and the fine-tune's as `keras.Model.fit`.
        overwrite: with `checkpoint_dir`, discard the run it holds and start afresh.

    Returns:
        (student, dict with per-step means of the losses and h, and accuracies).

    Raises:
        TrainingDivergedError: a loss became NaN or infinite; it names the step and the rate.
    """
    steps = check_int("steps", steps)
    num_classes = shared_classes(teacher, student)
    if checkpoint_dir is not None:
        checkpoint_dir = checkpoint_lib.writable_dir(checkpoint_dir)  # before any expensive work
    labeled = data_lib.load_source(labeled_data, what="labeled_data")
    images = unlabeled_images(unlabeled_data)
    rule = dataclasses.replace(train_rule(labeled, batch_size, resolution, steps).for_model(teacher, student),
                               mixup_alpha=0.0)  # for_model: a crop that ViTs' patches divide
    run = None
    if checkpoint_dir is not None:
        settings = dict(
            steps=steps, uda_weight=uda_weight, uda_threshold=uda_threshold, uda_temperature=uda_temperature,
            label_smoothing=label_smoothing, finetune_steps=finetune_steps, batch_size=batch_size,
            unlabeled_ratio=unlabeled_ratio, teacher_learning_rate=teacher_learning_rate,
            student_learning_rate=student_learning_rate, finetune_learning_rate=finetune_learning_rate,
            randaugment=randaugment, resolution=resolution, seed=seed,
            labeled_data=checkpoint_lib.describe_data(labeled_data, labeled),
            unlabeled_data=checkpoint_lib.describe_data(images),
        )
        run = checkpoint_lib.Run(checkpoint_dir, "meta_pseudo_labels",
                                 checkpoint_lib.describe_models(teacher=teacher, student=student),
                                 settings, overwrite=overwrite, owned=("mpl", "finetune"))
        run.begin()
    unlabeled = data_lib.load_source((images, np.zeros(len(images), "int64")), what="unlabeled_data")
    augment = randaugment_layer(randaugment, seed) if randaugment else (lambda x: x)
    lab = data_lib.train_pipeline(labeled, rule, num_classes, seed=seed)
    unl = data_lib.train_pipeline(
        unlabeled, dataclasses.replace(rule, batch_size=batch_size * unlabeled_ratio), num_classes, seed=seed + 7
    ).map(lambda x, _: (x, augment(x)))  # sequential: see randaugment_layer
    batches = tf.data.Dataset.zip(lab, unl).prefetch(data_lib.AUTOTUNE)

    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        teacher_opt = keras.optimizers.SGD(warmup_cosine(teacher_learning_rate, steps), momentum=0.9)
        student_opt = keras.optimizers.SGD(warmup_cosine(student_learning_rate, steps), momentum=0.9)
        teacher_opt.build(teacher.trainable_variables)
        student_opt.build(student.trainable_variables)
        # One step on any backend (meta_step.py): the losses once, the gradients per backend.
        mpl_step = MetaPseudoLabelsStep(
            teacher, student, teacher_opt, student_opt, num_classes=num_classes, label_smoothing=label_smoothing,
            uda_weight=uda_weight, uda_threshold=uda_threshold, uda_temperature=uda_temperature, strategy=strategy)
    smooth = float(label_smoothing)
    # The step count and the sums of the per-step metrics (so a resumed run reports whole-run means).
    state = MetaState(teacher, student, teacher_opt, student_opt, mpl_step.baseline, scope)

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

    record = {"steps": steps, **{f"mean_{k}": float(v) / steps for k, v in zip(METRICS, state.sums)}}
    if validation_data is not None:
        record["val_accuracy_after_mpl"] = evaluate(student, validation_data, rule, num_classes)
    if finetune_steps:
        with scope:
            student.compile(
                optimizer=keras.optimizers.SGD(finetune_learning_rate, momentum=0.9),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smooth),
            )
            fit_steps(student, data_lib.train_pipeline(labeled, rule, num_classes, seed=seed + 11),
                      finetune_steps, folder=run.subdir("finetune") if run is not None else None,
                      verbose=verbose, trainer="meta_pseudo_labels (fine-tuning)")
    if validation_data is not None:
        record["val_accuracy"] = evaluate(student, validation_data, rule, num_classes)
    if run is not None:
        run.finish()
    return student, record
