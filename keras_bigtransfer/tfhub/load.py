"""`hub.load`: TF Hub handles, SavedModels and catalogue tags as native Keras models."""

import hashlib
import json
import os

import numpy as np

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.extras import require
from keras_bigtransfer.models import loading, registry
from keras_bigtransfer.tfhub import raw_weights, tf1_hub
from keras_bigtransfer.weights import assign, catalogue, checkpoint, download, hf_hub, kaggle
from keras_bigtransfer.weights.archive import extract_module


def load(handle_or_path, *, revision=None, position_grid=None, trust_remote_code=False):
    """Load a model as a native, editable Keras model where we implement its family.

    Args:
        handle_or_path: a catalogue tag ("bit_m_r50x1"), a SavedModel directory, a
            `.tar.gz` TF Hub module, an http(s) URL of one (tfhub.dev, kaggle.com: every
            http(s) handle gets `?tf-hub-format=compressed`, as TF Hub's own resolver does),
            a `kaggle://owner/model/framework/variation[/version]` handle (kagglehub), a
            Hugging Face Hub handle (`hf-hub:timm/<name>[@revision]`, `hf://...`: built by
            `create_model`, a timm repository from its config.json), a constructor or timm
            name (as `create_model` takes them). Also a
            published checkpoint file (.npz / .h5, architecture read off the weights)
            or a `.keras` file.
        revision: a Hugging Face Hub handle's branch, tag or commit (as `@revision`).
        position_grid: for a ViT checkpoint whose position grid is not square, its
            (rows, cols): the model is then built for images of that grid.
        trust_remote_code: allow a module fetched from an http(s) URL or a `kaggle://` handle
            to be loaded as a program (transformers' name for the same choice). A SavedModel
            or TF1 Hub module is a TensorFlow program: loading it runs the code stored in it
            (initializers, a TF1 module's main_op). Without this, a downloaded module is read
            only as data (its variables, from its checkpoint: our exports and modules in a
            published family layout, BiT, EfficientNet, ViT), and any other one is refused. A
            local path is the caller's own choice and is always loaded.

    Returns:
        For our own exports, SavedModels in the published TF Hub BiT layout and
        checkpoints, a keras_bigtransfer model with the weights mapped in. For any
        other SavedModel, a `keras.layers.TFSMLayer` wrapping it; for any other TF1 Hub
        format module, a `tf1_hub.TF1HubLayer` calling its `default` signature. A catalogue
        tag without a head (`*_notop`) gives the backbone with average pooling.

    Raises:
        WeightsError: a checkpoint or archive that cannot be read (naming the file)
            or whose weights do not fit.
        ValueError: `revision` with anything but a Hugging Face Hub handle (or a catalogue
            tag whose file is on the Hub), or a handle naming another revision.
        WeightsError: a downloaded module that only running its code would load, without
            `trust_remote_code=True`.
    """
    from keras_bigtransfer.layers.position_embedding import check_position_grid

    position_grid = check_position_grid(position_grid)  # a bad argument, before any work
    handle = hf_hub.pin(os.fspath(handle_or_path), revision)  # before any work
    if hf_hub.is_handle(handle):
        if position_grid is None:  # create_model's path: the same model, weights and pretrained_cfg
            return registry.create_model(handle)
        # A non-square stored ViT grid: only the file's own layout says how to build it.
        return loading.model_from_checkpoint(hf_hub.download(handle), source=handle, position_grid=position_grid)
    if os.path.isdir(handle):
        return _import_directory(handle)
    if os.path.isfile(handle):
        kind = checkpoint.sniff_kind(handle)
        if kind == "keras":
            import keras

            with checkpoint.reading(handle, "is not a loadable .keras file"):
                return keras.saving.load_model(handle)
        if kind in ("npz", "h5", "torch", "safetensors") or checkpoint.tf_checkpoint_prefix(handle):
            # Every family's files (a TF checkpoint by its .index): the registry says which family.
            return loading.model_from_checkpoint(handle, position_grid=position_grid)
        return _import_directory(extract_module(handle))
    if checkpoint.tf_checkpoint_prefix(handle) is not None:  # a TF checkpoint's prefix
        return loading.model_from_checkpoint(handle, position_grid=position_grid)
    if handle.startswith(("http://", "https://")):
        return import_saved_model(extract_module(_fetch_module(handle)), trusted=trust_remote_code, source=handle)
    if kaggle.is_handle(handle):  # kaggle://owner/model/framework/variation[/version], via kagglehub
        return import_saved_model(kaggle.download(handle), trusted=trust_remote_code, source=handle)
    if registry.is_model_name(handle):  # a tag, a constructor or timm name: create_model's path
        return registry.create_model(handle)
    raise ValueError(
        f"{handle!r} is not a SavedModel directory, a .tar.gz module, an http(s) URL or a "
        f"catalogue tag (matched exactly){catalogue.did_you_mean(handle)} "
        "keras_bigtransfer.hub.list_models() lists the tags."
    )


def _fetch_module(url):
    # Every http(s) handle (tfhub.dev, kaggle.com, others), as tensorflow_hub's resolver does.
    url = kaggle.compressed_url(url)
    key = hashlib.sha1(url.encode()).hexdigest()
    return download.fetch(url, f"modules/{key}.tar.gz", use_mirror=False)


