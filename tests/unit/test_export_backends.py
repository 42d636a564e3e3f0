"""hub.export(format="saved_model") from the JAX backend (jax2tf) and the clear error from
PyTorch (issue 17). Each backend in a subprocess."""

import os
import subprocess
import sys
import textwrap

from tests.toys import ROOT

JAX_EXPORT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import keras, numpy as np, tensorflow as tf
    import keras_bigtransfer as kb
    from keras_bigtransfer.models.vit.model import VisionTransformer
    from keras_bigtransfer.tfhub import jax_export
    from tests.toys import tiny_model
    assert keras.backend.backend() == "jax"
    rng = np.random.default_rng(0)
    vit = VisionTransformer(patch_size=16, hidden_size=32, mlp_size=64, num_heads=2, num_layers=1, num_classes=5,
                            input_shape=(None, None, 3), pretrained_resolution=64, name="vit_any_size")
    assert jax_export.input_multiple(vit) == 16 and jax_export.input_multiple(tiny_model()) == 4
    for model, sizes in ((vit, [(48, 80), (64, 64)]), (tiny_model(), [(16, 24), (32, 32)])):
        path = kb.hub.export(model, {tmp!r} + "/" + model.name, signature="classification")
        loaded = tf.saved_model.load(path)
        for h, w in sizes:  # any multiple of the stride, non-square included
            x = rng.random((2, h, w, 3), dtype=np.float32)
            want = keras.ops.convert_to_numpy(model(x))
            np.testing.assert_allclose(loaded(tf.constant(x)).numpy(), want, atol=1e-5)
            np.testing.assert_allclose(loaded(tf.constant(x), training=True).numpy(), want, atol=1e-5)
            got = loaded.signatures["serving_default"](images=tf.constant(x))["logits"].numpy()
            np.testing.assert_allclose(got, want, atol=1e-5)
        # The weights first, in the TF export's order (hub.load relies on it), then other state.
        assert [tuple(v.shape) for v in loaded.variables[:len(model.weights)]] == [tuple(w.shape) for w in model.weights]
        np.testing.assert_allclose(kb.hub.load(path)(x), want, atol=1e-5)  # hub.load reads it back
    print("OK")
""")

TORCH_EXPORT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import keras_bigtransfer as kb
    from tests.toys import tiny_model
    try:
        kb.hub.export(tiny_model(), {tmp!r} + "/tiny", signature="classification")
    except ValueError as e:
        assert "tensorflow and jax" in str(e) and "KERAS_BACKEND" in str(e), e
        print("OK")
""")


def _run(script, backend, tmp_path):
    path = tmp_path / f"export_from_{backend}.py"  # not jax.py: the script folder comes first on sys.path
    path.write_text(script.format(root=ROOT, tmp=str(tmp_path)))
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, env=env)


def test_saved_model_export_from_jax_any_size(tmp_path):
    """Before: an any-size ViT failed in jax2tf (InconclusiveDimensionOperation in the
    position grid); now its sides are declared multiples of its stride."""
    done = _run(JAX_EXPORT, "jax", tmp_path)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]


def test_saved_model_export_from_torch_is_a_clear_error(tmp_path):
    done = _run(TORCH_EXPORT, "torch", tmp_path)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]
