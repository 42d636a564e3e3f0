"""One strict loader for every converter: checks everything a checkpoint holds, reports
every missing, unused, mis-shaped and mis-typed key at once, then assigns."""

import logging
import warnings

import numpy as np

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.weights.lazy import row_blocks, stored_dtype

HEAD_LAYER = "head"  # models.base.HEAD_LAYER; the weights layer imports no model code

log = logging.getLogger(__name__)

# Arrays larger than this are read and copied into their variable in slices of about this
# size. A whole-array `assign` converts the array to a tensor first (on TensorFlow, two
# transient copies), which for BiT-M-R101x3's 21843-way head alone is 1 GB beside the model.
ASSIGN_CHUNK_BYTES = 64 * 2**20


def assign_array(variable, array):
    """`variable.assign(array)`, in slices along the first axis when the array is large.

    A `LazyArray` that streams is read slice by slice too, so the whole array is
    never in memory beside the variable.
    """
    target = variable.value
    nbytes = int(np.prod(array.shape)) * np.dtype(variable.dtype).itemsize
    if nbytes <= ASSIGN_CHUNK_BYTES or len(array.shape) == 0 or not _slice_assignable(target):
        variable.assign(np.asarray(array, dtype=variable.dtype))
        return
    rows = max(1, ASSIGN_CHUNK_BYTES // (nbytes // array.shape[0]))
    import tensorflow as tf

    for start, block in row_blocks(array, rows):
        # Not `target[a:b].assign(...)`: that reads the variable first, and the held read
        # makes TensorFlow copy the whole buffer before writing (measured: +1x of the array).
        rows_here = tf.range(start, start + block.shape[0])
        target.scatter_update(tf.IndexedSlices(np.asarray(block, dtype=variable.dtype), rows_here))


def _slice_assignable(target):
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(target, tf.Variable)


def _listing(title, lines):
    # Every line, not a sample: one run should tell the whole story.
    return f"{title} ({len(lines)}):\n" + "\n".join("  " + line for line in lines)


def _kind_fits(stored, variable_dtype):
    """Whether a stored dtype can be a variable's value: floats only for floats, and so on."""
    wanted = np.dtype(variable_dtype).kind
    if wanted in "iu":
        return stored.kind in "iu"
    return stored.kind == wanted  # "f" for float variables: no ints, bools or complex


def _classes(shape):
    return shape[-1] if len(shape) else "?"


def _check_values(pairs, source):
    """Read every array once before any variable changes: a short, corrupt or non-finite
    array then leaves the model as it was (reads stream, so memory stays one slice)."""
    non_finite = []
    for key, array, variable in pairs:
        row_bytes = int(np.prod(array.shape[1:])) * np.dtype(variable.dtype).itemsize
        rows = max(1, ASSIGN_CHUNK_BYTES // max(1, row_bytes))
        bad = 0
        for _, block in row_blocks(array, rows):
            block = np.asarray(block)
            if block.dtype.kind in "fc":
                bad += int(block.size - np.count_nonzero(np.isfinite(block)))
        if bad:
            non_finite.append(f"{key}: {bad} of {int(np.prod(array.shape))} values are NaN or infinite")
    if non_finite:
        raise WeightsError(f"{source}: the checkpoint holds values no trained weight has:\n"
                           + _listing("arrays with NaN or Inf", sorted(non_finite)))


def assign(model, converted, unknown_keys=(), *, source, head_layer=HEAD_LAYER, strict=True,
           optional=(), stored=None, new_head=False):
    """Copy converted arrays into `model`, all or nothing.

    Every key, shape and stored dtype is checked first, then every array is read and
    checked (complete, finite), and only then are variables assigned: a checkpoint that
    fails leaves the model as it was.

    Args:
        model: a Keras model.
        converted: {variable path in the model: (checkpoint key, array)}.
        unknown_keys: checkpoint keys the format's key map does not know.
        source: the checkpoint's name, for error messages.
        head_layer: the classifier layer. Its weights are optional: absent from
            the model (include_top=False) they are skipped; absent from the
            checkpoint, or of a different class count, the head is zero-initialized,
            everything else loaded (this is how BiT transfers) and a warning says so.
        strict: raise `WeightsError` on any missing, unused or mis-shaped key.
        optional: model variables the checkpoint may lack; they keep their
            initialization (a ViT's register tokens, which no published ViT has).
        stored: {checkpoint key: array as read}, to check the dtypes the file stored
            (converters cast to float32); default: the converted arrays' own.
        new_head: the model's class count was asked for (a constructor's `num_classes`): a
            checkpoint head of another class count is replaced quietly (logged at INFO).

    Raises:
        WeightsError: listing every problem at once. Integer, bool or complex arrays
            for float variables and NaN or Inf values are refused even with strict=False.
    """
    variables = {v.path: v for v in model.weights}
    head_prefix = head_layer + "/"
    head_vars = {p: v for p, v in variables.items() if p.startswith(head_prefix)}
    head_ckpt = {p: kv for p, kv in converted.items() if p.startswith(head_prefix)}
    body = {p: kv for p, kv in converted.items() if not p.startswith(head_prefix)}

    zero_head = False
    if head_vars:
        fits = set(head_ckpt) == set(head_vars) and all(
            tuple(head_vars[p].shape) == head_ckpt[p][1].shape for p in head_vars
        )
        if fits:
            body.update(head_ckpt)
        else:
            zero_head = True
            ours = _classes(next(iter(head_vars.values())).shape)
            theirs = {_classes(array.shape) for _, array in head_ckpt.values()}
            if head_ckpt:
                message = (f"{source}: the checkpoint's head ({', '.join(map(str, sorted(theirs)))} "
                           f"classes) is not loaded: it does not fit the model's {ours}-class head")
                if theirs == {ours}:  # same classes, other input width: say which shapes
                    message += " ({} vs {})".format(
                        {k: tuple(v[1].shape) for k, v in sorted(head_ckpt.items())},
                        {k: tuple(v.shape) for k, v in sorted(head_vars.items())},
                    )
            else:
                message = f"{source} has no classifier head: the model's {ours}-class head"
            if new_head and head_ckpt and theirs != {ours}:
                # The head asked for (num_classes=10 on ImageNet weights): timm logs nothing.
                log.info("%s, which starts at zero.", message)
            else:
                advice = (" Fine-tune it, or pass the checkpoint's class count as num_classes to keep "
                          "its head." if head_ckpt and theirs != {ours} else " Fine-tune it.")
                warnings.warn(f"{message}, which starts at zero.{advice}", stacklevel=2)
    elif head_ckpt:
        log.info("%s: the checkpoint's head is not loaded (the model has no head).", source)

    expected = {p: v for p, v in variables.items() if not (zero_head and p in head_vars)}
    missing = sorted(p for p in expected if p not in body and p not in optional)
    kept = sorted(p for p in optional if p in expected and p not in body)
    if kept:
        log.warning("%s: %s not in the checkpoint; left at initialization.", source, ", ".join(kept))
    unused = sorted(list(unknown_keys) + [kv[0] for p, kv in body.items() if p not in expected])
    mismatched = sorted(
        f"{key}: checkpoint {array.shape} vs model {tuple(expected[p].shape)} ({p})"
        for p, (key, array) in body.items()
        if p in expected and array.shape != tuple(expected[p].shape)
    )
    stored = stored or {}
    wrong_type = sorted(
        f"{key}: stored {dtype} for model variable {p} ({expected[p].dtype})"
        for p, (key, array) in body.items()
        if p in expected
        for dtype in [stored_dtype(stored.get(key, array))]
        if not _kind_fits(dtype, expected[p].dtype)
    )
    problems = []
    if wrong_type:
        problems.append(_listing("arrays of the wrong type", wrong_type))
    if mismatched:
        problems.append(_listing("shape mismatches", mismatched))
    if missing:
        problems.append(_listing("model variables the checkpoint lacks", missing))
    if unused:
        problems.append(_listing("checkpoint keys the model does not use", unused))
    if wrong_type or (problems and strict):
        raise WeightsError(
            f"{source} does not fit {model.name}:\n" + "\n".join(problems)
        )

    pairs = [(body[p][0], body[p][1], v) for p, v in expected.items()
             if p in body and body[p][1].shape == tuple(v.shape)]
    _check_values(pairs, source)
    for _, array, variable in pairs:
        assign_array(variable, array)
    if zero_head:
        for variable in head_vars.values():
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    return model
