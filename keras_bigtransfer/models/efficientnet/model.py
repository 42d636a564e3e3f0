"""EfficientNet B0-B7 and EfficientNet-Lite0-4 by compound scaling.

Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019
(arXiv:1905.11946); Lite: tensorflow/tpu `models/official/efficientnet/lite`.
One builder reads the B0 block table and scales it: width multiplies every
stage's filters (rounded to multiples of 8), depth multiplies its repeats
(rounded up). Layer names are keras.applications' (`block2a_expand_conv`,
`top_bn`), so the published Keras h5 files map by name; the head is `head`.

Every conv uses TF "same" padding, as the TF reference: the published
checkpoints then match at any input size, odd and dynamic ones included.
"""

import math

import keras

from keras_bigtransfer.models import base

# (kernel, repeats, filters in, filters out, expand ratio, stride) of B0's seven stages.
BLOCKS = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
SE_RATIO = 0.25

# ImageNet statistics for [0, 1] inputs (B-series); Lite uses (255x - 127) / 128.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CONV_INIT = keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")
DENSE_INIT = keras.initializers.VarianceScaling(1.0 / 3.0, "fan_out", "uniform")


def round_filters(filters, width, divisor=8):
    """Scale and round to a multiple of `divisor`, never more than 10% down."""
    filters *= width
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * filters:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats, depth):
    return int(math.ceil(depth * repeats))


def stage_plan(width, depth, lite=False):
    """The scaled stages: [(kernel, repeats, filters in, filters out, expand, stride)].

    Lite keeps the first and last stages' repeats unscaled (`fix_head_stem`).
    """
    plan = []
    for i, (k, r, f_in, f_out, e, s) in enumerate(BLOCKS):
        fixed = lite and i in (0, len(BLOCKS) - 1)
        plan.append((k, r if fixed else round_repeats(r, depth),
                     round_filters(f_in, width), round_filters(f_out, width), e, s))
    return plan


def block_names(width, depth, lite=False):
    """`block1a`, `block2a`, `block2b`, ... in order: index i is `_blocks.i` of a PyTorch port."""
    return [f"block{i + 1}{chr(97 + j)}" for i, stage in enumerate(stage_plan(width, depth, lite))
            for j in range(stage[1])]


def _bn(name):
    return keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=name)


def mbconv(x, filters_in, filters_out, kernel, stride, expand, se_ratio, activation, drop_rate, name):
    """Mobile inverted bottleneck: expand, depthwise, squeeze-excite, project, (drop) add."""
    inputs = x
    filters = filters_in * expand
    if expand != 1:
        x = keras.layers.Conv2D(filters, 1, padding="same", use_bias=False,
                                kernel_initializer=CONV_INIT, name=name + "expand_conv")(x)
        x = _bn(name + "expand_bn")(x)
        x = keras.layers.Activation(activation, name=name + "expand_activation")(x)
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                     depthwise_initializer=CONV_INIT, name=name + "dwconv")(x)
    x = _bn(name + "bn")(x)
    x = keras.layers.Activation(activation, name=name + "activation")(x)
    if se_ratio:
        # Squeezed width comes from the block's input width, not the expanded one.
        filters_se = max(1, int(filters_in * se_ratio))
        se = keras.layers.GlobalAveragePooling2D(keepdims=True, name=name + "se_squeeze")(x)
        se = keras.layers.Conv2D(filters_se, 1, padding="same", activation=activation,
                                 kernel_initializer=CONV_INIT, name=name + "se_reduce")(se)
        se = keras.layers.Conv2D(filters, 1, padding="same", activation="sigmoid",
                                 kernel_initializer=CONV_INIT, name=name + "se_expand")(se)
        x = keras.layers.Multiply(name=name + "se_excite")([x, se])
    x = keras.layers.Conv2D(filters_out, 1, padding="same", use_bias=False,
                            kernel_initializer=CONV_INIT, name=name + "project_conv")(x)
    x = _bn(name + "project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # Stochastic depth: drop the whole residual branch per example.
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=name + "drop")(x)
        x = keras.layers.Add(name=name + "add")([x, inputs])
    return x


