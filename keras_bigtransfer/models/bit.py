"""Big Transfer (BiT): ResNetV2 with GroupNorm and weight standardization.

Kolesnikov et al., "Big Transfer (BiT): General Visual Representation
Learning", ECCV 2020 (arXiv:1912.11370). The architecture follows the official
google-research/big_transfer code exactly, and every layer is named after the
key of its weights in the published checkpoints with "/" replaced by "_"
(`resnet/block1/unit01/a/group_norm/gamma` lives in layer
`block1_unit01_a_group_norm`), so the model can be read beside the file.
"""

import keras

from keras_bigtransfer.layers import ChannelsLastGroupNormalization, WSConv2D
from keras_bigtransfer.models import base

# Units per block for each depth (He et al. 2016).
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}

# Upstream dataset of each BiT flavour and the size of its head.
FLAVOURS = {
    "S": ("ILSVRC-2012", 1000),
    "M": ("ImageNet-21k", 21843),
    "L": ("JFT-300M", 18291),
}

GROUPS = 32
GN_EPSILON = 1e-5


def _group_norm_relu(x, name):
    x = ChannelsLastGroupNormalization(GROUPS, epsilon=GN_EPSILON, name=name + "_group_norm")(x)
    return keras.layers.ReLU(name=name + "_relu")(x)


def _conv(x, filters, kernel_size, name, strides=1):
    return WSConv2D(
        filters, kernel_size, strides=strides, use_bias=False, name=name + "_standardized_conv2d"
    )(x)


def bottleneck_unit(x, filters, stride, name):
    """Pre-activation bottleneck; the stride sits on the 3x3 conv, as in the official code."""
    preact = _group_norm_relu(x, name + "_a")
    shortcut = x
    if stride > 1 or x.shape[-1] != 4 * filters:
        # The projection reads the pre-activated input, not the raw one.
        shortcut = _conv(preact, 4 * filters, 1, name + "_a_proj", strides=stride)
    y = _conv(preact, filters, 1, name + "_a")
    y = _group_norm_relu(y, name + "_b")
    y = keras.layers.ZeroPadding2D(1, name=name + "_b_pad")(y)
    y = _conv(y, filters, 3, name + "_b", strides=stride)
    y = _group_norm_relu(y, name + "_c")
    y = _conv(y, 4 * filters, 1, name + "_c")
    return keras.layers.Add(name=name + "_add")([shortcut, y])


def ResNetV2(
    depth,
    width,
    *,
    include_top=True,
    num_classes=1000,
    input_shape=None,
    pooling=None,
    classifier_activation=None,
    name="resnetv2",
):
    """Build a BiT ResNetV2 of the given depth (50, 101, 152) and width factor.

    Input: float32 RGB in [0, 1] (uint8 is converted); the [-1, 1] scaling the
    BiT weights expect is the model's first layer. The classifier head is
    zero-initialized, which is how BiT transfers.
    """
    if depth not in DEPTHS:
        raise ValueError(f"{name}: depth must be one of {sorted(DEPTHS)}; got {depth!r}.")
    width = base.integer_arg(width, "width", name)
    input_shape, num_classes = base.validate_common_args(
        include_top=include_top, num_classes=num_classes, input_shape=input_shape,
        pooling=pooling, name=name,
    )
    inputs = base.image_inputs(input_shape)
    images = base.input_contract(inputs)
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus_one_one")(images)

    # Root: pad 3, 7x7/2 conv, zero-pad 1, 3x3/2 max-pool (zeros, not -inf).
    x = keras.layers.ZeroPadding2D(3, name="root_block_pad")(x)
    x = _conv(x, 64 * width, 7, "root_block", strides=2)
    x = keras.layers.ZeroPadding2D(1, name="root_block_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="root_block_pool")(x)

    for block, units in enumerate(DEPTHS[depth], start=1):
        filters = 64 * width * 2 ** (block - 1)
        for unit in range(1, units + 1):
            stride = 2 if (unit == 1 and block > 1) else 1
            x = bottleneck_unit(x, filters, stride, f"block{block}_unit{unit:02d}")

    x = ChannelsLastGroupNormalization(GROUPS, epsilon=GN_EPSILON, name="group_norm")(x)
    x = keras.layers.ReLU(name="pre_head_relu")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(
            num_classes, kernel_initializer="zeros", activation=classifier_activation,
            name=base.HEAD_LAYER,
        )(x)
    else:
        x = base.pool_features(x, pooling)
    return base.ImageModel(inputs, x, name=name)


def _bit_constructor(flavour, depth, width):
    architecture = f"R{depth}x{width}"
    upstream, upstream_classes = FLAVOURS[flavour]
    published = f"BiT-{flavour}-{architecture}"
    default_name = published.lower().replace("-", "_")

    default_weights = None if flavour == "L" else default_name

    def constructor(
        *,
        weights=default_weights,
        include_top=True,
        num_classes=upstream_classes,
        input_shape=None,
        pooling=None,
        classifier_activation=None,
        name=default_name,
    ):
        if flavour == "L" and weights is not None:
            raise ValueError(
                f"{published} weights were never released (BiT-L was trained on the "
                "private JFT-300M dataset); build the architecture with weights=None, "
                f"or use BiT-M-{architecture} (ImageNet-21k) weights."
            )
        model = ResNetV2(
            depth, width, include_top=include_top, num_classes=num_classes,
            input_shape=input_shape, pooling=pooling,
            classifier_activation=classifier_activation, name=name,
        )
        if weights is not None:
            from keras_bigtransfer.hub import weights as hub_weights

            hub_weights.load_weights(model, weights, family="bit", architecture=architecture)
        return model

    constructor.__name__ = constructor.__qualname__ = published.replace("-", "_")
    constructor.__doc__ = f"""{published}: ResNet-{depth} with width x{width}, pretrained on {upstream}.

    Args:
        weights: a catalogue tag (default {default_weights!r}, the published
            {upstream} checkpoint, downloaded and verified on first use), None
            (random init), or a path to a published BiT checkpoint (.npz or TF2 .h5).
        include_top: add global pooling and a {upstream_classes}-way (or
            `num_classes`) linear head. A head whose size differs from the
            checkpoint's is zero-initialized and the backbone loaded.
        num_classes: head size; defaults to the upstream {upstream_classes} classes.
        input_shape: (height, width, 3); default (None, None, 3), any resolution.
        pooling: "avg", "max" or None, when include_top=False.
        classifier_activation: None returns logits.
        name: model name.

    Returns:
        A Keras model taking float32 RGB images in [0, 1].
    """
    return constructor


BiT_S_R50x1 = _bit_constructor("S", 50, 1)
BiT_S_R50x3 = _bit_constructor("S", 50, 3)
BiT_S_R101x1 = _bit_constructor("S", 101, 1)
BiT_S_R101x3 = _bit_constructor("S", 101, 3)
BiT_S_R152x2 = _bit_constructor("S", 152, 2)
BiT_S_R152x4 = _bit_constructor("S", 152, 4)
BiT_M_R50x1 = _bit_constructor("M", 50, 1)
BiT_M_R50x3 = _bit_constructor("M", 50, 3)
BiT_M_R101x1 = _bit_constructor("M", 101, 1)
BiT_M_R101x3 = _bit_constructor("M", 101, 3)
BiT_M_R152x2 = _bit_constructor("M", 152, 2)
BiT_M_R152x4 = _bit_constructor("M", 152, 4)
BiT_L_R152x4 = _bit_constructor("L", 152, 4)

__all__ = [n for n in dir() if n.startswith("BiT_")] + ["ResNetV2", "bottleneck_unit"]
