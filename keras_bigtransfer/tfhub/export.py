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
import tempfile

import keras
import tensorflow as tf

from keras_bigtransfer.models.base import HEAD_LAYER, ImageModel
from keras_bigtransfer.models.folding import fold_weight_standardization

SIGNATURES = ("feature_vector", "classification", "feature_maps")
CONFIG_ASSET = "keras_bigtransfer.json"


def published_submodel(model, signature):
    """The part of `model` a signature publishes: up to the pooled features, or all of it."""
    if signature not in SIGNATURES:
        raise ValueError(f"signature must be one of {SIGNATURES}; got {signature!r}.")
    if signature == "feature_maps" or getattr(model, "feature_info", None) is not None:
        # A features_only model (models/features.py): every map, nothing else.
        if signature != "feature_maps" or getattr(model, "feature_info", None) is None:
            raise ValueError(f'{model.name}: signature="feature_maps" is the export of a features_only '
                             "model, and a features_only model exports only with it.")
        return model
    has_head = any(layer.name == HEAD_LAYER for layer in model.layers)
    if signature == "classification":
        if not has_head:
            raise ValueError(
                f"{model.name} has no classifier head (include_top=False); export it with "
                'signature="feature_vector", or build it with include_top=True.'
            )
        return model
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


def export(model, path, signature="feature_vector", archive=False):
    """Write `model` as a TF Hub reusable SavedModel at `path`.

    Args:
        model: a keras_bigtransfer model.
        path: the SavedModel directory to write (replaced if it exists).
        signature: "feature_vector" (pre-logits, the TF Hub image feature vector API)
            or "classification" (logits); "feature_maps" for a `features_only=True` model:
            `serving_default` returns every map, keyed by `feature_info` names ("P2", ...).
        archive: also write `<path>.tar.gz`, the SavedModel at the archive root, the
            form TF Hub servers and `hub.load(url)` use.

    Returns:
        The path of the SavedModel directory (and the archive's when `archive`).
    """
    path = os.path.abspath(os.fspath(path)).rstrip(os.sep)
    published = published_submodel(model, signature)
    folded = fold_weight_standardization(published)
    output_name = {"feature_vector": "feature_vector", "classification": "logits"}.get(signature)
    if signature == "feature_maps":
        output_name = list(published.feature_info.names())
    module = _ReusableSavedModel(folded, output_name)

    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        tf.saved_model.save(module, staging, signatures={"serving_default": module.serving_default})
        os.makedirs(os.path.join(staging, "assets"), exist_ok=True)
        with open(os.path.join(staging, "assets", CONFIG_ASSET), "w") as f:
            json.dump(
                {
                    "format": "keras_bigtransfer/1",
                    "signature": signature,
                    # The unfolded model, so an import gets WSConv2D layers back.
                    "model": keras.saving.serialize_keras_object(published),
                    "variable_paths": [v.path for v in folded.weights],
                },
                f,
            )
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not archive:
        return path
    return path, write_archive(path, path + ".tar.gz")


def write_archive(saved_model_dir, archive_path):
    """`tar -cz --owner=0 --group=0 -C saved_model_dir .`, written atomically."""

    def anonymous(info):
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    tmp = archive_path + ".tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for name in sorted(os.listdir(saved_model_dir)):
            tar.add(os.path.join(saved_model_dir, name), arcname=name, filter=anonymous)
    os.replace(tmp, archive_path)
    return archive_path
