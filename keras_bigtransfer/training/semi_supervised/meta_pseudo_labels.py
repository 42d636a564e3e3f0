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
import os

import keras
import numpy as np
import tensorflow as tf

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.training import checkpoint as checkpoint_lib
from keras_bigtransfer.training import data as data_lib
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

log = logging.getLogger(__name__)

SAVE_EVERY = 50  # MPL steps between checkpoints
METRICS = ("teacher_loss", "student_loss", "h", "uda", "teacher_supervised")


def _cross_entropy(targets, logits):
    return tf.reduce_mean(keras.losses.categorical_crossentropy(targets, logits, from_logits=True))


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
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="mpl_step")
        baseline = tf.Variable(0.0, trainable=False, name="mpl_baseline")
        # Sums of the per-step metrics, checkpointed, so a resumed run reports whole-run means.
        sums = tf.Variable(tf.zeros(len(METRICS), tf.float64), trainable=False, name="mpl_sums")
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    smooth = float(label_smoothing)

    def train_step(labeled_batch, unlabeled_batch):
        (x_l, y_l), (x_u, x_u_aug) = labeled_batch, unlabeled_batch
        y_l_smooth = y_l * (1.0 - smooth) + smooth / num_classes
        n_l, n_u = tf.shape(x_l)[0], tf.shape(x_u)[0]
        with tf.GradientTape() as teacher_tape:
            logits = teacher(tf.concat([x_l, x_u, x_u_aug], 0), training=True)
            t_l, t_u, t_u_aug = logits[:n_l], logits[n_l:n_l + n_u], logits[n_l + n_u:]
            teacher_supervised = _cross_entropy(y_l_smooth, t_l)
            soft = tf.stop_gradient(tf.nn.softmax(t_u / uda_temperature))
            confident = tf.cast(tf.reduce_max(tf.nn.softmax(t_u), -1) >= uda_threshold, tf.float32)
            uda = tf.reduce_mean(confident * keras.losses.categorical_crossentropy(soft, t_u_aug, from_logits=True))
            pseudo = tf.stop_gradient(tf.one_hot(tf.argmax(t_u_aug, -1), num_classes))
            teacher_on_pseudo = _cross_entropy(pseudo, t_u_aug)

        with tf.GradientTape() as student_tape:
            s_logits = student(tf.concat([x_l, x_u_aug], 0), training=True)
            student_loss = _cross_entropy(pseudo, s_logits[n_l:])
            scaled = student_loss / replicas  # recorded on the tape: the division is part of the loss
        old = _cross_entropy(y_l, s_logits[:n_l])
        grads = student_tape.gradient(scaled, student.trainable_variables)
        student_opt.apply_gradients(zip(grads, student.trainable_variables))
        new = _cross_entropy(y_l, student(x_l, training=True))
        h = tf.stop_gradient(old - new)
        advantage = h - baseline
        baseline.assign_add(0.01 * (h - baseline))

        with teacher_tape:
            teacher_loss = teacher_supervised + uda_weight * uda + advantage * teacher_on_pseudo
            scaled = teacher_loss / replicas
        grads = teacher_tape.gradient(scaled, teacher.trainable_variables)
        teacher_opt.apply_gradients(zip(grads, teacher.trainable_variables))
        return {"teacher_loss": teacher_loss, "student_loss": student_loss, "h": h, "uda": uda,
                "teacher_supervised": teacher_supervised}

    @tf.function
    def distributed_step(labeled_batch, unlabeled_batch):
        if strategy is None:
            return train_step(labeled_batch, unlabeled_batch)
        out = strategy.run(train_step, args=(labeled_batch, unlabeled_batch))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in out.items()}

    manager = None
    if checkpoint_dir is not None:
        # tf.train.Checkpoint writes to a temporary prefix and renames, and the manager's
        # index file is replaced atomically: a kill mid-save leaves the previous checkpoint.
        ckpt = tf.train.Checkpoint(teacher=teacher, student=student, teacher_opt=teacher_opt,
                                   student_opt=student_opt, step=step, baseline=baseline, sums=sums)
        manager = tf.train.CheckpointManager(ckpt, os.path.join(checkpoint_dir, "mpl"), max_to_keep=2)
        if manager.latest_checkpoint:
            try:
                ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as e:
                raise WeightsError(
                    f"checkpoint_dir={checkpoint_dir!r}: {manager.latest_checkpoint} does not restore "
                    f"into these models ({str(e)[:300]}). Pass a new checkpoint_dir, or overwrite=True "
                    "to discard it and start afresh."
                ) from e
            log.info("resumed Meta Pseudo Labels at step %d", int(step.numpy()))

    # The pipeline is seeded: skipping the batches already trained on resumes the data.
    batches = batches.skip(int(step.numpy())) if int(step.numpy()) else batches
    iterator = iter(strategy.experimental_distribute_dataset(batches) if strategy is not None else batches)
    while int(step.numpy()) < steps:
        labeled_batch, unlabeled_batch = next(iterator)
        out = distributed_step(labeled_batch, unlabeled_batch)
        sums.assign_add(tf.constant([float(out[k]) for k in METRICS], tf.float64))
        step.assign_add(1)
        if verbose and int(step.numpy()) % 10 == 0:
            print(f"mpl step {int(step.numpy())}/{steps}: " + ", ".join(f"{k} {float(v):.4f}" for k, v in out.items()))
        if manager is not None and (int(step.numpy()) % SAVE_EVERY == 0 or int(step.numpy()) == steps):
            manager.save(checkpoint_number=int(step.numpy()))

    record = {"steps": steps, **{f"mean_{k}": float(v) / steps for k, v in zip(METRICS, sums.numpy())}}
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
                      verbose=verbose)
    if validation_data is not None:
        record["val_accuracy"] = evaluate(student, validation_data, rule, num_classes)
    if run is not None:
        run.finish()
    return student, record
