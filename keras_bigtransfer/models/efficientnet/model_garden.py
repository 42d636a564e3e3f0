"""EfficientNet modules exported from the TensorFlow Model Garden (tensorflow/models).

The TF2 TF Hub modules `tensorflow/efficientnet/b0..b7/{feature-vector,classification}` are
exports of `official/legacy/image_classification/efficientnet/efficientnet_model.py`, whose
layers are named `stem_conv2d`, `stem_bn`, `stack_<i>/block_<j>/{expand,depthwise,se_reduce,
se_expand,project}_{conv2d,bn}`, `top_conv2d`, `top_bn` and `logits` (tensorflow/hub#550,
tensorflow/models#9054). `to_tf_reference` renames them to the tensorflow/tpu checkpoint
names (`efficientnet-bN/stem/conv2d/kernel`, `blocks_<k>/...`, `head/dense/...`), which the
family's TF converter maps, so such a module is imported as a native model.
"""

import re

_KEY = re.compile(
    r"^(?:.*/)?(?:(?P<stem>stem|top)_(?P<sl>conv2d|bn)"
    r"|stack_(?P<i>\d+)/block_(?P<j>\d+)/(?P<part>expand|depthwise|se_reduce|se_expand|project)_(?P<bl>conv2d|bn)"
    r"|(?P<logits>logits))/(?P<weight>\w+)$"
)


def _key(name):
    return _KEY.match(name.split(":")[0])


def is_model_garden(names):
    """Whether variable names follow the Model Garden EfficientNet (a stem and blocks at least)."""
    matches = [m for m in map(_key, names) if m]
    return (any(m.group("stem") == "stem" and m.group("sl") == "conv2d" for m in matches)
            and any(m.group("i") is not None for m in matches))


def variant_of(blocks, top_filters):
    """The B-series variant ('b0' ... 'b7', 'l2') with `blocks` blocks and a top conv of
    `top_filters` channels, from the family's compound-scaling table; None when none fits."""
    from keras_bigtransfer.models.efficientnet.config import B, CONFIGS
    from keras_bigtransfer.models.efficientnet.model import scale

    for config in CONFIGS.values():
        plan = scale(config.architecture, config.width, config.depth)
        if config.architecture is B and (sum(s.repeats for s in plan.stages), plan.head) == (blocks, top_filters):
            return config.variant
    return None


def to_tf_reference(arrays, source="module"):
    """{Model Garden name: array} -> {tensorflow/tpu name: array}; unmatched names kept.

    Raises:
        ValueError: the block count and top width match no B-series variant.
    """
    matches = {name: _key(name) for name in arrays}
    blocks = sorted({(int(m.group("i")), int(m.group("j"))) for m in matches.values()
                     if m and m.group("i") is not None})
    index = {ij: k for k, ij in enumerate(blocks)}
    expanded = {(int(m.group("i")), int(m.group("j"))) for m in matches.values()
                if m and m.group("part") == "expand"}
    top = next((a for n, a in arrays.items() if matches[n] and matches[n].group("stem") == "top"
                and matches[n].group("sl") == "conv2d" and matches[n].group("weight") == "kernel"), None)
    variant = variant_of(len(blocks), int(top.shape[-1])) if top is not None else None
    if variant is None:
        raise ValueError(
            f"{source}: Model Garden EfficientNet names with {len(blocks)} blocks and a top conv of "
            f"{None if top is None else top.shape[-1]} channels match no EfficientNet-B0..B7/L2."
        )
    scope = f"efficientnet-{variant}/"
    out = {}
    for name, array in arrays.items():
        m = matches[name]
        if m is None:
            out[name] = array
            continue
        weight = m.group("weight")
        if m.group("logits"):
            out[f"{scope}head/dense/{weight}"] = array
            continue
        if m.group("stem"):
            where = "stem" if m.group("stem") == "stem" else "head"
            layer = "conv2d" if m.group("sl") == "conv2d" else "tpu_batch_normalization"
            out[f"{scope}{where}/{layer}/{weight}"] = array
            continue
        ij = (int(m.group("i")), int(m.group("j")))
        part, kind = m.group("part"), m.group("bl")
        if part in ("se_reduce", "se_expand"):
            layer = "se/conv2d" if part == "se_reduce" else "se/conv2d_1"
        elif ij in expanded:
            layer = {("expand", "conv2d"): "conv2d", ("expand", "bn"): "tpu_batch_normalization",
                     ("depthwise", "conv2d"): "depthwise_conv2d", ("depthwise", "bn"): "tpu_batch_normalization_1",
                     ("project", "conv2d"): "conv2d_1", ("project", "bn"): "tpu_batch_normalization_2"}[part, kind]
        else:
            layer = {("depthwise", "conv2d"): "depthwise_conv2d", ("depthwise", "bn"): "tpu_batch_normalization",
                     ("project", "conv2d"): "conv2d", ("project", "bn"): "tpu_batch_normalization_1"}[part, kind]
        out[f"{scope}blocks_{index[ij]}/{layer}/{weight}"] = array
    return out
