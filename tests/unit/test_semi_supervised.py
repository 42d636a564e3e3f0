"""Noisy Student and Meta Pseudo Labels: the mechanics, on tiny models and data."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.training.semi_supervised import noisy_student as ns
from tests.toys import ROOT, colour_data, tiny_model


def tiny_residual_model(num_classes=2, seed=0):
    """tiny_model with two StochasticDepth residuals, so model noise has something to act on."""
    keras.utils.set_random_seed(seed)
    inputs = kb.models.base.image_inputs((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same")(inputs)
    for i in range(2):
        y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = kb.layers.StochasticDepth(0.0, name=f"residual_{i}")([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(num_classes, name="head")(x)
    return kb.ImageModel(inputs, x, name="tiny_residual")


def trained_teacher(seed=0):
    teacher = tiny_model(seed=seed)
    kb.fit_bit(teacher, colour_data(128, seed=5), batch_size=16, base_lr=0.4, total_steps=30,
               resolution=16, verbose=0)
    return teacher


def test_select_filters_by_confidence_and_balances_classes():
    probabilities = np.array(
        [[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]], "float32"
    )
    indices, targets = ns.select(probabilities, threshold=0.6, balance=False, soft_labels=True)
    assert sorted(indices.tolist()) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(targets, probabilities[indices])
    indices, targets = ns.select(probabilities, threshold=0.6, balance=True, soft_labels=False)
    classes = targets.argmax(1)
    # 5 kept over 2 classes -> round(2.5) = 2 each: class 0 keeps its 2 most confident,
    # class 1 (one image) is duplicated.
    assert np.bincount(classes).tolist() == [2, 2]
    assert sorted(indices[classes == 0].tolist()) == [0, 1]
    assert indices[classes == 1].tolist() == [4, 4]
    assert set(np.unique(targets)) == {0.0, 1.0}  # hard labels
    with pytest.raises(ValueError, match="confidence_threshold"):
        ns.select(probabilities, threshold=0.99, balance=True, soft_labels=True)


def test_model_noise_adds_dropout_and_stochastic_depth_then_restores():
    model = tiny_residual_model()
    with ns.model_noise(model, dropout_rate=0.5, stochastic_depth=0.4) as noisy:
        assert [model.get_layer(f"residual_{i}").rate for i in range(2)] == [0.2, 0.4]
        assert any(isinstance(l, keras.layers.Dropout) and l.rate == 0.5 for l in noisy.layers)
        assert noisy.get_layer("head") is model.get_layer("head")  # shared weights
        x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
        np.testing.assert_allclose(np.asarray(noisy(x, training=False)), np.asarray(model(x)), atol=1e-6)
    assert [model.get_layer(f"residual_{i}").rate for i in range(2)] == [0.0, 0.0]


def test_noisy_student_runs_two_iterations_and_records_them(tmp_path):
    teacher = trained_teacher()
    student = tiny_residual_model(seed=1)
    unlabeled, _ = colour_data(96, seed=9)
    validation = colour_data(64, seed=3)
    final, record = kb.fit_noisy_student(
        teacher, student, colour_data(32, seed=7), unlabeled, iterations=2, steps=8, batch_size=8,
        unlabeled_ratio=2, resolution=16, validation_data=validation, checkpoint_dir=str(tmp_path),
    )
    assert [r["iteration"] for r in record] == [1, 2]
    for r in record:
        assert 0 < r["pseudo_labeled"] <= 96
        assert sum(r["per_class"]) == r["trained_on_unlabeled"]
        assert 0.0 <= r["val_accuracy"] <= 1.0 and len(r["loss"]) >= 1
    assert final is not student  # the second iteration trained a fresh student
    # A rerun on the finished run's checkpoint_dir would train nothing: refused (resuming is
    # tested in test_semi_supervised_resume.py).
    with pytest.raises(ValueError, match="finished noisy_student run"):
        kb.fit_noisy_student(
            teacher, tiny_residual_model(seed=1), colour_data(32, seed=7), unlabeled, iterations=2, steps=8,
            batch_size=8, unlabeled_ratio=2, resolution=16, checkpoint_dir=str(tmp_path),
        )


def test_noisy_student_rejects_mismatched_classes():
    with pytest.raises(ValueError, match="classes"):
        kb.fit_noisy_student(tiny_model(num_classes=3), tiny_model(), colour_data(16), colour_data(16)[0])


def test_meta_pseudo_labels_updates_both_models_and_reports_h(tmp_path):
    teacher, student = trained_teacher(), tiny_model(seed=2)
    before_teacher = [w.copy() for w in teacher.get_weights()]
    before_student = [w.copy() for w in student.get_weights()]
    unlabeled, _ = colour_data(96, seed=9)
    student, record = kb.fit_meta_pseudo_labels(
        teacher, student, colour_data(32, seed=7), unlabeled, steps=6, finetune_steps=4, batch_size=8,
        unlabeled_ratio=2, resolution=16, validation_data=colour_data(64, seed=3),
        checkpoint_dir=str(tmp_path),
    )
    changed = lambda before, model: any(  # noqa: E731
        not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    assert changed(before_teacher, teacher) and changed(before_student, student)
    assert np.isfinite(record["mean_h"]) and np.isfinite(record["mean_teacher_loss"])
    assert 0.0 <= record["val_accuracy"] <= 1.0
    assert os.listdir(tmp_path / "mpl")  # the step checkpoint a rerun resumes from


def test_meta_pseudo_labels_teacher_gradient_follows_h():
    """With only the MPL term (no supervised/UDA loss, zero baseline): a pseudo-label that
    helped the student (h > 0) is made more likely by the teacher's step."""
    import tensorflow as tf

    from keras_bigtransfer.training.semi_supervised.meta_pseudo_labels import _cross_entropy

    teacher = tiny_model(seed=3)
    x = tf.constant(np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32))
    with tf.GradientTape() as tape:
        logits = teacher(x, training=True)
        pseudo = tf.one_hot(tf.argmax(logits, -1), 2)
        loss = 1.0 * _cross_entropy(pseudo, logits)  # h = +1
    grads = tape.gradient(loss, teacher.trainable_variables)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)  # hard labels: non-zero gradient
    before = float(_cross_entropy(pseudo, teacher(x, training=True)))
    keras.optimizers.SGD(0.5).apply_gradients(zip(grads, teacher.trainable_variables))
    assert float(_cross_entropy(pseudo, teacher(x, training=True))) < before


