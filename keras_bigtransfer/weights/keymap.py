"""Key maps as data: rename a checkpoint's keys (and re-lay their arrays) by a table of rules.

A family's `convert.py` holds its tables (e.g. timm's names -> the published names); this
module applies them and names no family. A rule is `(pattern, target, transform)`:

- `pattern`: a regular expression matched against the whole key, with named groups;
- `target`: a `str.format` template over those groups, with two conversions:
  `{stage!n}` is the group plus one (timm counts from 0, the published files from 1), and
  `{unit!l}` a letter (`0` -> `a`; `{conv!L}` counts from 1: `1` -> `a`);
  None drops the key (e.g. BatchNorm's `num_batches_tracked`);
- `transform`: the name of an array re-layout in `TRANSFORMS`, or None.

Arrays stay lazy: a transformed `LazyArray` is read when it is assigned, one at a time.
"""

import re
import string

import numpy as np

from keras_bigtransfer.weights.checkpoint import put
from keras_bigtransfer.weights.lazy import LazyArray

TRANSFORMS = {
    # PyTorch conv (out, in, h, w) -> Keras/TF (h, w, in, out).
    "hwio": ((2, 3, 1, 0), None),
    # PyTorch depthwise (channels, 1, h, w) -> Keras DepthwiseConv2D (h, w, channels, 1).
    "hwio_depthwise": ((2, 3, 0, 1), None),
    # PyTorch Linear (out, in) -> Keras Dense (in, out).
    "transpose": ((1, 0), None),
}


class _Formatter(string.Formatter):
    def convert_field(self, value, conversion):
        if conversion == "n":
            return int(value) + 1
        if conversion == "l":
            return chr(ord("a") + int(value))
        if conversion == "L":
            return chr(ord("a") + int(value) - 1)
        return super().convert_field(value, conversion)


_FORMAT = _Formatter()


def relayout(array, transform):
    """`array` re-laid by a named transform; a `LazyArray` stays lazy."""
    if transform is None:
        return array
    axes, _ = TRANSFORMS[transform]
    shape = tuple(array.shape[a] for a in axes)
    if isinstance(array, LazyArray):
        return LazyArray(lambda: np.ascontiguousarray(np.asarray(array).transpose(axes)), shape, array.dtype)
    return np.ascontiguousarray(np.asarray(array).transpose(axes))


def compile_rules(rules):
    return tuple((re.compile(p), t, x) for p, t, x in rules)


def rename(arrays, rules):
    """Apply `rules` (the first that matches wins) to {key: array}.

    Returns ({new key: (original key, array)}, unknown keys).
    """
    compiled = rules if rules and hasattr(rules[0][0], "fullmatch") else compile_rules(rules)
    renamed, unknown = {}, []
    for key, array in arrays.items():
        for pattern, target, transform in compiled:
            match = pattern.fullmatch(key)
            if match is None:
                continue
            if target is not None:
                put(renamed, _FORMAT.format(target, **match.groupdict()), key, relayout(array, transform))
            break
        else:
            unknown.append(key)
    return renamed, unknown