def _import_directory(path):
    """A SavedModel (or TF1 Hub module) directory, or a TF checkpoint release's (tensorflow/tpu
    `efficientnet-b0.tar.gz` unpacked: a folder holding `model.ckpt*`)."""
    if not os.path.exists(os.path.join(path, "saved_model.pb")) and checkpoint.tf_checkpoint_prefix(path):
        return loading.model_from_checkpoint(path)
    return import_saved_model(path)


def _refuse_program(path, source, what):
    raise WeightsError(
        f"{source}: {what}, which loads only by running the TensorFlow program stored in it (a SavedModel or "
        "TF1 Hub module is code, not data). Pass trust_remote_code=True if you trust its publisher, or "
        "download it and load the local copy.")


def saved_model_variables(path):
    """The variables of a TF2 SavedModel read as data, with no graph code run: ({name: array},
    [arrays of the root's `variables` list, in order] or None). From `saved_model.pb`'s object
    graph (protobuf, parsed) and the checkpoint in `variables/` (`tf.train.load_checkpoint`)."""
    tf = require("tensorflow", extra="tensorflow", for_what=f"Loading the SavedModel {path}")
    from tensorflow.core.protobuf import saved_model_pb2, trackable_object_graph_pb2

    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto = saved_model_pb2.SavedModel.FromString(f.read())
    nodes = proto.meta_graphs[0].object_graph_def.nodes
    prefix = os.path.join(path, "variables", "variables")
    arrays = checkpoint.read_arrays(prefix, lazy=True)
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        tf.train.load_checkpoint(prefix).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    values = {}
    for i, node in enumerate(nodes):
        if node.WhichOneof("kind") == "variable" and i < len(graph.nodes):
            keys = [a.checkpoint_key for a in graph.nodes[i].attributes if a.name == "VARIABLE_VALUE"]
            if keys and keys[0] in arrays:
                values[i] = (node.variable.name.split(":")[0], arrays[keys[0]])
    named = {name: array for name, array in values.values() if name != "save_counter"}
    listed = next((c.node_id for c in nodes[0].children if c.local_name == "variables"), None)
    ordered = None
    if listed is not None:
        ids = {c.local_name: c.node_id for c in nodes[listed].children}
        if all(str(i) in ids and ids[str(i)] in values for i in range(len(ids))):
            ordered = [values[ids[str(i)]][1] for i in range(len(ids))]
    return named, ordered


def import_saved_model(path, trusted=True, source=None):
    """A SavedModel directory as a native Keras model (or a TFSMLayer when we cannot).

    Our exports and SavedModels in a published family layout are read as data (no graph
    code runs). Anything else is loaded as the program it is, which needs `trusted`
    (False for a downloaded module without `trust_remote_code=True`: a `WeightsError`).
    """
    import keras

    source = source or path
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise WeightsError(f"{path} holds no saved_model.pb: it is not a SavedModel directory.")
    if tf1_hub.is_tf1_hub_module(path):  # hub.Module format: several MetaGraphs, TF1 variables
        return _import_tf1_hub_module(path, trusted, source)
    with checkpoint.reading(path, "is not a readable SavedModel"):
        named, ordered = saved_model_variables(path)
    from keras_bigtransfer.tfhub.export import CONFIG_ASSET  # export imports TensorFlow: not for .npz/.keras

    config_path = os.path.join(path, "assets", CONFIG_ASSET)
    if os.path.exists(config_path):
        # A damaged config (bad JSON, missing keys) is one WeightsError naming it.
        with checkpoint.reading(config_path, "is not a readable keras_bigtransfer export config"):
            with open(config_path) as f:
                config = json.load(f)
            model = keras.saving.deserialize_keras_object(config["model"])
            variable_paths = list(config["variable_paths"])
        if ordered is None or len(ordered) < len(variable_paths):
            raise WeightsError(f"{path}: its variables do not match its {CONFIG_ASSET} (a damaged export).")
        converted = {p: (p, np.asarray(v)) for p, v in zip(variable_paths, ordered)}
        # The raw kernels beside the folded graph: the model trains as the exported one did.
        converted.update((p, (p, a)) for p, a in raw_weights.read(path).items())
        return assign.assign(model, converted, source=path)
    if registry.family_of(named, None) is not None:  # a published layout: the family builds it
        return loading.model_from_checkpoint({k: np.asarray(v) for k, v in named.items()}, source=path)
    if not trusted:
        _refuse_program(path, source, "this SavedModel is in no family layout this package reads as data")
    import tensorflow as tf

    with checkpoint.reading(path, "is not a loadable SavedModel"):
        loaded = tf.saved_model.load(path)
    # The reusable API's __call__ returns tensors; signatures return dicts.
    endpoint = "__call__" if callable(loaded) else "serving_default"
    return keras.layers.TFSMLayer(path, call_endpoint=endpoint)


def _import_tf1_hub_module(path, trusted=True, source=None):
    """A TF1 Hub format module as a native model where a family recognizes its variables
    (read from its checkpoint), else a `TF1HubLayer` calling its `default` signature (loaded
    with `tags=[]`, as `tensorflow_hub.load` does), as other SavedModels get a `TFSMLayer`."""
    arrays = tf1_hub.read_variables(path)
    if registry.family_of(arrays, None) is not None:
        return loading.model_from_checkpoint(arrays, source=path)
    if not trusted:
        _refuse_program(path, source or path, "this TF1 Hub module is in no family layout this package reads as data")
    return tf1_hub.TF1HubLayer(path)
