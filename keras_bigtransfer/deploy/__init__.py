"""Deployment exports: LiteRT (.tflite), ONNX and OpenVINO IR, built on Keras' `Model.export`.

    deploy.export(model, "lite0.tflite", format="litert", quantize="int8",
                  representative_data=images)       # full integer, calibrated
    deploy.export(model, "bit.onnx", format="onnx")
    deploy.export(model, "vit.xml", format="openvino", input_shape=(224, 224))

Users reach this through `keras_bigtransfer.hub.export(..., format=...)`. Every format gets
weight standardization folded in (`models.folding`), the package's input convention (float32
RGB in [0, 1], NHWC, any batch size) and the model's own output (logits when it has a head).
Everything that can be checked is checked before the (slow) conversion starts: the format,
the quantization, the calibration data, the input size, the output path (an existing file is
refused unless `overwrite=True`), the runtime package.

TensorFlow, tf2onnx and OpenVINO are imported inside the functions that need them.
"""

import os

import numpy as np

from keras_bigtransfer.deploy.calibration import load_representative_data
from keras_bigtransfer.export_routes import (  # noqa: F401 (public here too)
    BACKENDS, UNSUPPORTED_ROUTES, check_backend, check_data_format)
from keras_bigtransfer.extras import require
from keras_bigtransfer.weights import atomic

FORMATS = ("litert", "onnx", "openvino")
QUANTIZATIONS = (None, "float16", "dynamic_int8", "int8")
SUFFIXES = {"litert": ".tflite", "onnx": ".onnx", "openvino": ".xml"}
# The Python package each conversion needs, and the pip name to install it under.
CONVERTER_PACKAGES = {"litert": "tensorflow", "onnx": "tf2onnx", "openvino": "openvino"}
# What Keras' PyTorch routes import instead (torch.onnx writes through the onnx package).
TORCH_CONVERTER_PACKAGES = {"onnx": "onnx", "openvino": "openvino"}

__all__ = ["BACKENDS", "FORMATS", "QUANTIZATIONS", "check_backend", "check_options", "check_output_target", "export",
           "output_path", "resolve_input_shape"]


def export(model, path, format, quantize=None, representative_data=None, input_shape=None, overwrite=False):
    """Write `model` in a deployment format; return the path written.

    Args:
        model: a keras_bigtransfer model (any Keras functional model taking NHWC images).
        path: the file to write. Without an extension the format's is appended (`.tflite`,
            `.onnx`, `.xml`; OpenVINO also writes the `.bin` beside the `.xml`).
        format: "litert", "onnx" or "openvino".
        quantize: LiteRT only. None (float32), "float16" (float16 weights), "dynamic_int8"
            (int8 weights, float activations) or "int8" (full integer: every op int8,
            calibrated on `representative_data`; the file's input and output stay float32).
        representative_data: "int8" only: images in the package's [0, 1] convention (uint8 is
            divided by 255), as an array (N, H, W, 3), a tf.data dataset of images or
            (images, labels) or a directory of image files (read recursively, resized to the
            export size). A few dozen to a few hundred images of the deployment domain.
        input_shape: (height, width) or (height, width, 3): the fixed input size to export.
            Default: the model's; a model built for any size is exported for any size (batch,
            height and width dynamic), except a ViT, whose position embedding is resampled
            to the input grid: it needs `input_shape`.
        overwrite: replace an existing file at `path` (OpenVINO: or its `.bin`). Without it,
            an existing file raises `FileExistsError` before any work, as `hub.export`'s
            SavedModel does for a directory that is not an earlier export.

    Raises:
        ValueError: an unknown format or quantization, a format the running Keras backend
            does not write (`BACKENDS`: LiteRT from TensorFlow and JAX, ONNX and OpenVINO from
            TensorFlow and PyTorch), missing or unusable calibration data,
            no input size for a ViT, a path with another format's extension, or (LiteRT) an
            op the runtime's builtin op set lacks, named. ImportError: the converter package
            is not installed (`pip install keras_bigtransfer[deploy]`). FileExistsError: `path`
            exists and `overwrite` is False. ValueError: a model built channels_first
            (`check_data_format`: export a channels_last copy). IsADirectoryError, NotADirectoryError,
            PermissionError: `path` cannot be written.
    """
    if format == "saved_model":
        raise ValueError('A SavedModel is written by keras_bigtransfer.hub.export(model, path) (format="saved_model").')
    check_options(format, quantize, representative_data)
    check_data_format(model, format)
    path = output_path(path, format)
    check_output_target(path, format, overwrite=overwrite)
    shape = resolve_input_shape(model, input_shape)
    _require(format)
    calibration = None
    if quantize == "int8":
        calibration = load_representative_data(representative_data, shape)

    from keras_bigtransfer.models.folding import fold_weight_standardization

    folded = fold_weight_standardization(model, constant_normalization=True)
    if format == "litert":
        from keras_bigtransfer.deploy.litert import export_litert

        return export_litert(folded, path, shape, quantize=quantize, calibration=calibration)
    if format == "onnx":
        from keras_bigtransfer.deploy.onnx import export_onnx

        return export_onnx(folded, path, shape)
    from keras_bigtransfer.deploy.openvino import export_openvino

    return export_openvino(folded, path, shape)


