"""One Meta Pseudo Labels step on every Keras backend.

The losses are written once, with `keras.ops`; only the gradients differ per backend:
TensorFlow records them on a `tf.GradientTape` (inside `tf.function`, under any
`tf.distribute` strategy), JAX differentiates a pure function of the variables'
values (`Layer.stateless_call`, `jax.vjp`, `Optimizer.stateless_apply`, jitted), and
PyTorch uses `torch.autograd.grad` on the eager graph.

The teacher's loss is linear in three terms measured on its one forward pass:

    teacher_loss = supervised + uda_weight * uda + advantage * on_pseudo

where `advantage` (the student's h minus a moving baseline) is only known after the
student's step. TensorFlow keeps the teacher's tape open across that step; JAX keeps
the forward pass's `vjp` and applies it with the cotangents (1, uda_weight,
advantage); PyTorch keeps the autograd graph. Each backend runs the teacher forward
once, and all three compute the same numbers.
"""

import keras
from keras import ops

METRICS = ("teacher_loss", "student_loss", "h", "uda", "teacher_supervised")
BASELINE_DECAY = 0.01  # the moving baseline's step towards each h, as in the released code


def cross_entropy(targets, logits):
    """Mean categorical cross-entropy of float32 `logits` against `targets` (float32)."""
    return ops.mean(keras.losses.categorical_crossentropy(targets, ops.cast(logits, "float32"), from_logits=True))


def split_batch(labeled_batch, unlabeled_batch, num_classes, label_smoothing):
    """(x_l, y_l, y_l smoothed, x_u, x_u_aug) of one step's batches."""
    (x_l, y_l), (x_u, x_u_aug) = labeled_batch, unlabeled_batch
    y_l = ops.cast(y_l, "float32")
    y_l_smooth = y_l * (1.0 - label_smoothing) + label_smoothing / num_classes
    return x_l, y_l, y_l_smooth, x_u, x_u_aug


def teacher_terms(logits, y_l_smooth, n_l, n_u, *, num_classes, uda_threshold, uda_temperature):
    """The teacher's three loss terms and the hard pseudo-labels, from its logits on
    concat([x_l, x_u, x_u_aug]).

    Returns ((supervised, uda, on_pseudo), pseudo): `supervised` is the smoothed
    cross-entropy on x_l; `uda` the consistency of T(x_u_aug) with the sharpened
    softmax(T(x_u) / uda_temperature) where the teacher's confidence on x_u reaches
    uda_threshold; `on_pseudo` the cross-entropy of T(x_u_aug) with its own argmax
    (`pseudo`, one-hot, no gradient).
    """
    logits = ops.cast(logits, "float32")
    t_l, t_u, t_u_aug = logits[:n_l], logits[n_l:n_l + n_u], logits[n_l + n_u:]
    supervised = cross_entropy(y_l_smooth, t_l)
    soft = ops.stop_gradient(ops.softmax(t_u / uda_temperature))
    confident = ops.cast(ops.max(ops.softmax(t_u), axis=-1) >= uda_threshold, "float32")
    uda = ops.mean(confident * keras.losses.categorical_crossentropy(soft, t_u_aug, from_logits=True))
    pseudo = ops.stop_gradient(ops.one_hot(ops.argmax(t_u_aug, axis=-1), num_classes))
    on_pseudo = cross_entropy(pseudo, t_u_aug)
    return (supervised, uda, on_pseudo), pseudo


def advantage_and_baseline(old, new, baseline):
    """h = old - new (the student's labeled loss before minus after its step), the
    advantage h - baseline, and the baseline moved towards h."""
    h = ops.stop_gradient(old - new)
    return h, h - baseline, baseline + BASELINE_DECAY * (h - baseline)


