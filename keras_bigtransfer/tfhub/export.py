"""Publish a model as a TF Hub reusable SavedModel (optionally as a .tar.gz module).

The SavedModel follows https://www.tensorflow.org/hub/reusable_saved_models:
`__call__(images, training=False)` traced for both training values, `variables`,
`trainable_variables`, `regularization_losses`, plus a `serving_default` signature;
and the TF Hub image conventions: float32 [batch, height, width, 3] in [0, 1] in,
pre-logits ("feature_vector") or logits ("classification") out.

Weight standardization is folded in: each `WSConv2D` is exported as a plain conv
whose kernel is the standardized one, the constant it is at inference, so an
exported BiT costs what a plain ResNet costs.
"""

import json
import os
import shutil
import tarfile

import keras

from keras_bigtransfer import export_routes
from keras_bigtransfer.extras import require
from keras_bigtransfer.models.base import HEAD_LAYER, ImageModel
from keras_bigtransfer.models.folding import fold_weight_standardization
from keras_bigtransfer.tfhub import raw_weights
from keras_bigtransfer.weights.atomic import atomic_directory, atomic_file, check_removable, check_writable

tf = require("tensorflow", extra="tensorflow", for_what="A SavedModel export")

SIGNATURES = ("feature_vector", "classification", "feature_maps")
# assets/keras_bigtransfer.json marks a SavedModel (and an archive of one) as ours, so a
# later export may replace it without asking.
CONFIG_ASSET = "keras_bigtransfer.json"
EXPORT_FORMAT = "keras_bigtransfer/1"
# What tf.saved_model.save writes at the top of a SavedModel directory.
_SAVED_MODEL_ENTRIES = {"saved_model.pb", "variables", "assets", "assets.extra", "fingerprint.pb"}
_MARKER_MEMBER = "assets/" + CONFIG_ASSET


def _is_marker(data):
    try:
        return str(json.loads(data).get("format", "")).startswith("keras_bigtransfer/")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return False


def is_our_export(path):
    """Whether `path` is a SavedModel directory an earlier `export` wrote (and nothing else)."""
    try:
        entries = set(os.listdir(path))
        if "saved_model.pb" not in entries or not entries <= _SAVED_MODEL_ENTRIES:
            return False
        with open(os.path.join(path, "assets", CONFIG_ASSET), "rb") as f:
            return _is_marker(f.read(1 << 20))
    except OSError:
        return False


def is_our_archive(path):
    """Whether `path` is a .tar.gz module an earlier `export(archive=True)` wrote.

    Only the first members are read: ours come sorted, the marker second.
    """
    try:
        with tarfile.open(path, "r:gz") as tar:
            for count, member in enumerate(tar):
                if count >= 16:
                    return False
                if member.name.lstrip("./") == _MARKER_MEMBER and member.isfile():
                    return _is_marker(tar.extractfile(member).read(1 << 20))
    except (tarfile.TarError, OSError, EOFError, ValueError):
        return False
    return False


def check_export_target(path, archive=False, overwrite=False):
    """Raise before any work if `export(model, path, archive=archive)` may not write there.

    A target directory is replaced only when it is empty or an earlier export of ours,
    with or without `overwrite`: a directory holding anything else is never removed. A
    file (or link) at `path` is replaced only with `overwrite=True`; the archive
    `<path>.tar.gz` when it is an earlier archive of ours, or a file and `overwrite=True`
    (never a directory). The current directory, its ancestors, the home directory and the
    root are never replaced (`weights.atomic.check_removable`). The parent must be writable.

    Raises:
        FileExistsError, IsADirectoryError, PermissionError, NotADirectoryError: one line
        naming the path.
    """
    path = os.path.abspath(os.fspath(path)).rstrip(os.sep) or os.sep
    check_writable(path, "export: ")
    if os.path.lexists(path):
        check_removable(path, "export: ")
        if not os.path.isdir(path) or os.path.islink(path):
            if not overwrite:
                raise FileExistsError(f"export: {path} exists and is not a directory; pass overwrite=True "
                                      "(CLI: --overwrite) to replace it, or choose another path.")
        elif os.listdir(path) and not is_our_export(path):
            raise FileExistsError(f"export: {path} exists and is not an earlier keras_bigtransfer export; "
                                  "a directory holding anything else is never replaced, even with "
                                  "overwrite=True. Choose another path, or empty it.")
    if archive:
        _check_archive_target(path + ".tar.gz", overwrite, "export: ")
    return path


