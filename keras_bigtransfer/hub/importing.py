"""`hub.load`: TF Hub handles, SavedModels and catalogue tags as native Keras models."""

import hashlib
import json
import os
import tarfile

import filelock
import numpy as np

from keras_bigtransfer.atomic import atomic_directory
from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.hub import assign, catalogue, checkpoint, download
from keras_bigtransfer.hub.convert import bit, efficientnet, vit
from keras_bigtransfer.hub.publishing import CONFIG_ASSET


def load(handle_or_path, *, position_grid=None):
    """Load a model as a native, editable Keras model where we implement its family.

    Args:
        handle_or_path: a catalogue tag ("bit_m_r50x1"), a SavedModel directory, a
            `.tar.gz` TF Hub module, or an http(s) URL of one (tfhub.dev handles get
            `?tf-hub-format=compressed`, as TF Hub's own resolver does). Also a
            published checkpoint file (.npz / .h5, architecture read off the weights)
            or a `.keras` file.
        position_grid: for a ViT checkpoint whose position grid is not square, its
            (rows, cols): the model is then built for images of that grid.

    Returns:
        For our own exports, SavedModels in the published TF Hub BiT layout and
        checkpoints, a keras_bigtransfer model with the weights mapped in. For any
        other SavedModel, a `keras.layers.TFSMLayer` wrapping it. A catalogue tag
        without a head (`*_notop`) gives the backbone with average pooling.

    Raises:
        WeightsError: a checkpoint or archive that cannot be read (naming the file)
            or whose weights do not fit.
    """
    handle = os.fspath(handle_or_path)
    if os.path.isdir(handle):
        return import_saved_model(handle)
    if os.path.isfile(handle):
        kind = checkpoint.sniff_kind(handle)
        if kind == "keras":
            import keras

            with checkpoint.reading(handle, "is not a loadable .keras file"):
                return keras.saving.load_model(handle)
        if kind in ("npz", "h5"):
            with checkpoint.reading(handle):
                # Lazy: names and shapes are checked (and the model built) before data is read.
                arrays = checkpoint.read_arrays(handle, lazy=True)
                if vit.detect_prefix(arrays) is not None:
                    return vit_from_checkpoint(arrays, source=handle, position_grid=position_grid)
                return model_from_checkpoint(arrays, source=handle)
        return import_saved_model(extract_module(handle))
    if handle.startswith(("http://", "https://")):
        return import_saved_model(extract_module(_fetch_module(handle)))
    entry = catalogue.find(handle)
    if entry is not None:
        import keras_bigtransfer

        constructor = getattr(keras_bigtransfer, entry.constructor)
        return constructor(weights=entry.tag, **constructor_kwargs(entry))
    raise ValueError(
        f"{handle!r} is not a SavedModel directory, a .tar.gz module, an http(s) URL or a "
        "catalogue tag (keras_bigtransfer.hub.list_models())."
    )


def constructor_kwargs(entry):
    """The head arguments that fit a catalogue entry: none for a `_notop` file (num_classes 0)."""
    if entry.num_classes == 0:
        return {"include_top": False, "pooling": "avg"}
    return {"num_classes": entry.num_classes}


def _fetch_module(url):
    if "tfhub.dev/" in url and "tf-hub-format" not in url:
        url += ("&" if "?" in url else "?") + "tf-hub-format=compressed"
    key = hashlib.sha1(url.encode()).hexdigest()
    return download.fetch(url, f"modules/{key}.tar.gz", use_mirror=False)


def _check_member(member, archive):
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise WeightsError(f"{archive}: refusing absolute path {name!r} in the archive.")
    if ".." in parts:
        raise WeightsError(f"{archive}: refusing path {name!r} that leaves the archive root.")
    if member.issym() or member.islnk():
        raise WeightsError(f"{archive}: refusing link {name!r} -> {member.linkname!r}.")
    if not (member.isfile() or member.isdir()):
        raise WeightsError(f"{archive}: refusing {name!r}, which is not a regular file or directory.")


# Extraction limits (each overridable by argument or environment variable). Generous for
# the largest published modules (BiT-M-R152x4 about 4.5 GB, a handful of files), and a
# ratio only a decompression bomb reaches: weights compress about 1.1:1.
MAX_EXTRACT_BYTES = 32 * 2**30
MAX_EXTRACT_FILES = 10_000
MAX_EXTRACT_RATIO = 100
_RATIO_FLOOR = 256 * 2**20  # archives expanding to less are never refused for their ratio


def _limit(value, variable, default):
    if value is not None:
        return value
    raw = os.environ.get(variable)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{variable} must be an integer; got {raw!r}.") from None


def _scan_members(tar, archive, max_bytes, max_files, max_ratio):
    """The members of an open archive, refused (before anything is written) as soon as
    one is unsafe or the count, the total size or the expansion ratio passes its limit."""
    archive_bytes = max(1, os.path.getsize(archive))
    members, total = [], 0
    override = ("pass {arg}= to extract_module or set {env} if the archive is trusted")
    for member in tar:
        _check_member(member, archive)
        members.append(member)
        total += member.size if member.isfile() else 0
        if len(members) > max_files:
            raise WeightsError(
                f"{archive}: more than {max_files} files in the archive; "
                + override.format(arg="max_files", env="KERAS_BIGTRANSFER_MAX_EXTRACT_FILES") + "."
            )
        if total > max_bytes:
            raise WeightsError(
                f"{archive}: expands to more than {max_bytes} bytes; "
                + override.format(arg="max_bytes", env="KERAS_BIGTRANSFER_MAX_EXTRACT_BYTES") + "."
            )
        if total > _RATIO_FLOOR and total > max_ratio * archive_bytes:
            raise WeightsError(
                f"{archive}: {archive_bytes} bytes expand to more than {total} bytes (over "
                f"{max_ratio}:1, a decompression bomb?); "
                + override.format(arg="max_ratio", env="KERAS_BIGTRANSFER_MAX_EXTRACT_RATIO") + "."
            )
    return members


