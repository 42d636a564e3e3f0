"""hub.export(format="saved_model") from the JAX backend (jax2tf) and the clear error from
PyTorch (issue 17); every other format from JAX and PyTorch: written and equal to the Keras
model, or refused up front in one line (issue 25, item 7). Each backend in a subprocess."""

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


EVERY_FORMAT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    import keras, numpy as np, pytest
    import keras_bigtransfer as kb
    from keras_bigtransfer import cli, deploy
    from tests.toys import tiny_model
    backend = keras.backend.backend()
    model = tiny_model(num_classes=3)
    images = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(model(images))

    def run_litert(path):
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=path)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], images.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    def run_onnx(path):
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run(None, {{session.get_inputs()[0].name: images}})[0]

    def run_openvino(path):
        import openvino
        # f32: OpenVINO's CPU plugin otherwise computes in bf16 where the CPU has it.
        compiled = openvino.Core().compile_model(path, "CPU", {{"INFERENCE_PRECISION_HINT": "f32"}})
        return next(iter(compiled(images).values()))

    runners = {{"litert": run_litert, "onnx": run_onnx, "openvino": run_openvino}}
    for fmt in ("saved_model", "litert", "onnx", "openvino"):
        target = os.path.join({tmp!r}, fmt + deploy.SUFFIXES.get(fmt, ""))
        if backend not in deploy.BACKENDS[fmt]:  # refused before any work, in one line
            start = time.perf_counter()
            with pytest.raises(ValueError, match="KERAS_BACKEND=") as refused:
                kb.hub.export(model, target, format=fmt, input_shape=None if fmt == "saved_model" else (32, 32))
            assert "\\n" not in str(refused.value) and time.perf_counter() - start < 1.0
            assert not os.path.exists(target)
            # The CLI refuses before it loads (here: a tag it would otherwise call unknown).
            cli.FLAGS.unparse_flags()
            with pytest.raises(SystemExit):
                cli.main(cli.parse_flags(["keras-bigtransfer", "export", "no_such_tag", target, "--format=" + fmt]))
            print(fmt, "REFUSED", flush=True)
            continue
        if fmt == "saved_model":
            continue  # written from JAX: test_saved_model_export_from_jax_any_size
        path = kb.hub.export(model, target, format=fmt, input_shape=(32, 32))
        np.testing.assert_allclose(runners[fmt](path), want, atol=1e-4)  # float32 throughout
        print(fmt, "WRITTEN", flush=True)
    if backend == "jax":  # the LiteRT converter's quantization through the JAX route too
        path = kb.hub.export(model, os.path.join({tmp!r}, "q.tflite"), format="litert", input_shape=(32, 32),
                             quantize="dynamic_int8")
        got = run_litert(path)
        assert np.abs(got - want).max() <= 0.05 * np.abs(want).max(), (got, want)
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


def test_every_format_from_jax_is_written_or_refused_up_front(tmp_path):
    """LiteRT from JAX: jax2tf, then the LiteRT converter (before: Keras' raw "requires TensorFlow or
    PyTorch backend"); ONNX and OpenVINO refused in one line naming KERAS_BACKEND (before: a TypeError
    about tf.float32, and OpenVINO's XlaCallModule failure after the conversion)."""
    done = _run(EVERY_FORMAT, "jax", tmp_path)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]
    assert "litert WRITTEN" in done.stdout and "onnx REFUSED" in done.stdout and "openvino REFUSED" in done.stdout


def test_every_format_from_torch_is_written_or_refused_up_front(tmp_path):
    """ONNX and OpenVINO from PyTorch match the model; LiteRT (Keras sent users to litert-torch) and
    the SavedModel are refused in one line before any work."""
    done = _run(EVERY_FORMAT, "torch", tmp_path)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]
    assert "onnx WRITTEN" in done.stdout and "openvino WRITTEN" in done.stdout
    assert "litert REFUSED" in done.stdout and "saved_model REFUSED" in done.stdout