def check_options(format, quantize=None, representative_data=None):
    """Raise ValueError for options no export can take, and for a format the running Keras
    backend does not write (`check_backend`): no model needed, so callers check first.

    `format` may also be "saved_model" (hub.export's default), which takes neither option.
    """
    if format == "saved_model" and (quantize is not None or representative_data is not None):
        raise ValueError('quantize and representative_data are LiteRT options (format="litert"); '
                         "a SavedModel is exported in float32.")
    if format not in BACKENDS:
        raise ValueError(f"format must be one of {('saved_model',) + FORMATS}; got {format!r}.")
    check_backend(format)
    if format == "saved_model":
        return
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}; got {quantize!r}.")
    if quantize is not None and format != "litert":
        raise ValueError(f'quantize={quantize!r} is a LiteRT option (format="litert"); '
                         f"{format} files are exported in float32.")
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            'quantize="int8" (full integer) needs representative_data to calibrate the activation '
            "ranges: an array of images (N, H, W, 3) in [0, 1], a tf.data dataset or a directory "
            "of images of the deployment domain (a few dozen to a few hundred).")
    if representative_data is not None and quantize != "int8":
        raise ValueError(f'representative_data calibrates quantize="int8" only; got quantize={quantize!r}.')
    if isinstance(representative_data, (str, os.PathLike)) and not os.path.isdir(representative_data):
        raise ValueError(f"representative_data: {os.fspath(representative_data)!r} is not a directory "
                         "(of calibration images).")


def output_path(path, format):
    """`path` as an absolute path with the format's extension (appended when it has none)."""
    path = os.path.abspath(os.fspath(path))
    suffix = SUFFIXES[format]
    extension = os.path.splitext(path)[1]
    if extension == "":
        return path + suffix
    if extension.lower() != suffix:
        raise ValueError(f"A {format} export is a {suffix} file; got the path {path!r}. "
                         f"Name it {os.path.splitext(path)[0] + suffix!r} (or leave the extension off).")
    return path


def output_files(path, format):
    """The files an export to `path` (an `output_path`) writes: OpenVINO's .bin beside its .xml."""
    return (path, os.path.splitext(path)[0] + ".bin") if format == "openvino" else (path,)


def check_output_target(path, format, overwrite=False):
    """Raise before any work unless an export may write `path` (an `output_path`).

    An existing file is replaced only with `overwrite=True` (the rule of `hub.export`'s
    SavedModel target: check first, then write atomically); a directory is never replaced
    by a file. The nearest existing ancestor must be a writable directory
    (`weights.atomic.check_file_target`, the rule every writer of the package checks).
    """
    for target in output_files(path, format):
        atomic.check_file_target(target, overwrite=overwrite, prefix="export: ")
    return path


def resolve_input_shape(model, input_shape=None):
    """The (height, width, channels) to export, None for a dimension left dynamic."""
    model_shape = tuple(model.inputs[0].shape[1:])
    if len(model_shape) != 3:
        raise ValueError(f"{model.name} takes inputs of shape {model_shape}; the export formats here "
                         "take a batch of images (height, width, channels).")
    if input_shape is not None:
        shape = tuple(input_shape)
        if len(shape) == 2:
            shape = shape + (model_shape[2],)
        if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
            raise ValueError(f"input_shape must be (height, width) or (height, width, 3), positive "
                             f"integers; got {input_shape!r}.")
        shape = tuple(int(s) for s in shape)
        clash = [(m, s) for m, s in zip(model_shape, shape) if m is not None and m != s]
        if clash:
            raise ValueError(f"{model.name} is built for inputs {model_shape}; input_shape={input_shape!r} "
                             "does not fit it. Build the model at that size (its input_shape argument) "
                             "or leave input_shape out.")
        return shape
    if None in model_shape[:2] and _resizes_position_embedding(model):
        raise ValueError(
            f"{model.name} is built for any input size, and its position embedding is resampled to "
            "the grid of each input: the exported graph needs one fixed size. Pass input_shape="
            "(height, width), e.g. input_shape=(224, 224), or build the model with "
            "input_shape=(224, 224, 3).")
    return model_shape


def _resizes_position_embedding(model):
    from keras_bigtransfer.layers import PositionEmbedding

    return any(isinstance(layer, PositionEmbedding) for layer in _all_layers(model))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _require(format):
    import keras

    if keras.backend.backend() == "torch":  # Keras' own torch.onnx / OpenVINO routes: no TensorFlow
        require(TORCH_CONVERTER_PACKAGES[format], extra="deploy", for_what=f"The {format} export from PyTorch")
        return
    # From TensorFlow (and LiteRT from JAX through jax2tf) the model is traced into a TensorFlow
    # graph (input_signature), then converted.
    require("tensorflow", extra="tensorflow", for_what=f"The {format} export")
    require(CONVERTER_PACKAGES[format], extra="deploy", for_what=f"The {format} export")


def input_signature(shape):
    """The one input of every exported graph: float32 images named "images", batch dynamic
    (a tf.TensorSpec on TensorFlow; a keras.InputSpec elsewhere, which Keras' PyTorch
    exports take without importing TensorFlow)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return [keras.InputSpec(shape=(None,) + tuple(shape), dtype="float32", name="images")]
    import tensorflow as tf

    return [tf.TensorSpec((None,) + tuple(shape), tf.float32, name="images")]
