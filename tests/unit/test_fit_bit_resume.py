"""fit_bit's checkpoint_dir: crash-safe backups, exact resume, and the record of the run."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.training import checkpoint as checkpoint_lib
from tests.toys import ROOT, Crash, colour_data, tiny_model

ARGS = dict(batch_size=8, base_lr=0.3, total_steps=20, verbose=0)  # 10 epochs of 2 steps




def weights(model):
    return [np.asarray(w) for w in model.weights]


@pytest.fixture(scope="module")
def uninterrupted():
    model = tiny_model()
    kb.fit_bit(model, colour_data(64), **ARGS)
    return weights(model)


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, uninterrupted):
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir=ckpt, callbacks=[Crash(7)], **ARGS)
    model = tiny_model(seed=1)  # other initial weights: all of them come from the backup
    keras.utils.set_random_seed(0)  # tf.data's seeded ops also read TF's global seed
    history = kb.fit_bit(model, colour_data(64), checkpoint_dir=ckpt, **ARGS)
    assert int(model.optimizer.iterations) == 20
    assert len(history.history["loss"]) == 7  # resumed after epoch 3 (step 6)
    # Same batches from step 6 on (the data resumes too), so the same weights.
    for got, want in zip(weights(model), uninterrupted):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


KILLED = textwrap.dedent("""
    import os, signal, sys, json
    import keras
    import keras_bigtransfer as kb
    sys.path.insert(0, {root!r})
    from tests.toys import tiny_model, colour_data

    calls = {{"n": 0}}
    where = {where!r}
    if where == "weights":  # the 3rd backup: write half the file, then die
        original = keras.Model.save_weights
        def save_weights(self, path, *args, **kwargs):
            calls["n"] += 1
            original(self, path, *args, **kwargs)
            if calls["n"] == 3:
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        keras.Model.save_weights = save_weights
    else:  # the record written when the run finishes: half the JSON, then die
        original = json.dump
        def dump(obj, f, **kwargs):
            if obj.get("finished"):
                f.write(json.dumps(obj)[:20]); f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            original(obj, f, **kwargs)
        json.dump = dump
    kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir={ckpt!r}, **{args!r})
    print("NOT KILLED")