def test_steps_are_trained_exactly():
    """steps=25 trains 25 steps (the split into epochs divides exactly, as fit_bit's does;
    it once truncated to 2 epochs of 12)."""
    from keras_bigtransfer.training.semi_supervised import common

    assert common._epochs(25) * (25 // common._epochs(25)) == 25
    unlabeled, _ = colour_data(64, seed=9)
    _, record = kb.fit_noisy_student(trained_teacher(), tiny_model(seed=1), colour_data(32, seed=7), unlabeled,
                                     steps=25, batch_size=8, unlabeled_ratio=1, resolution=16,
                                     confidence_threshold=0.0, randaugment=None)
    assert record[0]["steps"] == 25
    student = tiny_model(seed=2)
    kb.fit_meta_pseudo_labels(tiny_model(seed=3), student, colour_data(32, seed=7), unlabeled, steps=1,
                              finetune_steps=25, batch_size=8, unlabeled_ratio=1, resolution=16,
                              randaugment=None)
    assert int(student.optimizer.iterations) == 25


@pytest.mark.parametrize("recipe", ["noisy_student", "meta_pseudo_labels"])
def test_same_seed_trains_the_same_student(recipe):
    """RandAugment draws from a stateful generator: mapped in parallel, its draws came in a
    different order on every run (a CI run of the Fashion-MNIST test moved by 0.07)."""
    unlabeled, _ = colour_data(96, seed=9)
    students = []
    for _ in range(2):
        teacher, student = trained_teacher(), tiny_residual_model(seed=1)
        keras.utils.set_random_seed(0)
        fit = kb.fit_noisy_student if recipe == "noisy_student" else kb.fit_meta_pseudo_labels
        extra = {"confidence_threshold": 0.0} if recipe == "noisy_student" else {"finetune_steps": 2}
        final, _ = fit(teacher, student, colour_data(32, seed=7), unlabeled, steps=6, batch_size=8,
                       unlabeled_ratio=2, resolution=16, **extra)
        students.append(final.get_weights())
    for a, b in zip(*students):
        np.testing.assert_array_equal(a, b)


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras_bigtransfer as kb
    sys.path.insert(0, {root!r})
    from tests.toys import tiny_model, colour_data, first_batch_losses
    strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
    with strategy.scope():
        teacher, student = tiny_model(seed=0), tiny_model(seed=1)
    unlabeled = colour_data(64, seed=9)[0]
    _, mpl = kb.fit_meta_pseudo_labels(teacher, student, colour_data(32), unlabeled, steps=3, batch_size=8,
                                       unlabeled_ratio=2, resolution=16, strategy=strategy)
    with strategy.scope():
        student2 = tiny_model(seed=2)
    _, ns = kb.fit_noisy_student(teacher, student2, colour_data(32), unlabeled, steps=4, batch_size=8,
                                 unlabeled_ratio=2, resolution=16, confidence_threshold=0.0,
                                 strategy=strategy)
    print(json.dumps({{"mpl_h": mpl["mean_h"], "ns_loss": ns[0]["loss"][-1],
                      "first_batches": first_batch_losses(strategy)}}))
""")


def test_both_recipes_run_under_mirrored_strategy(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED.format(root=ROOT))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert np.isfinite(result["mpl_h"]) and np.isfinite(result["ns_loss"])
    # A known gap, in common.build_compiled_loss's docstring and docs/noisy_student.md: under a
    # strategy, Keras 3.15's fit on TensorFlow pulls a batch from a first iterator and throws it
    # away whatever is built, so RandAugment's stateful draws move. Should Keras stop, this fails:
    # drop the caveat from both.
    assert result["first_batches"] != [1.0, 4.0]


def test_diverging_recipes_raise_naming_the_step_and_rate(tmp_path):
    """Issue 26 item 5: a non-finite loss ends Noisy Student and MPL with TrainingDivergedError."""
    from keras_bigtransfer.errors import TrainingDivergedError

    unlabeled, _ = colour_data(32, seed=9)
    with pytest.raises(TrainingDivergedError, match=r"noisy_student \(iteration 1\): the loss became .* at step "
                                                    r"\d+ \(learning rate"):
        kb.fit_noisy_student(tiny_model(), tiny_model(seed=1), colour_data(16, seed=7), unlabeled, iterations=1,
                             steps=4, batch_size=8, unlabeled_ratio=1, resolution=16, learning_rate=1e30,
                             confidence_threshold=0.0, checkpoint_dir=str(tmp_path / "ns"))
    assert not os.path.exists(tmp_path / "ns" / "iteration_1" / "result")  # nothing kept as finished
    with pytest.raises(TrainingDivergedError, match=r"meta_pseudo_labels: the (teacher|student) loss became .* "
                                                    r"at step \d+ \(learning rate"):
        kb.fit_meta_pseudo_labels(tiny_model(), tiny_model(seed=2), colour_data(16, seed=7), unlabeled, steps=4,
                                  finetune_steps=0, batch_size=8, unlabeled_ratio=1, resolution=16,
                                  teacher_learning_rate=1e30, student_learning_rate=1e30)
