"""ONNX files through Keras' `Model.export(format="onnx")` (tf2onnx on the TensorFlow backend)."""

from keras_bigtransfer.deploy import input_signature
from keras_bigtransfer.weights.atomic import atomic_file


def export_onnx(model, path, shape, opset_version=None):
    with atomic_file(path, suffix=".onnx") as tmp:
        model.export(tmp, format="onnx", verbose=False, input_signature=input_signature(shape),
                     opset_version=opset_version)
    return path
