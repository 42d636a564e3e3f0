"""One strict loader for every converter: assigns arrays to a model's variables
and reports every missing, unused and mis-shaped key at once."""

import logging

import numpy as np

from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.weights.checkpoint import row_blocks
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


def assign(model, converted, unknown_keys=(), *, source, head_layer=HEAD_LAYER, strict=True,
           optional=()):
    """Copy converted arrays into `model`.

    Args:
        model: a Keras model.
        converted: {variable path in the model: (checkpoint key, array)}.
        unknown_keys: checkpoint keys the format's key map does not know.
        source: the checkpoint's name, for error messages.
        head_layer: the classifier layer. Its weights are optional: absent from
            the model (include_top=False) they are skipped; absent from the
            checkpoint, or of a different class count, the head is zero-initialized
            and everything else loaded (this is how BiT transfers).
        strict: raise `WeightsError` on any missing, unused or mis-shaped key.
        optional: model variables the checkpoint may lack; they keep their
            initialization (a ViT's register tokens, which no published ViT has).
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
            if head_ckpt:
                log.warning(
                    "%s: checkpoint head %s does not fit the model's head %s; "
                    "the head is zero-initialized (the rest is loaded).",
                    source,
                    {k: tuple(v[1].shape) for k, v in head_ckpt.items()},
                    {k: tuple(v.shape) for k, v in head_vars.items()},
                )
            else:
                log.warning("%s has no classifier head; the model's head is zero-initialized.", source)

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
    problems = []
    if mismatched:
        problems.append(_listing("shape mismatches", mismatched))
    if missing:
        problems.append(_listing("model variables the checkpoint lacks", missing))
    if unused:
        problems.append(_listing("checkpoint keys the model does not use", unused))
    if problems and strict:
        raise WeightsError(
            f"{source} does not fit {model.name}:\n" + "\n".join(problems)
        )

    for path, variable in expected.items():
        if path in body and body[path][1].shape == tuple(variable.shape):
            assign_array(variable, body[path][1])
    if zero_head:
        for variable in head_vars.values():
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    return model
