"""fit_bit (both recipes), Noisy Student and Meta Pseudo Labels on every Keras backend (issue 17).

Each backend runs in its own subprocess (KERAS_BACKEND is read once, at import):
tiny models, a few steps. The MPL step is also compared across backends on fixed
weights and batches: the losses are written once with keras.ops, the gradients
per backend (TF tape, JAX vjp, torch autograd), so they must agree.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.toys import ROOT

BACKENDS = ("tensorflow", "jax", "torch")

SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    import keras, numpy as np
    import keras_bigtransfer as kb
    from keras_bigtransfer.training.semi_supervised.meta_step import MetaPseudoLabelsStep
    from tests.toys import tiny_model, colour_data

    out = {{"backend": keras.backend.backend()}}
    teacher = tiny_model(seed=0)
    history = kb.fit_bit(teacher, colour_data(64, seed=5), batch_size=16, base_lr=0.4, total_steps=4,
                         resolution=16, verbose=0)
    out["fit_bit"] = history.history["loss"]
    # The ViT recipe (clipped SGD, cosine schedule), killed after step 3 and resumed from its backup.
    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) == 3:
                raise KeyboardInterrupt
    vit_args = dict(recipe="vit", batch_size=16, base_lr=0.4, total_steps=4, resolution=16, verbose=0)
    whole = tiny_model(seed=0)
    kb.fit_bit(whole, colour_data(64, seed=5), **vit_args)
    try:
        kb.fit_bit(tiny_model(seed=0), colour_data(64, seed=5), checkpoint_dir={ckpt!r} + "_vit",
                   callbacks=[Crash()], **vit_args)
    except KeyboardInterrupt:
        pass
    resumed = tiny_model(seed=1)  # other initial weights: all of them come from the backup
    keras.utils.set_random_seed(0)  # tf.data's seeded ops also read TF's global seed
    history = kb.fit_bit(resumed, colour_data(64, seed=5), checkpoint_dir={ckpt!r} + "_vit", **vit_args)
    out["vit"] = history.history["loss"]
    out["vit_resume_difference"] = max(float(np.max(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b))))
                                       for a, b in zip(whole.weights, resumed.weights))
    unlabeled = colour_data(48, seed=9)[0]
    _, ns = kb.fit_noisy_student(teacher, tiny_model(seed=1), colour_data(32, seed=7), unlabeled, steps=2,
                                 batch_size=8, unlabeled_ratio=2, resolution=16, confidence_threshold=0.0,
                                 randaugment=None, validation_data=colour_data(16, seed=3))
    out["ns"] = ns[0]["loss"] + [ns[0]["val_accuracy"]]
    _, mpl = kb.fit_meta_pseudo_labels(teacher, tiny_model(seed=2), colour_data(32, seed=7), unlabeled,
                                       steps=3, finetune_steps=1, batch_size=8, unlabeled_ratio=2,
                                       resolution=16, randaugment=None, checkpoint_dir={ckpt!r})
    out["mpl"] = mpl

    # The semi-supervised recipes' fit trains on a stateful pipeline's first batches (RandAugment's
    # draws are stateful).
    from tests.toys import first_batch_losses
    out["first_batches"] = first_batch_losses()

    # The step alone, on weights and batches fixed by NumPy (initializers draw per backend).
    def fixed(model, seed):
        rng = np.random.default_rng(seed)
        model.set_weights([(rng.standard_normal(w.shape) * 0.3).astype("float32") for w in model.get_weights()])
        return model
    t, s = fixed(tiny_model(seed=0), 1), fixed(tiny_model(seed=1), 2)
    t_opt, s_opt = keras.optimizers.SGD(0.1, momentum=0.9), keras.optimizers.SGD(0.1, momentum=0.9)
    t_opt.build(t.trainable_variables)
    s_opt.build(s.trainable_variables)
    step = MetaPseudoLabelsStep(t, s, t_opt, s_opt, num_classes=2, label_smoothing=0.1, uda_weight=1.0,
                                uda_threshold=0.0, uda_temperature=0.7)
    rng = np.random.default_rng(0)
    steps = []
    for _ in range(3):
        x_l = rng.random((8, 16, 16, 3), dtype=np.float32)
        y_l = np.eye(2, dtype="float32")[rng.integers(0, 2, 8)]
        x_u = rng.random((16, 16, 16, 3), dtype=np.float32)
        x_u_aug = np.clip(x_u + 0.1 * rng.standard_normal(x_u.shape).astype("float32"), 0, 1)
        steps.append(step((x_l, y_l), (x_u, x_u_aug)))
    x = rng.random((4, 16, 16, 3), dtype=np.float32)
    out["step"] = steps
    # The checkpoint of MPL's state round-trips (a TF checkpoint on TF, one .npz elsewhere).
    from keras_bigtransfer.training.semi_supervised.meta_step import MetaState
    state = MetaState(t, s, t_opt, s_opt, step.baseline)
    state.step, saver = 3, MetaState(t, s, t_opt, s_opt, step.baseline).saver({ckpt!r} + "_state")
    saver.state = state
    saver.save()
    saved = [w.copy() for w in t.get_weights() + s.get_weights()]
    t.set_weights([w * 0 for w in t.get_weights()])
    state.step = 0
    assert saver.restore() and state.step == 3
    assert all(np.array_equal(a, b) for a, b in zip(saved, t.get_weights() + s.get_weights()))
    out["step_logits"] = [keras.ops.convert_to_numpy(m(x)).tolist() for m in (t, s)]
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = {}
    for backend in BACKENDS:
        folder = tmp_path_factory.mktemp(backend)
        script = folder / "run.py"
        script.write_text(SCRIPT.format(root=ROOT, ckpt=str(folder / "ckpt")))
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="",
                   JAX_PLATFORMS="cpu")
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
        lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
        out[backend] = json.loads(lines[-1][7:]) if done.returncode == 0 and lines else done.stderr[-3000:]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_recipes_train_on_every_backend(results, backend):
    """Before: fit_noisy_student failed on torch (numpy() of a tensor requiring grad),
    fit_meta_pseudo_labels on JAX and torch (a TF tape around a JAX/torch model)."""
    out = results[backend]
    assert isinstance(out, dict), out
    assert out["backend"] == backend
    assert len(out["fit_bit"]) == 4 and all(np.isfinite(out["fit_bit"]))
    assert len(out["vit"]) == 2 and all(np.isfinite(out["vit"]))  # resumed after 2 of 4 one-step epochs
    assert out["vit_resume_difference"] < 1e-5  # the uninterrupted run's weights
    assert all(np.isfinite(out["ns"])) and 0.0 <= out["ns"][-1] <= 1.0
    # Without common.build_compiled_loss, Keras' fit on JAX and PyTorch built the loss from a first
    # iterator whose prefetching ran batches through the pipeline before training began ([16, 25]
    # in one run: the count depends on timing).
    assert out["first_batches"] == [1.0, 4.0]
    mpl = out["mpl"]
    assert mpl["steps"] == 3 and all(np.isfinite(mpl[f"mean_{k}"]) for k in ("teacher_loss", "student_loss", "h"))


def test_meta_pseudo_labels_step_agrees_across_backends(results):
    """One MPL step written once: TF tape, JAX vjp and torch autograd give the same losses,
    h and updated models (float32 round-off only)."""
    outs = [results[b] for b in BACKENDS]
    assert all(isinstance(o, dict) for o in outs), outs
    reference = outs[0]
    assert any(s["uda"] > 0 for s in reference["step"])  # the UDA term takes part
    for other in outs[1:]:
        for a, b in zip(reference["step"], other["step"]):
            np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(reference["step_logits"], other["step_logits"], rtol=1e-4, atol=1e-5)
