"""Big Transfer (BiT): ResNetV2 with GroupNorm and weight standardization.

Kolesnikov et al., "Big Transfer (BiT): General Visual Representation
Learning", ECCV 2020 (arXiv:1912.11370). The architecture follows the official
google-research/big_transfer code exactly, and every layer is named after the
key of its weights in the published checkpoints with "/" replaced by "_"
(`resnet/block1/unit01/a/group_norm/gamma` lives in layer
`block1_unit01_a_group_norm`), so the model can be read beside the file.
"""

import keras

from keras_bigtransfer.layers import ImageGroupNormalization, StochasticDepth, WSConv2D
from keras_bigtransfer.models import base
from keras_bigtransfer.models.bit.config import DEPTHS

GROUPS = 32
GN_EPSILON = 1e-5


def _group_norm(name):
    # Convs, padding and pooling follow keras.config.image_data_format(); the norm's axis too.
    return ImageGroupNormalization(GROUPS, axis=base.channel_axis(), epsilon=GN_EPSILON, name=name)


def _group_norm_relu(x, name):
    x = _group_norm(name + "_group_norm")(x)
    return keras.layers.ReLU(name=name + "_relu")(x)


def _conv(x, filters, kernel_size, name, strides=1):
    return WSConv2D(
        filters, kernel_size, strides=strides, use_bias=False, name=name + "_standardized_conv2d"
    )(x)


def bottleneck_unit(x, filters, stride, name, drop_path_rate=0.0):
    """Pre-activation bottleneck; the stride sits on the 3x3 conv, as in the official code."""
    preact = _group_norm_relu(x, name + "_a")
    shortcut = x
    if stride > 1 or x.shape[base.channel_axis()] != 4 * filters:
        # The projection reads the pre-activated input, not the raw one.
        shortcut = _conv(preact, 4 * filters, 1, name + "_a_proj", strides=stride)
    y = _conv(preact, filters, 1, name + "_a")
    y = _group_norm_relu(y, name + "_b")
    y = keras.layers.ZeroPadding2D(1, name=name + "_b_pad")(y)
    y = _conv(y, filters, 3, name + "_b", strides=stride)
    y = _group_norm_relu(y, name + "_c")
    y = _conv(y, 4 * filters, 1, name + "_c")
    if drop_path_rate > 0:  # stochastic depth on the residual branch (timm's drop_path_rate)
        return StochasticDepth(drop_path_rate, name=name + "_add")([shortcut, y])
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
    in_chans=3,
    global_pool="avg",
    drop_rate=0.0,
    drop_path_rate=0.0,
):
    """Build a BiT ResNetV2 of the given depth (50, 101, 152) and width factor.

    Input: float32 RGB in [0, 1] (uint8 is converted); the [-1, 1] scaling the
    BiT weights expect is the model's first layer. The classifier head is
    zero-initialized, which is how BiT transfers. timm's options: `in_chans`, `global_pool`
    ("avg", "max"), `drop_rate` (dropout before the head), `drop_path_rate` (stochastic depth,
    rising linearly over the units to this rate, as timm's resnetv2); `num_classes=0` gives
    the pooled features.
    """
    if depth not in DEPTHS:
        raise ValueError(f"{name}: depth must be one of {sorted(DEPTHS)}; got {depth!r}.")
    width = base.integer_arg(width, "width", name)
    input_shape, num_classes = base.validate_common_args(
        include_top=include_top, num_classes=num_classes, input_shape=input_shape,
        pooling=pooling, name=name, in_chans=in_chans,
    )
    inputs = base.image_inputs(input_shape)
    images = base.input_contract(inputs)
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus_one_one")(images)

    # Root: pad 3, 7x7/2 conv, zero-pad 1, 3x3/2 max-pool (zeros, not -inf).
    x = keras.layers.ZeroPadding2D(3, name="root_block_pad")(x)
    x = _conv(x, 64 * width, 7, "root_block", strides=2)
    x = keras.layers.ZeroPadding2D(1, name="root_block_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="root_block_pool")(x)

    total, index = sum(DEPTHS[depth]), 0
    for block, units in enumerate(DEPTHS[depth], start=1):
        filters = 64 * width * 2 ** (block - 1)
        for unit in range(1, units + 1):
            stride = 2 if (unit == 1 and block > 1) else 1
            x = bottleneck_unit(x, filters, stride, f"block{block}_unit{unit:02d}",
                                drop_path_rate=drop_path_rate * index / max(total - 1, 1))
            index += 1

    x = _group_norm("group_norm")(x)
    x = keras.layers.ReLU(name="pre_head_relu")(x)
    spec = dict(features="pre_head_relu", first_conv="root_block_standardized_conv2d")
    if include_top:
        x, spec = base.classifier_head(
            x, num_classes=num_classes, global_pool=global_pool, drop_rate=drop_rate,
            classifier_activation=classifier_activation, kernel_initializer="zeros", spec=spec, name=name)
    else:  # keras.applications' headless model
        x = base.pool_features(x, pooling)
        spec = base.describe_head(
            spec, global_pool=pooling or "", drop_rate=drop_rate, num_prefix_tokens=None,
            classifier_activation=classifier_activation, kernel_initializer="zeros", pre_logits=None,
            head_layers=["pool"] if pooling else [])
    return base.ImageModel(inputs, x, name=name, head_spec=spec)


def build(config, *, weights_entry=None, include_top=True, num_classes=None, input_shape=None,
          pooling=None, classifier_activation=None, name=None, in_chans=3, global_pool="avg",
          dropout_rate=0.0, drop_path_rate=0.0):
    """The family's builder for the constructor factory: the ResNetV2 of a `BiTConfig`."""
    return ResNetV2(
        config.depth, config.width, include_top=include_top, num_classes=num_classes,
        input_shape=input_shape, pooling=pooling, classifier_activation=classifier_activation,
        name=name, in_chans=in_chans, global_pool=global_pool, drop_rate=dropout_rate,
        drop_path_rate=drop_path_rate,
    )


# Model-parallel layout (`registry.Family.layout_rules`, keras_bigtransfer.distribution):
# the (kh, kw, in, out) kernels of the two widest stages, split over their output channels.
LAYOUT_RULES = (
    (r".*block[34]_unit\d+_\w+_standardized_conv2d/kernel", (None, None, None, "model")),
)


def owns(model):
    """Whether a built model is a BiT ResNetV2 (its root conv is named after the checkpoints')."""
    return any(layer.name == "root_block_standardized_conv2d" for layer in model.layers)


__all__ = ["DEPTHS", "ResNetV2", "bottleneck_unit", "build"]