def EfficientNet(
    width,
    depth,
    *,
    lite=False,
    dropout_rate=0.2,
    drop_connect_rate=0.2,
    include_top=True,
    num_classes=1000,
    input_shape=None,
    pooling=None,
    classifier_activation=None,
    name="efficientnet",
    in_chans=3,
    global_pool="avg",
):
    """Build an EfficientNet (or -Lite) from the B0 table scaled by `width` and `depth`.

    Input: float32 RGB in [0, 1]; the normalization the weights expect (ImageNet
    mean/std for B, [-1, 1] for Lite) is a layer inside. Stochastic depth of block i (from 0)
    is `drop_connect_rate * i / blocks`, as timm's `drop_path_rate`. `in_chans` other than 3
    adapts the normalization's mean/std (`base.adapt_channels`); `global_pool` ("avg", "max")
    is the head's pooling; `num_classes=0` gives the pooled features (timm's headless model).
    """
    input_shape, num_classes = base.validate_common_args(
        include_top=include_top, num_classes=num_classes, input_shape=input_shape,
        pooling=pooling, name=name, in_chans=in_chans,
    )
    activation = "relu6" if lite else "swish"
    se_ratio = 0.0 if lite else SE_RATIO
    stem_filters = 32 if lite else round_filters(32, width)
    head_filters = 1280 if lite else round_filters(1280, width)

    inputs = base.image_inputs(input_shape)
    images = base.input_contract(inputs)
    if lite:
        x = keras.layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="to_minus_one_one")(images)
    else:
        x = keras.layers.Normalization(
            mean=base.adapt_channels(IMAGENET_MEAN, in_chans),
            variance=[s * s for s in base.adapt_channels(IMAGENET_STD, in_chans)], name="normalization")(images)

    x = keras.layers.Conv2D(stem_filters, 3, strides=2, padding="same", use_bias=False,
                            kernel_initializer=CONV_INIT, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = keras.layers.Activation(activation, name="stem_activation")(x)

    plan = stage_plan(width, depth, lite)
    total = float(sum(stage[1] for stage in plan))
    index = 0
    for i, (kernel, repeats, f_in, f_out, expand, stride) in enumerate(plan):
        if i == 0 and lite:
            f_in = stem_filters
        for j in range(repeats):
            x = mbconv(
                x, f_in if j == 0 else f_out, f_out, kernel, stride if j == 0 else 1, expand,
                se_ratio, activation, drop_connect_rate * index / total,
                name=f"block{i + 1}{chr(97 + j)}_",
            )
            index += 1

    x = keras.layers.Conv2D(head_filters, 1, padding="same", use_bias=False,
                            kernel_initializer=CONV_INIT, name="top_conv")(x)
    x = _bn("top_bn")(x)
    x = keras.layers.Activation(activation, name="top_activation")(x)
    spec = dict(features="top_activation", first_conv="stem_conv")
    if include_top:
        x, spec = base.classifier_head(
            x, num_classes=num_classes, global_pool=global_pool, drop_rate=dropout_rate,
            classifier_activation=classifier_activation, kernel_initializer=DENSE_INIT, spec=spec, name=name)
    else:  # keras.applications' headless model
        x = base.pool_features(x, pooling)
        spec = base.describe_head(
            spec, global_pool=pooling or "", drop_rate=dropout_rate, num_prefix_tokens=None,
            classifier_activation=classifier_activation, kernel_initializer=DENSE_INIT, pre_logits=None,
            head_layers=["pool"] if pooling else [])
    return base.ImageModel(inputs, x, name=name, head_spec=spec)


def build(config, *, weights_entry=None, include_top=True, num_classes=None, input_shape=None,
          pooling=None, classifier_activation=None, name=None, drop_connect_rate=0.2,
          dropout_rate=None, in_chans=3, global_pool="avg"):
    """The family's builder for the constructor factory: the EfficientNet of a config row."""
    return EfficientNet(
        config.width, config.depth, lite=config.lite,
        dropout_rate=config.dropout if dropout_rate is None else dropout_rate,
        drop_connect_rate=drop_connect_rate, include_top=include_top, num_classes=num_classes,
        input_shape=input_shape, pooling=pooling, classifier_activation=classifier_activation,
        name=name, in_chans=in_chans, global_pool=global_pool,
    )


def owns(model):
    """Whether a built model is an EfficientNet (stem and top named as keras.applications')."""
    names = {layer.name for layer in model.layers}
    return "stem_conv" in names and "top_conv" in names


__all__ = ["EfficientNet", "block_names", "build", "mbconv", "round_filters", "round_repeats", "stage_plan"]
