"""`hub.load`: TF Hub handles, SavedModels and catalogue tags as native Keras models."""

import hashlib
import json
import math
import os
import shutil
import tarfile
import tempfile

import filelock
import numpy as np

from keras_bigtransfer.weights import assign, catalogue, checkpoint, download
from keras_bigtransfer.models.bit import convert as bit
from keras_bigtransfer.models.efficientnet import convert as efficientnet
from keras_bigtransfer.models.vit import convert as vit
from keras_bigtransfer.tfhub.export import CONFIG_ASSET


def load(handle_or_path):
    """Load a model as a native, editable Keras model where we implement its family.

    Args:
        handle_or_path: a catalogue tag ("bit_m_r50x1"), a SavedModel directory, a
            `.tar.gz` TF Hub module, or an http(s) URL of one (tfhub.dev handles get
            `?tf-hub-format=compressed`, as TF Hub's own resolver does). Also a
            published checkpoint file (.npz / .h5, architecture read off the weights)
            or a `.keras` file.

    Returns:
        For our own exports, SavedModels in the published TF Hub BiT layout and
        checkpoints, a keras_bigtransfer model with the weights mapped in. For any
        other SavedModel, a `keras.layers.TFSMLayer` wrapping it.
    """
    handle = os.fspath(handle_or_path)
    if os.path.isdir(handle):
        return import_saved_model(handle)
    if os.path.isfile(handle):
        kind = checkpoint.sniff_kind(handle)
        if kind == "keras":
            import keras

            return keras.saving.load_model(handle)
        if kind in ("npz", "h5"):
            arrays = checkpoint.read_arrays(handle)
            if vit.detect_prefix(arrays) is not None:
                return vit_from_checkpoint(arrays, source=handle)
            return model_from_checkpoint(arrays, source=handle)
        return import_saved_model(extract_module(handle))
    if handle.startswith(("http://", "https://")):
        return import_saved_model(extract_module(_fetch_module(handle)))
    entry = catalogue.find(handle)
    if entry is not None:
        import keras_bigtransfer

        constructor = getattr(keras_bigtransfer, entry.constructor)
        return constructor(weights=entry.tag, num_classes=entry.num_classes)
    raise ValueError(
        f"{handle!r} is not a SavedModel directory, a .tar.gz module, an http(s) URL or a "
        "catalogue tag (keras_bigtransfer.hub.list_models())."
    )


def _fetch_module(url):
    if "tfhub.dev/" in url and "tf-hub-format" not in url:
        url += ("&" if "?" in url else "?") + "tf-hub-format=compressed"
    key = hashlib.sha1(url.encode()).hexdigest()
    return download.fetch(url, f"modules/{key}.tar.gz", use_mirror=False)


def _check_member(member, archive):
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{archive}: refusing absolute path {name!r} in the archive.")
    if ".." in parts:
        raise ValueError(f"{archive}: refusing path {name!r} that leaves the archive root.")
    if member.issym() or member.islnk():
        raise ValueError(f"{archive}: refusing link {name!r} -> {member.linkname!r}.")
    if not (member.isfile() or member.isdir()):
        raise ValueError(f"{archive}: refusing {name!r}, which is not a regular file or directory.")


def extract_module(archive):
    """Extract a .tar.gz module into the cache (once, atomically); return the directory.

    Absolute paths, `..`, links and device files are refused before anything is written.
    """
    archive = os.path.abspath(archive)
    key = download.file_digest(archive, "sha256")[:20]
    target = os.path.join(download.cache_dir(), "modules", key)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with filelock.FileLock(target + ".lock"):
        if os.path.isdir(target):
            return target
        try:
            tar = tarfile.open(archive, "r:*")
        except tarfile.TarError as e:
            raise ValueError(f"{archive} is not a SavedModel directory or a .tar.gz module: {e}") from e
        with tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            staging = tempfile.mkdtemp(prefix=".extract-", dir=os.path.dirname(target))
            try:
                tar.extractall(staging, members=members, filter="data")
                os.replace(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return target


def import_saved_model(path):
    """A SavedModel directory as a native Keras model (or a TFSMLayer when we cannot)."""
    import keras
    import tensorflow as tf

    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"{path} holds no saved_model.pb: it is not a SavedModel directory.")
    loaded = tf.saved_model.load(path)
    variables = list(getattr(loaded, "variables", []))
    config_path = os.path.join(path, "assets", CONFIG_ASSET)
    if os.path.exists(config_path):
        with open(config_path) as f:
            config = json.load(f)
        model = keras.saving.deserialize_keras_object(config["model"])
        converted = {p: (p, v.numpy()) for p, v in zip(config["variable_paths"], variables)}
        return assign.assign(model, converted, source=path)
    arrays = {v.name.split(":")[0]: v.numpy() for v in variables}
    if bit_layout(arrays):
        return model_from_checkpoint(arrays, source=path)
    variant = efficientnet.tf_layout_variant(arrays)
    if variant is not None:
        return _efficientnet_from_tf_layout(variant, arrays, path)
    # The reusable API's __call__ returns tensors; signatures return dicts.
    endpoint = "__call__" if callable(loaded) else "serving_default"
    return keras.layers.TFSMLayer(path, call_endpoint=endpoint)