class MetaPseudoLabelsStep:
    """Callable: one MPL step (a student update, then a teacher update) on the current
    Keras backend; returns the step's METRICS as Python floats.

    Args:
        teacher, student: built classifiers (logits) with `num_classes` outputs.
        teacher_optimizer, student_optimizer: Keras optimizers, built on the models'
            trainable variables.
        num_classes, label_smoothing, uda_weight, uda_threshold, uda_temperature: as in
            `fit_meta_pseudo_labels`.
        strategy: a `tf.distribute` strategy (TensorFlow only); the models and the
            optimizers must have been built in its scope.

    The moving baseline is `self.baseline`, a non-trainable `keras.Variable`.

    Raises:
        ValueError: `strategy` given on a backend other than TensorFlow.
        NotImplementedError: a Keras backend other than tensorflow, jax and torch.
    """

    def __init__(self, teacher, student, teacher_optimizer, student_optimizer, *, num_classes,
                 label_smoothing, uda_weight, uda_threshold, uda_temperature, strategy=None):
        self.backend = keras.backend.backend()
        if self.backend not in ("tensorflow", "jax", "torch"):
            raise NotImplementedError(
                f"Meta Pseudo Labels needs the teacher's gradient through the student's step, written "
                f"for the tensorflow, jax and torch Keras backends; this is {self.backend!r}. Set "
                "KERAS_BACKEND to one of them."
            )
        if strategy is not None and self.backend != "tensorflow":
            raise ValueError(
                f"strategy= takes a tf.distribute strategy, which runs on the TensorFlow backend only; this "
                f"is {self.backend}. Leave it None (one device), or run with KERAS_BACKEND=tensorflow."
            )
        self.teacher, self.student = teacher, student
        self.teacher_optimizer, self.student_optimizer = teacher_optimizer, student_optimizer
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.uda_weight = float(uda_weight)
        self.uda_threshold = float(uda_threshold)
        self.uda_temperature = float(uda_temperature)
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync if strategy is not None else 1
        self.baseline = keras.Variable(0.0, dtype="float32", trainable=False, aggregation="mean", name="mpl_baseline")
        self._compiled = None

    def _terms(self, logits, y_l_smooth, n_l, n_u):
        return teacher_terms(logits, y_l_smooth, n_l, n_u, num_classes=self.num_classes,
                             uda_threshold=self.uda_threshold, uda_temperature=self.uda_temperature)

    def _teacher_loss(self, terms, advantage):
        supervised, uda, on_pseudo = terms
        return supervised + self.uda_weight * uda + advantage * on_pseudo

    def __call__(self, labeled_batch, unlabeled_batch):
        if self._compiled is None:
            self._compiled = getattr(self, f"_build_{self.backend}")()
        out = self._compiled(labeled_batch, unlabeled_batch)
        return {k: float(ops.convert_to_numpy(out[k])) for k in METRICS}

    # TensorFlow: one tape across the student's step, in tf.function, under any strategy.
    def _build_tensorflow(self):
        import tensorflow as tf

        def step(labeled_batch, unlabeled_batch):
            x_l, y_l, y_l_smooth, x_u, x_u_aug = split_batch(labeled_batch, unlabeled_batch, self.num_classes,
                                                             self.label_smoothing)
            n_l, n_u = tf.shape(x_l)[0], tf.shape(x_u)[0]
            with tf.GradientTape() as teacher_tape:
                terms, pseudo = self._terms(self.teacher(tf.concat([x_l, x_u, x_u_aug], 0), training=True),
                                            y_l_smooth, n_l, n_u)
            with tf.GradientTape() as student_tape:
                s_logits = self.student(tf.concat([x_l, x_u_aug], 0), training=True)
                student_loss = cross_entropy(pseudo, s_logits[n_l:])
                scaled = student_loss / self.replicas  # on the tape: the division is part of the loss
            old = cross_entropy(y_l, s_logits[:n_l])
            grads = student_tape.gradient(scaled, self.student.trainable_variables)
            self.student_optimizer.apply_gradients(zip(grads, self.student.trainable_variables))
            new = cross_entropy(y_l, self.student(x_l, training=True))
            h, advantage, baseline = advantage_and_baseline(old, new, self.baseline.value)
            self.baseline.assign(baseline)
            with teacher_tape:
                teacher_loss = self._teacher_loss(terms, advantage)
                scaled = teacher_loss / self.replicas
            grads = teacher_tape.gradient(scaled, self.teacher.trainable_variables)
            self.teacher_optimizer.apply_gradients(zip(grads, self.teacher.trainable_variables))
            return {"teacher_loss": teacher_loss, "student_loss": student_loss, "h": h, "uda": terms[1],
                    "teacher_supervised": terms[0]}

        strategy = self.strategy

        @tf.function
        def distributed(labeled_batch, unlabeled_batch):
            if strategy is None:
                return step(labeled_batch, unlabeled_batch)
            out = strategy.run(step, args=(labeled_batch, unlabeled_batch))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in out.items()}

        return distributed

    # JAX: a pure, jitted function of the variables' values; the teacher's vjp spans the student's step.
    def _build_jax(self):
        import jax

        teacher, student = self.teacher, self.student
        t_opt, s_opt = self.teacher_optimizer, self.student_optimizer

        def step(state, batch):
            t_tr, t_nt, s_tr, s_nt, t_ov, s_ov, baseline = state
            x_l, y_l, y_l_smooth, x_u, x_u_aug = batch
            n_l, n_u = x_l.shape[0], x_u.shape[0]

            def teacher_forward(t_tr):
                logits, t_nt_new = teacher.stateless_call(t_tr, t_nt, ops.concatenate([x_l, x_u, x_u_aug], 0),
                                                          training=True)
                terms, pseudo = self._terms(logits, y_l_smooth, n_l, n_u)
                return terms, (pseudo, t_nt_new)

            terms, teacher_vjp, (pseudo, t_nt) = jax.vjp(teacher_forward, t_tr, has_aux=True)

            def student_loss_fn(s_tr):
                s_logits, s_nt_new = student.stateless_call(s_tr, s_nt, ops.concatenate([x_l, x_u_aug], 0),
                                                            training=True)
                return cross_entropy(pseudo, s_logits[n_l:]), (s_logits, s_nt_new)

            (student_loss, (s_logits, s_nt1)), s_grads = jax.value_and_grad(student_loss_fn, has_aux=True)(s_tr)
            old = cross_entropy(y_l, s_logits[:n_l])
            s_tr, s_ov = s_opt.stateless_apply(s_ov, s_grads, s_tr)
            new_logits, s_nt = student.stateless_call(s_tr, s_nt1, x_l, training=True)
            h, advantage, baseline = advantage_and_baseline(old, cross_entropy(y_l, new_logits), baseline)
            one = ops.ones((), "float32")
            (t_grads,) = teacher_vjp((one, one * self.uda_weight, ops.cast(advantage, "float32")))
            t_tr, t_ov = t_opt.stateless_apply(t_ov, t_grads, t_tr)
            out = {"teacher_loss": self._teacher_loss(terms, advantage), "student_loss": student_loss, "h": h,
                   "uda": terms[1], "teacher_supervised": terms[0]}
            return (t_tr, t_nt, s_tr, s_nt, t_ov, s_ov, baseline), out

        jitted = jax.jit(step)
        groups = (teacher.trainable_variables, teacher.non_trainable_variables, student.trainable_variables,
                  student.non_trainable_variables, t_opt.variables, s_opt.variables)

        def run(labeled_batch, unlabeled_batch):
            batch = split_batch(*(tuple(ops.convert_to_tensor(a) for a in b) for b in (labeled_batch, unlabeled_batch)),
                                self.num_classes, self.label_smoothing)
            state = tuple([v.value for v in g] for g in groups) + (self.baseline.value,)
            state, out = jitted(state, batch)
            for variables, values in zip(groups, state[:-1]):
                for variable, value in zip(variables, values):
                    variable.assign(value)
            self.baseline.assign(state[-1])
            return out

        return run

    # PyTorch: eager autograd; the teacher's graph is kept across the student's step.
    def _build_torch(self):
        import torch

        def grads_of(loss, model):
            return list(torch.autograd.grad(loss, [v.value for v in model.trainable_variables],
                                            allow_unused=True, materialize_grads=True))

        def run(labeled_batch, unlabeled_batch):
            x_l, y_l, y_l_smooth, x_u, x_u_aug = split_batch(
                *(tuple(ops.convert_to_tensor(a) for a in b) for b in (labeled_batch, unlabeled_batch)),
                self.num_classes, self.label_smoothing)
            n_l, n_u = x_l.shape[0], x_u.shape[0]
            terms, pseudo = self._terms(self.teacher(ops.concatenate([x_l, x_u, x_u_aug], 0), training=True),
                                        y_l_smooth, n_l, n_u)
            s_logits = self.student(ops.concatenate([x_l, x_u_aug], 0), training=True)
            student_loss = cross_entropy(pseudo, s_logits[n_l:])
            old = cross_entropy(y_l, s_logits[:n_l]).detach()
            s_grads = grads_of(student_loss, self.student)
            with torch.no_grad():
                self.student_optimizer.apply(s_grads, self.student.trainable_variables)
                new = cross_entropy(y_l, self.student(x_l, training=True))
            h, advantage, baseline = advantage_and_baseline(old, new, self.baseline.value)
            self.baseline.assign(baseline)
            teacher_loss = self._teacher_loss(terms, advantage)
            t_grads = grads_of(teacher_loss, self.teacher)
            with torch.no_grad():
                self.teacher_optimizer.apply(t_grads, self.teacher.trainable_variables)
            return {"teacher_loss": teacher_loss.detach(), "student_loss": student_loss.detach(), "h": h,
                    "uda": terms[1].detach(), "teacher_supervised": terms[0].detach()}

        return run