def _check_archive_target(target, overwrite, prefix=""):
    if os.path.isdir(target) and not os.path.islink(target):
        raise IsADirectoryError(f"{prefix}{target} is a directory; the archive is a file (a directory is never "
                                "replaced by a file). Choose another path.")
    if os.path.lexists(target) and not overwrite and not (os.path.isfile(target) and is_our_archive(target)):
        raise FileExistsError(f"{prefix}{target} exists and is not an earlier keras_bigtransfer archive; "
                              "pass overwrite=True (CLI: --overwrite) to replace it, or choose another path.")


def _remove(path):
    check_removable(path, "export: ")
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def published_submodel(model, signature):
    """The part of `model` a signature publishes: up to the pooled features, or all of it."""
    if signature not in SIGNATURES:
        raise ValueError(f"signature must be one of {SIGNATURES}; got {signature!r}.")
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if signature == "feature_maps" or getattr(model, "feature_info", None) is not None:
        # A features_only model (models/features.py): every map, nothing else.
        if signature != "feature_maps" or getattr(model, "feature_info", None) is None:
            raise ValueError(f'{getattr(model, "name", "")}: signature="feature_maps" is the export of a '
                             "features_only model, and a features_only model exports only with it.")
        if not isinstance(model, keras.Model) or not inputs or not outputs or len(inputs) != 1:
            raise ValueError(f"export expects a built functional Keras model with one image input; "
                             f"got {type(model).__name__} {getattr(model, 'name', '')!r}.")
        return model
    if not isinstance(model, keras.Model) or not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"export expects a built functional Keras model with one image input and one "
                         f"output; got {type(model).__name__} {getattr(model, 'name', '')!r}.")
    has_head = any(layer.name == HEAD_LAYER for layer in model.layers)
    nested_head = [layer.name for layer in model.layers if isinstance(layer, keras.Model)
                   and any(inner.name == HEAD_LAYER for inner in _layers_deep(layer))]
    if signature == "classification":
        if not (has_head or nested_head):
            raise ValueError(
                f"{model.name} has no classifier head (include_top=False); export it with "
                'signature="feature_vector", or build it with include_top=True.'
            )
        return model if isinstance(model, ImageModel) else ImageModel(model.input, model.output, name=model.name)
    if nested_head:
        raise ValueError(
            f"{model.name}'s classifier head sits inside the nested model {nested_head[0]!r}, so the "
            'pre-logits cannot be cut out: export with signature="classification", or export a '
            "model built with include_top=False, pooling=\"avg\"."
        )
    if has_head:
        features = model.get_layer(HEAD_LAYER).input
    elif len(model.output.shape) == 2:
        features = model.output
    else:
        raise ValueError(
            f"{model.name} outputs a feature map {tuple(model.output.shape)}; a feature_vector "
            'export needs pooled features: build it with pooling="avg".'
        )
    return ImageModel(model.input, features, name=model.name)


def _layers_deep(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers_deep(layer)


class _ReusableSavedModel(tf.train.Checkpoint):
    """The root object TF Hub's reusable SavedModel API asks for (its documented
    low-level recipe: a `tf.train.Checkpoint` with plain attribute lists).

    The Keras model is held only by the functions' closures: tracking it as an
    attribute too would save every weight twice.
    """

    def __init__(self, model, output_name):
        super().__init__()
        # Weights first (the import relies on the order), then any other state a call
        # uses (dropout's seed generators, traced in the training=True function).
        weight_ids = {id(v) for v in model.weights}
        state = [v for v in model.variables if id(v) not in weight_ids]
        self.variables = [v.value for v in list(model.weights) + state]
        self.trainable_variables = [v.value for v in model.trainable_weights]
        self.regularization_losses = []
        spec = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), tf.float32, name="images")

        @tf.function
        def call(images, training=False):
            return model(images, training=training)

        for training in (False, True):
            call.get_concrete_function(spec, training=training)
        self.__call__ = call
        if isinstance(output_name, str):
            def serve(images):
                return {output_name: call(images, training=False)}
        else:  # feature maps: one output per name, in order (or the model's own dict)
            def serve(images):
                maps = call(images, training=False)
                return {n: maps[n] for n in output_name} if isinstance(maps, dict) else dict(zip(output_name, maps))
        self.serving_default = tf.function(serve, input_signature=[spec])