def extract_module(archive, *, max_bytes=None, max_files=None, max_ratio=None):
    """Extract a .tar.gz module into the cache (once, atomically); return the directory.

    Absolute paths, `..`, links and device files are refused before anything is written,
    and so are archives over the limits: `max_bytes` extracted (default 32 GiB,
    `KERAS_BIGTRANSFER_MAX_EXTRACT_BYTES`), `max_files` members (default 10,000,
    `KERAS_BIGTRANSFER_MAX_EXTRACT_FILES`), and, beyond 256 MiB extracted, `max_ratio`
    times the archive's size (default 100, `KERAS_BIGTRANSFER_MAX_EXTRACT_RATIO`).

    Raises:
        WeightsError: the archive is corrupt, unsafe or over a limit (naming it).
    """
    archive = os.path.abspath(archive)
    max_bytes = _limit(max_bytes, "KERAS_BIGTRANSFER_MAX_EXTRACT_BYTES", MAX_EXTRACT_BYTES)
    max_files = _limit(max_files, "KERAS_BIGTRANSFER_MAX_EXTRACT_FILES", MAX_EXTRACT_FILES)
    max_ratio = _limit(max_ratio, "KERAS_BIGTRANSFER_MAX_EXTRACT_RATIO", MAX_EXTRACT_RATIO)
    key = download.file_digest(archive, "sha256")[:20]
    target = os.path.join(download.cache_dir(), "modules", key)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with filelock.FileLock(target + ".lock"):
        if os.path.isdir(target):
            return target
        with checkpoint.reading(archive, "is not a readable .tar.gz module"):
            with tarfile.open(archive, "r:*") as tar:
                members = _scan_members(tar, archive, max_bytes, max_files, max_ratio)
                with atomic_directory(target) as staging:
                    tar.extractall(staging, members=members, filter="data")
    return target


def import_saved_model(path):
    """A SavedModel directory as a native Keras model (or a TFSMLayer when we cannot)."""
    import keras
    import tensorflow as tf

    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise WeightsError(f"{path} holds no saved_model.pb: it is not a SavedModel directory.")
    with checkpoint.reading(path, "is not a loadable SavedModel"):
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
    from keras_bigtransfer.models.bit import DEPTHS, ResNetV2

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
    return assign.assign(model, converted, unknown, source=os.path.basename(str(source)), stored=arrays)


def vit_from_checkpoint(arrays, source, position_grid=None):
    """A ViT (or hybrid) built to fit published .npz weights: every size read off the arrays.

    A square stored position grid gives a model of any input size pretrained at that
    grid; a non-square one needs `position_grid` (rows, cols) and gives a model built
    for images of exactly that grid.
    """
    from keras_bigtransfer.models.vit import VisionTransformer

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
    rows = shape["Transformer/posembed_input/pos_embedding"][-2]
    stride = embedding[0] * (2 ** (len(resnet_layers) + 1) if resnet_layers else 1)
    grid, _ = vit.stored_grid(rows, None, int(has_class_token), position_grid,
                              os.path.basename(str(source)))
    size = {"pretrained_resolution": grid[0] * stride}
    if grid[0] != grid[1]:
        size["input_shape"] = (grid[0] * stride, grid[1] * stride, 3)
    model = VisionTransformer(
        patch_size=embedding[0], hidden_size=embedding[-1],
        mlp_size=shape["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"][-1],
        num_heads=shape[attention + "query/kernel"][1], num_layers=len(blocks),
        resnet_layers=resnet_layers, include_top=head is not None,
        num_classes=head[-1] if head is not None else 1, pooling=None if head is not None else "avg",
        classifier="token" if has_class_token else "gap",
        representation_size=shape["pre_logits/kernel"][-1] if "pre_logits/kernel" in shape else None,
        name="vit", **size,
    )
    converted, unknown, optional = vit.convert(arrays, model, source=os.path.basename(str(source)),
                                               position_grid=position_grid)
    return assign.assign(model, converted, unknown, source=os.path.basename(str(source)),
                         optional=optional, stored=arrays)


def _efficientnet_from_tf_layout(variant, arrays, source):
    """A SavedModel with the TF reference's EfficientNet variable names (the TF Hub modules')."""
    import keras_bigtransfer
    from keras_bigtransfer.models.efficientnet import constructor_name

    name = constructor_name(variant)
    head = next((a for k, a in arrays.items() if k.endswith("head/dense/kernel")), None)
    model = getattr(keras_bigtransfer, name)(
        weights=None, include_top=head is not None,
        num_classes=int(head.shape[-1]) if head is not None else 1000,
        pooling=None if head is not None else "avg",
    )
    converted, unknown = efficientnet.convert_tf_checkpoint(arrays, efficientnet.model_block_names(model))
    return assign.assign(model, converted, unknown, source=os.path.basename(source), stored=arrays)