class MetaState:
    """The run's step count and per-metric sums, and `saver(directory)` for a checkpoint of
    both models, both optimizers, the baseline, the step and the sums."""

    def __init__(self, teacher, student, teacher_optimizer, student_optimizer, baseline, scope=None):
        import numpy as np

        self.step = 0
        self.sums = np.zeros(len(METRICS), "float64")
        self.teacher, self.student = teacher, student
        self.teacher_optimizer, self.student_optimizer = teacher_optimizer, student_optimizer
        self.baseline = baseline

    def add(self, metrics):
        """Count one step with its `metrics` (a dict over METRICS)."""
        self.sums = self.sums + [float(metrics[k]) for k in METRICS]
        self.step += 1

    def saver(self, directory):
        """A TensorFlow checkpoint manager on the TensorFlow backend (tf.distribute variables
        included), a single atomically written .npz on JAX and PyTorch."""
        if keras.backend.backend() == "tensorflow":
            return _TensorFlowSaver(self, directory)
        return _ArraySaver(self, directory)

    def groups(self):
        return {"teacher": self.teacher.variables, "student": self.student.variables,
                "teacher_opt": self.teacher_optimizer.variables, "student_opt": self.student_optimizer.variables,
                "baseline": [self.baseline]}


class _TensorFlowSaver:
    def __init__(self, state, directory):
        import tensorflow as tf

        self.state = state
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="mpl_step")
        self.sums = tf.Variable(tf.zeros(len(METRICS), tf.float64), trainable=False, name="mpl_sums")
        # tf.train.Checkpoint writes to a temporary prefix and renames, and the manager's
        # index file is replaced atomically: a kill mid-save leaves the previous checkpoint.
        self.checkpoint = tf.train.Checkpoint(
            teacher=state.teacher, student=state.student, teacher_opt=state.teacher_optimizer,
            student_opt=state.student_optimizer, step=self.step, baseline=state.baseline, sums=self.sums)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore(self):
        if not self.latest:
            return False
        self.checkpoint.restore(self.latest).assert_existing_objects_matched()
        self.state.step, self.state.sums = int(self.step.numpy()), self.sums.numpy().astype("float64")
        return True

    def save(self):
        self.step.assign(self.state.step)
        self.sums.assign(self.state.sums)
        self.manager.save(checkpoint_number=self.state.step)