def check_backend():
    """A SavedModel is written from TensorFlow, or from JAX through jax2tf; PyTorch has
    no route here (Keras' needs torch_xla): a ValueError naming what works instead
    (`export_routes.check_backend`, the rule of every format)."""
    export_routes.check_backend("saved_model")


def export(model, path, signature="feature_vector", archive=False, overwrite=False):
    """Write `model` as a TF Hub reusable SavedModel at `path`.

    Args:
        model: a keras_bigtransfer model, or any functional Keras model with one
            image input (our models nested in it included), channels_last: a model built
            channels_first raises a ValueError naming the fix (`export_routes.check_data_format`).
        path: the SavedModel directory to write. An existing directory is replaced
            only when it is empty or an earlier export of ours (marked by
            `assets/keras_bigtransfer.json`); anything else raises `FileExistsError`
            before any work, `overwrite` or not. The current directory, its ancestors,
            the home directory and the root are never replaced (`PermissionError`).
        signature: "feature_vector" (pre-logits, the TF Hub image feature vector API)
            or "classification" (logits); "feature_maps" for a `features_only=True` model:
            `serving_default` returns every map, keyed by `feature_info` names ("P2", ...).
        archive: also write `<path>.tar.gz`, the SavedModel at the archive root, the
            form TF Hub servers and `hub.load(url)` use (same replacement rule).
        overwrite: also replace a file (or link) at `path`, and a file at `<path>.tar.gz`
            that is not an archive of ours. Never a directory that is not an export.

    Returns:
        The absolute path written, a str: the SavedModel directory, or with `archive` the
        archive `<path>.tar.gz` (the directory stays beside it, at `path`).
    """
    check_backend()
    export_routes.check_data_format(model, "saved_model")
    path = check_export_target(path, archive=archive, overwrite=overwrite)
    published = published_submodel(model, signature)
    folded = fold_weight_standardization(published)
    output_name = {"feature_vector": "feature_vector", "classification": "logits"}.get(signature)
    if signature == "feature_maps":
        output_name = list(published.feature_info.names())
    if keras.backend.backend() == "jax":  # jax2tf through keras.export (jax_export.py)
        from keras_bigtransfer.tfhub import jax_export

        module = jax_export.reusable_module(folded, output_name)
    else:
        module = _ReusableSavedModel(folded, output_name)

    def replace(existing):
        check_export_target(existing, overwrite=overwrite)  # again: it may have changed meanwhile
        _remove(existing)

    with atomic_directory(path, replace=replace) as staging:
        tf.saved_model.save(module, staging, signatures={"serving_default": module.serving_default})
        os.makedirs(os.path.join(staging, "assets"), exist_ok=True)
        with open(os.path.join(staging, "assets", CONFIG_ASSET), "w") as f:
            json.dump(
                {
                    "format": EXPORT_FORMAT,
                    "signature": signature,
                    # The unfolded model, so an import gets WSConv2D layers back.
                    "model": keras.saving.serialize_keras_object(published),
                    "variable_paths": [v.path for v in folded.weights],
                    # The raw kernels the folded graph standardized (`raw_weights`).
                    "raw_weights": raw_weights.write(staging, raw_weights.differing(published, folded)),
                },
                f,
            )
    if not archive:
        return path
    return write_archive(path, path + ".tar.gz", overwrite=overwrite)


def write_archive(saved_model_dir, archive_path, overwrite=False):
    """`tar -cz --owner=0 --group=0 -C saved_model_dir .`, written atomically.

    An existing `archive_path` is replaced only when it is an earlier archive of ours
    or a file and `overwrite=True`; otherwise `FileExistsError` (`IsADirectoryError` for a
    directory, never replaced).
    """
    _check_archive_target(archive_path, overwrite)

    def anonymous(info):
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with atomic_file(archive_path, suffix=".tar.gz") as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for name in sorted(os.listdir(saved_model_dir)):
                tar.add(os.path.join(saved_model_dir, name), arcname=name, filter=anonymous)
    return archive_path