def bit_layout(arrays):
    """Whether {name: array} holds BiT weights under the published names (names only:
    the arrays are converted once, by `model_from_checkpoint`)."""
    canonical = [bit.canonical_key(name) for name in arrays]
    return None not in canonical and "root_block/standardized_conv2d/kernel" in canonical


def model_from_checkpoint(arrays, source):
    """A BiT model built to fit published weights (depth, width and head read off them)."""
    from keras_bigtransfer.models.bit.model import DEPTHS, ResNetV2

    converted, unknown = bit.convert(arrays)
    root = converted.get("root_block_standardized_conv2d/kernel")
    if root is None:
        raise ValueError(f"{source}: not a BiT checkpoint (no root_block/standardized_conv2d/kernel).")
    units = {}
    for p in converted:
        if p.startswith("block"):
            block, unit = p.split("_")[:2]
            units.setdefault(int(block[5:]), set()).add(unit)
    counts = tuple(len(units[b]) for b in sorted(units))
    depth = next((d for d, c in DEPTHS.items() if c == counts), None)
    if depth is None:
        raise ValueError(f"{source}: BiT weights with units per block {counts} match no ResNet depth.")
    width = root[1].shape[-1] // 64
    head = converted.get("head/kernel")
    model = ResNetV2(
        depth, width, include_top=head is not None,
        num_classes=int(head[1].shape[-1]) if head is not None else 1,
        pooling=None if head is not None else "avg", name=f"bit_r{depth}x{width}",
    )
    return assign.assign(model, converted, unknown, source=os.path.basename(str(source)))


def vit_from_checkpoint(arrays, source):
    """A ViT (or hybrid) built to fit published .npz weights: every size read off the arrays."""
    from keras_bigtransfer.models.vit.model import VisionTransformer

    canonical, _ = vit.canonical_arrays(arrays)
    shape = {name: np.shape(array) for name, (_, array) in canonical.items()}
    embedding = shape["embedding/kernel"]
    blocks = {name.split("/")[1] for name in shape if name.startswith("Transformer/encoderblock_")}
    units = {}
    for name in shape:
        if name.startswith("block") and "/unit" in name:
            block, unit = name.split("/")[:2]
            units.setdefault(int(block[5:]), set()).add(unit)
    resnet_layers = tuple(len(units[b]) for b in sorted(units)) or None
    attention = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/"
    head = shape.get("head/kernel")
    has_class_token = "cls" in shape
    rows = shape["Transformer/posembed_input/pos_embedding"][-2] - int(has_class_token)
    stride = embedding[0] * (2 ** (len(resnet_layers) + 1) if resnet_layers else 1)
    model = VisionTransformer(
        patch_size=embedding[0], hidden_size=embedding[-1],
        mlp_size=shape["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"][-1],
        num_heads=shape[attention + "query/kernel"][1], num_layers=len(blocks),
        resnet_layers=resnet_layers, include_top=head is not None,
        num_classes=head[-1] if head is not None else 1, pooling=None if head is not None else "avg",
        classifier="token" if has_class_token else "gap",
        representation_size=shape["pre_logits/kernel"][-1] if "pre_logits/kernel" in shape else None,
        pretrained_resolution=math.isqrt(rows) * stride, name="vit",
    )
    converted, unknown, optional = vit.convert(arrays, model, source=os.path.basename(str(source)))
    return assign.assign(model, converted, unknown, source=os.path.basename(str(source)), optional=optional)


def _efficientnet_from_tf_layout(variant, arrays, source):
    """A SavedModel with the TF reference's EfficientNet variable names (the TF Hub modules')."""
    import keras_bigtransfer
    from keras_bigtransfer.models.efficientnet.model import constructor_name

    name = constructor_name(variant)
    head = next((a for k, a in arrays.items() if k.endswith("head/dense/kernel")), None)
    model = getattr(keras_bigtransfer, name)(
        weights=None, include_top=head is not None,
        num_classes=int(head.shape[-1]) if head is not None else 1000,
        pooling=None if head is not None else "avg",
    )
    converted, unknown = efficientnet.convert_tf_checkpoint(arrays, efficientnet.model_block_names(model))
    return assign.assign(model, converted, unknown, source=os.path.basename(source))
