"""The weight hub, the facade users call: the catalogue, weights, TF Hub export and import.

    hub.list_models()      the catalogue's entries (`Entry`), optionally of one family
    hub.resolve(tag, revision=None)    download (or find in the cache) a catalogue checkpoint: its path
    hub.load_weights(model, weights, revision=None)   a checkpoint (tag or path) into a built model
    hub.load(handle, revision=None)    a tag, checkpoint, SavedModel, TF Hub module or URL as a Keras model
    hub.export(model, path)            a TF Hub reusable SavedModel
    hub.export(model, path, format="litert", quantize="int8", representative_data=images)
                                       LiteRT (.tflite), ONNX or OpenVINO (`keras_bigtransfer.deploy`)

`load` and `export` live in `keras_bigtransfer.tfhub` (TensorFlow only) and
`keras_bigtransfer.deploy`, imported on first use.
"""

from keras_bigtransfer.models.loading import load_weights
from keras_bigtransfer.weights import catalogue
from keras_bigtransfer.weights.catalogue import Entry, list_models
from keras_bigtransfer.weights.resolve import resolve

__all__ = ["Entry", "catalogue", "export", "list_models", "load", "load_weights", "resolve"]


def load(handle_or_path, *, revision=None, position_grid=None, trust_remote_code=False):
    """Load a model as a native, editable Keras model where we implement its family.

    See `keras_bigtransfer.tfhub.load.load` for what `handle_or_path` may be;
    `revision` (a branch, tag or commit) picks the revision of a Hugging Face Hub handle;
    `position_grid` (rows, cols) builds a ViT checkpoint with a non-square stored grid;
    `trust_remote_code=True` lets a module downloaded from a URL or `kaggle://` handle load by
    running the TensorFlow program stored in it (without it, only modules that read as data:
    our exports and published family layouts).
    """
    from keras_bigtransfer.tfhub.load import load as _load

    return _load(handle_or_path, revision=revision, position_grid=position_grid,
                 trust_remote_code=trust_remote_code)


def export(model, path, format="saved_model", quantize=None, representative_data=None,
           input_shape=None, signature=None, archive=False, overwrite=False):
    """Write `model` for serving or deployment at `path`; return the path written (a str).

    The path returned is the SavedModel directory, the `<path>.tar.gz` archive with
    `archive=True` (the directory stays beside it), or the .tflite / .onnx / .xml file.

    Weight standardization is folded into plain convolutions in every format.

    Args:
        model: a keras_bigtransfer model.
        path: where to write: the SavedModel directory, or the .tflite / .onnx / .xml file
            (the extension is appended when `path` has none).
        format: "saved_model" (a TF Hub reusable SavedModel, see
            `keras_bigtransfer.tfhub.export.export`), "litert" (a .tflite file), "onnx" or
            "openvino" (an .xml graph with its .bin weights). See `keras_bigtransfer.deploy.export`.
        quantize: LiteRT only: None (float32), "float16", "dynamic_int8" (int8 weights) or
            "int8" (full integer, calibrated on `representative_data`).
        representative_data: calibration images for quantize="int8" in [0, 1]: an array
            (N, H, W, 3), a tf.data dataset or a directory of images.
        input_shape: (height, width): the fixed input size of a LiteRT, ONNX or OpenVINO export
            (default: the model's; a ViT built for any size needs it).
        signature: saved_model: "feature_vector" (default) or "classification"; "feature_maps"
            (the default for a `features_only=True` model: every map, keyed "P2", ...). Other formats
            export the model's own output (logits when it has a head); "feature_vector" or
            "classification" selects as for the SavedModel.
        archive: saved_model: also write `<path>.tar.gz` (and return its path).
        overwrite: saved_model: an existing directory is replaced only when it is empty or an
            earlier export of ours, with or without `overwrite`; `overwrite=True` also replaces a
            file at `path` and a `<path>.tar.gz` file that is not an archive of ours. LiteRT, ONNX
            and OpenVINO: replace an existing file (without it: `FileExistsError`). Checked before
            any work; the current directory, its ancestors, home and root are never replaced.
    """
    from keras_bigtransfer import deploy

    if format in deploy.BACKENDS:  # before any work (TensorFlow's import included)
        deploy.check_backend(format)
    if format == "saved_model":
        if quantize is not None or representative_data is not None or input_shape is not None:
            raise ValueError('quantize, representative_data and input_shape apply to format="litert", '
                             '"onnx" and "openvino"; a SavedModel keeps the model\'s own input size and float32.')
        from keras_bigtransfer.tfhub.export import export as _export

        if signature is None:  # a features_only model publishes its maps
            signature = "feature_maps" if getattr(model, "feature_info", None) is not None else "feature_vector"
        return _export(model, path, signature=signature, archive=archive, overwrite=overwrite)
    if archive:
        raise ValueError(f"archive=True makes a TF Hub .tar.gz of a SavedModel; format={format!r} writes one file.")
    if format in deploy.FORMATS and signature is not None:
        from keras_bigtransfer.tfhub.export import published_submodel

        model = published_submodel(model, signature)
    return deploy.export(model, path, format=format, quantize=quantize,
                         representative_data=representative_data, input_shape=input_shape, overwrite=overwrite)
