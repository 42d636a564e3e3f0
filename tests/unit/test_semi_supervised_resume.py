"""Noisy Student and Meta Pseudo Labels with checkpoint_dir: crash-safe, exact resume, run record."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bigtransfer as kb
from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.training import checkpoint as checkpoint_lib
from keras_bigtransfer.training.semi_supervised import common
from keras_bigtransfer.training.semi_supervised import meta_pseudo_labels as mpl
from tests.toys import ROOT, colour_data, tiny_model
from tests.unit.test_semi_supervised import tiny_residual_model

NS_ARGS = dict(iterations=2, steps=20, batch_size=8, unlabeled_ratio=2, resolution=16,
               confidence_threshold=0.0)  # 2 epochs of 10 steps per iteration
MPL_ARGS = dict(steps=6, finetune_steps=4, batch_size=8, unlabeled_ratio=2, resolution=16)


def noisy_student(checkpoint_dir=None, **kwargs):
    keras.utils.set_random_seed(0)
    teacher, student = tiny_model(seed=0), tiny_residual_model(seed=1)
    keras.utils.set_random_seed(0)
    return kb.fit_noisy_student(teacher, student, colour_data(32, seed=7), colour_data(48, seed=9)[0],
                                checkpoint_dir=checkpoint_dir, **{**NS_ARGS, **kwargs})


def meta_pseudo_labels(checkpoint_dir=None, **kwargs):
    keras.utils.set_random_seed(0)
    teacher, student = tiny_model(seed=0), tiny_model(seed=1)
    keras.utils.set_random_seed(0)
    return kb.fit_meta_pseudo_labels(teacher, student, colour_data(32, seed=7), colour_data(48, seed=9)[0],
                                     checkpoint_dir=checkpoint_dir, **{**MPL_ARGS, **kwargs})


def assert_same_weights(a, b):
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def ns_uninterrupted():
    return noisy_student()


@pytest.mark.slow
def test_noisy_student_resumes_inside_an_iteration_as_if_uninterrupted(tmp_path, monkeypatch, ns_uninterrupted):
    ckpt = str(tmp_path / "ckpt")
    saves = []
    real_save = checkpoint_lib.save

    # steps=20 splits as fit_bit's (common.fit_steps): 10 epochs of 2 steps, a backup after each.
    def save(model, directory):  # the 20th backup (iteration 2, step 20) is "killed" before writing
        saves.append(directory)
        if len(saves) == 20:
            raise KeyboardInterrupt("simulated kill")
        real_save(model, directory)

    monkeypatch.setattr(checkpoint_lib, "save", save)
    with pytest.raises(KeyboardInterrupt):
        noisy_student(ckpt)
    monkeypatch.setattr(checkpoint_lib, "save", real_save)
    assert os.path.isdir(os.path.join(ckpt, "iteration_1", "result"))
    student, record = noisy_student(ckpt)
    final, want = ns_uninterrupted
    assert_same_weights(student, final)
    assert record == json.loads(json.dumps(want))  # losses of every epoch, resumed ones too
    assert [len(r["loss"]) for r in record] == [10, 10]

    with pytest.raises(ValueError, match=r"checkpoint_dir=.*finished noisy_student run.*overwrite=True"):
        noisy_student(ckpt)
    _, again = noisy_student(ckpt, overwrite=True, iterations=1)
    assert len(again) == 1 and not os.path.exists(os.path.join(ckpt, "iteration_2"))


KILLED = textwrap.dedent("""
    import json, os, signal, sys
    sys.path.insert(0, {root!r})
    import keras
    from tests.unit.test_semi_supervised_resume import noisy_student

    where, calls = {where!r}, []
    if where == "backup":  # iteration 2's first backup: half the weights file, then die
        original = keras.Model.save_weights
        def save_weights(self, path, *args, **kwargs):
            calls.append(path)
            original(self, path, *args, **kwargs)
            if "iteration_2" in path:
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        keras.Model.save_weights = save_weights
    else:  # iteration 1's kept result: weights written, record half written, then die
        original = json.dump
        def dump(obj, f, **kwargs):
            if isinstance(obj, dict) and obj.get("iteration") == 1:
                f.write(json.dumps(obj)[:30]); f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            original(obj, f, **kwargs)
        json.dump = dump
    noisy_student({ckpt!r})
    print("NOT KILLED")
""")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["backup", "result"])
def test_noisy_student_killed_inside_a_write_resumes(tmp_path, where, ns_uninterrupted):
    ckpt = str(tmp_path / "ckpt")
    root = ROOT
    script = tmp_path / "train.py"
    script.write_text(KILLED.format(root=root, where=where, ckpt=ckpt))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=root))
    assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr[-2000:]
    student, record = noisy_student(ckpt)
    final, want = ns_uninterrupted
    assert_same_weights(student, final)
    assert record == json.loads(json.dumps(want))


@pytest.mark.slow
def test_meta_pseudo_labels_resumes_as_if_uninterrupted(tmp_path, monkeypatch):
    final, want = meta_pseudo_labels()
    ckpt = str(tmp_path / "ckpt")
    monkeypatch.setattr(mpl, "SAVE_EVERY", 2)
    real_save = tf.train.CheckpointManager.save

    def killed_at_step_4(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 4:
            raise KeyboardInterrupt("simulated kill")
        return real_save(self, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        meta_pseudo_labels(ckpt)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    student, record = meta_pseudo_labels(ckpt)  # resumes at step 2, data included
    assert_same_weights(student, final)
    np.testing.assert_allclose([record[k] for k in sorted(record)], [want[k] for k in sorted(want)], rtol=1e-6)
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*finished meta_pseudo_labels run"):
        meta_pseudo_labels(ckpt)
    with pytest.raises(WeightsError, match=r"checkpoint_dir=.*different model"):
        kb.fit_meta_pseudo_labels(tiny_model(3), tiny_model(3), colour_data(32, seed=7),
                                  colour_data(48, seed=9)[0], checkpoint_dir=ckpt, **MPL_ARGS)


@pytest.mark.slow
def test_meta_pseudo_labels_finetune_resumes(tmp_path, monkeypatch):
    final, _ = meta_pseudo_labels(finetune_steps=20)
    ckpt = str(tmp_path / "ckpt")
    saves = []
    real_save = checkpoint_lib.save

    def save(model, directory):  # the fine-tune's 2nd backup (step 4 of 20) is "killed"
        saves.append(directory)
        if len(saves) == 2:
            raise KeyboardInterrupt("simulated kill")
        real_save(model, directory)

    monkeypatch.setattr(checkpoint_lib, "save", save)
    with pytest.raises(KeyboardInterrupt):
        meta_pseudo_labels(ckpt, finetune_steps=20)
    monkeypatch.setattr(checkpoint_lib, "save", real_save)
    student, _ = meta_pseudo_labels(ckpt, finetune_steps=20)
    assert_same_weights(student, final)


@pytest.mark.parametrize("recipe", [noisy_student, meta_pseudo_labels])
def test_unwritable_checkpoint_dir_fails_before_any_work(tmp_path, monkeypatch, recipe):
    # Both recipes read their data in the shared preamble (semi_supervised/common.prepare).
    monkeypatch.setattr(common, "unlabeled_images", lambda *a: pytest.fail("data was read"))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(NotADirectoryError, match=r"checkpoint_dir=.*cannot be created"):
        recipe(str(tmp_path / "a_file" / "ckpt"))