""")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["weights", "record"])
def test_kill_inside_a_backup_write_still_resumes(tmp_path, uninterrupted, where):
    ckpt = str(tmp_path / "ckpt")
    script = tmp_path / "train.py"
    root = ROOT
    script.write_text(KILLED.format(root=root, where=where, ckpt=ckpt, args=ARGS))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=root))
    assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr[-2000:]
    leftovers = [n for n in os.listdir(ckpt) if n.startswith(".")]
    assert leftovers  # the half-written temporary file is there ...
    model = tiny_model(seed=1)
    keras.utils.set_random_seed(0)
    history = kb.fit_bit(model, colour_data(64), checkpoint_dir=ckpt, **ARGS)
    assert int(model.optimizer.iterations) == 20
    # ... and never read: the run goes on from the last whole backup (step 4 or the last one)
    assert len(history.history.get("loss", [])) == (8 if where == "weights" else 0)
    for got, want in zip(weights(model), uninterrupted):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert not [n for n in os.listdir(ckpt) if n.startswith(".")]
    assert json.load(open(os.path.join(ckpt, "run.json")))["finished"]


def test_a_finished_run_is_refused_unless_overwritten(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir=ckpt, **ARGS)
    model = tiny_model()
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*finished fit_bit run.*overwrite=True"):
        kb.fit_bit(model, colour_data(64, seed=4), checkpoint_dir=ckpt, **ARGS)
    assert getattr(model, "optimizer", None) is None  # refused before compiling, let alone training
    history = kb.fit_bit(model, colour_data(64, seed=4), checkpoint_dir=ckpt, overwrite=True, **ARGS)
    assert len(history.history["loss"]) == 10 and int(model.optimizer.iterations) == 20


def test_other_settings_or_data_are_refused(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir=ckpt, callbacks=[Crash(3)], **ARGS)
    with pytest.raises(ValueError, match=r"unfinished fit_bit run with other settings: config\.base_lr=0.3 there, 0.1 in this call; "
                                         r"rule\.peak_lr=0.00468.* there, 0.00156.* in this call"):
        kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir=ckpt, **{**ARGS, "base_lr": 0.1})
    with pytest.raises(ValueError, match=r"unfinished fit_bit run with other settings: data\.digest="):
        kb.fit_bit(tiny_model(), colour_data(64, seed=4), checkpoint_dir=ckpt, **ARGS)


def test_a_different_models_checkpoint_dir_is_a_short_clear_error(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir=ckpt, callbacks=[Crash(3)], **ARGS)
    with pytest.raises(WeightsError) as error:
        kb.fit_bit(tiny_model(num_classes=3), colour_data(64), checkpoint_dir=ckpt, **ARGS)
    message = str(error.value)
    assert "checkpoint_dir=" in message and "different model" in message
    assert "model parameters: 250 there, 259 in this call" in message
    assert len(message) < 600 and "\n" not in message


def test_unwritable_checkpoint_dir_fails_before_any_work(tmp_path, monkeypatch):
    from keras_bigtransfer.training import data as data_lib

    monkeypatch.setattr(data_lib, "load_source", lambda *a, **k: pytest.fail("data was loaded"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match=r"checkpoint_dir=.*a_file/ckpt.*cannot be created"):
        kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir=str(blocker / "ckpt"), **ARGS)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(PermissionError, match="checkpoint_dir="):
            kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir=str(locked), **ARGS)


def test_describe_models_ignores_layer_numbering():
    first, second = tiny_model(), tiny_model()  # second's layers are numbered differently
    assert checkpoint_lib.describe_models(model=first) == checkpoint_lib.describe_models(model=second)
    assert checkpoint_lib.describe_models(model=first) != checkpoint_lib.describe_models(model=tiny_model(3))


def test_a_resume_with_other_pipeline_or_folder_data_is_refused(tmp_path):
    """Issue 26 item 10: a tf.data pipeline or a class-folder directory that changed between
    the run and its resume went unnoticed (NumPy data was already refused)."""
    import tensorflow as tf
    from PIL import Image

    images, labels = colour_data(32)
    pipeline = lambda n: tf.data.Dataset.from_tensor_slices((images[:n], labels[:n]))  # noqa: E731
    ckpt = str(tmp_path / "pipeline")
    args = {**ARGS, "total_steps": 4, "num_examples": 32}
    with pytest.raises(KeyboardInterrupt):
        kb.fit_bit(tiny_model(), pipeline(32), checkpoint_dir=ckpt, callbacks=[Crash(3)], **args)
    with pytest.raises(ValueError, match=r"other settings: data\.num_examples=32 there, 24 in this call; data\.cardinality=32 there, 24"):
        kb.fit_bit(tiny_model(), pipeline(24), checkpoint_dir=ckpt, **args)
    with pytest.raises(ValueError, match=r"other settings: data\.element_spec="):
        kb.fit_bit(tiny_model(), pipeline(32).map(lambda x, y: (tf.cast(x, tf.float32) / 255, y)),
                   checkpoint_dir=ckpt, **args)

    folders = tmp_path / "folders"
    for i, (image, label) in enumerate(zip(images[:16], labels[:16])):
        (folders / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folders / str(label) / f"{i}.png")
    ckpt = str(tmp_path / "folders_ckpt")
    args = {**ARGS, "total_steps": 4}
    with pytest.raises(KeyboardInterrupt):
        kb.fit_bit(tiny_model(), str(folders), checkpoint_dir=ckpt, callbacks=[Crash(3)], **args)
    moved = folders / str(labels[0]) / "0.png"
    moved.rename(folders / str(1 - labels[0]) / "0.png")  # a relabelled file: same count, same sizes
    with pytest.raises(ValueError, match=r"other settings: data\.files\.digest="):
        kb.fit_bit(tiny_model(), str(folders), checkpoint_dir=ckpt, **args)
    (folders / str(1 - labels[0]) / "0.png").rename(moved)
    kb.fit_bit(tiny_model(), str(folders), checkpoint_dir=ckpt, **args)  # the same data resumes
