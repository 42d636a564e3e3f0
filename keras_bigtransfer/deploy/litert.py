"""LiteRT (TensorFlow Lite) files through Keras' `Model.export(format="litert")` (TensorFlow
backend; from JAX: jax2tf and the LiteRT converter) and the LiteRT converter's own quantization.

The op set is LiteRT's builtins only (Keras' default also allows TensorFlow "flex" ops,
which the standalone `ai-edge-litert` interpreter and phones without the flex delegate
cannot run): a model that needs any other op fails to convert, and the error names it.
"""

import re

from keras_bigtransfer.deploy import input_signature
from keras_bigtransfer.weights.atomic import atomic_file


def converter_options(quantize, calibration=None):
    """The TFLiteConverter settings `Model.export(format="litert", **options)` applies."""
    import tensorflow as tf

    if quantize is None:
        return {"target_spec": {"supported_ops": {tf.lite.OpsSet.TFLITE_BUILTINS}}}
    options = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if quantize == "float16":
        options["target_spec"] = {"supported_ops": {tf.lite.OpsSet.TFLITE_BUILTINS},
                                  "supported_types": [tf.float16]}
    elif quantize == "dynamic_int8":
        options["target_spec"] = {"supported_ops": {tf.lite.OpsSet.TFLITE_BUILTINS}}
    elif quantize == "int8":
        def representative_dataset():
            for i in range(len(calibration)):
                yield [calibration[i:i + 1]]

        # Every op int8 (the conversion fails rather than fall back to float); the file's
        # input and output stay float32, quantized and dequantized at its edges.
        options["target_spec"] = {"supported_ops": {tf.lite.OpsSet.TFLITE_BUILTINS_INT8}}
        options["representative_dataset"] = representative_dataset
    else:
        raise ValueError(f"Unknown quantization {quantize!r}.")
    return options


def unsupported_ops(message):
    """The TensorFlow op names a converter error says LiteRT cannot run."""
    names = set(re.findall(r"'(tf\.[A-Za-z0-9_]+)' op is neither a custom op nor a flex op", message))
    for listed in re.findall(r"(?:Custom|Flex) ops: ([A-Za-z0-9_, ]+)", message):
        names.update("tf." + n.strip() for n in listed.split(",") if n.strip())
    # Full-integer conversion: an op the int8 kernels do not cover.
    names.update(re.findall(r"Quantization not yet supported for op: '?([A-Za-z0-9_.]+)", message))
    return sorted(names)


def _export_from_jax(model, path, shape, options):
    """Keras' LiteRT export takes TensorFlow or PyTorch; from JAX the model goes through jax2tf
    (the SavedModel route, `tfhub.jax_export`) and the LiteRT converter, with the same options."""
    import keras
    import tensorflow as tf

    from keras_bigtransfer.tfhub import jax_export

    inputs = keras.Input(shape, name="images")
    fixed = keras.Model(inputs, model(inputs), name=model.name)  # jax2tf traces the export's size
    root = jax_export.reusable_module(fixed, "output")
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [root.serving_default.get_concrete_function()], root)
    for name, value in options.items():
        if name == "target_spec":
            for key, setting in value.items():
                setattr(converter.target_spec, key, setting)
        else:
            setattr(converter, name, value)
    with open(path, "wb") as f:
        f.write(converter.convert())


def export_litert(model, path, shape, quantize=None, calibration=None):
    import keras

    options = converter_options(quantize, calibration)
    with atomic_file(path, suffix=".tflite") as tmp:
        try:
            if keras.backend.backend() == "jax":
                _export_from_jax(model, tmp, shape, options)
            else:
                model.export(tmp, format="litert", verbose=False, input_signature=input_signature(shape),
                             **options)
        except Exception as e:
            ops = unsupported_ops(str(e))
            if not ops:
                raise
            raise ValueError(
                f"{model.name} uses op(s) LiteRT's builtin op set lacks"
                f"{' in int8' if quantize == 'int8' else ''}: {', '.join(ops)}. The standalone LiteRT "
                "runtime cannot run them; replace the layer that makes them, or export to ONNX or "
                "OpenVINO." + ("" if quantize != "int8" else
                               ' (quantize="dynamic_int8" keeps such ops in float.)')) from e
    return path