class _ArraySaver:
    FILE = "mpl_state.npz"

    def __init__(self, state, directory):
        import os

        self.state = state
        self.directory = directory
        self.latest = os.path.join(directory, self.FILE)

    def restore(self):
        import os

        import numpy as np

        if not os.path.exists(self.latest):
            return False
        with np.load(self.latest, allow_pickle=False) as stored:
            stored = dict(stored)
        for group, variables in self.state.groups().items():
            if int(stored[f"{group}/count"]) != len(variables):
                raise ValueError(f"{group}: {int(stored[f'{group}/count'])} variables stored, {len(variables)} here")
            for i, variable in enumerate(variables):
                value = stored[f"{group}/{i}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(f"{group} variable {variable.path}: stored shape {value.shape}, "
                                     f"model shape {tuple(variable.shape)}")
        for group, variables in self.state.groups().items():
            for i, variable in enumerate(variables):
                variable.assign(stored[f"{group}/{i}"])
        self.state.step, self.state.sums = int(stored["step"]), stored["sums"].astype("float64")
        return True

    def save(self):
        import os

        import numpy as np

        from keras_bigtransfer.weights.atomic import atomic_file

        arrays = {"step": np.asarray(self.state.step, "int64"), "sums": np.asarray(self.state.sums, "float64")}
        for group, variables in self.state.groups().items():
            arrays[f"{group}/count"] = np.asarray(len(variables))
            for i, variable in enumerate(variables):
                arrays[f"{group}/{i}"] = ops.convert_to_numpy(variable.value)
        os.makedirs(self.directory, exist_ok=True)
        with atomic_file(self.latest, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
