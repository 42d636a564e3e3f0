"""EfficientNet B0-B7, L2, Lite0-4 and EfficientNetV2 by scaling a block table.

Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019 (arXiv:1905.11946);
Lite: tensorflow/tpu `models/official/efficientnet/lite`; Tan & Le, "EfficientNetV2: Smaller
Models and Faster Training", ICML 2021 (arXiv:2104.00298). One builder reads a block table
(`config.Architecture`) and scales it with `scale`: width multiplies every stage's filters
(rounded to multiples of 8), depth multiplies its repeats (rounded up). Layer names are
keras.applications' (`block2a_expand_conv`, `top_bn`), so the published Keras h5 files map by
name; the head is `head`.

Every conv uses TF "same" padding, as the TF reference: the published
checkpoints then match at any input size, odd and dynamic ones included.
"""

import math
from typing import NamedTuple

import keras

from keras_bigtransfer.layers.depthwise_conv import ShiftAddDepthwiseConv2D
from keras_bigtransfer.models import base
from keras_bigtransfer.models.efficientnet.config import B, FUSED, LITE

# ImageNet statistics for [0, 1] inputs (B-series, V2 B0-B3).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The reference's random initializers, skipped when a checkpoint will overwrite them.
CONV_INIT = base.InitUnlessLoaded(keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal"))
DENSE_INIT = base.InitUnlessLoaded(keras.initializers.VarianceScaling(1.0 / 3.0, "fan_out", "uniform"))


def round_filters(filters, width, divisor=8, round_limit=0.9):
    """Scale and round to a multiple of `divisor`; add one divisor when that lost more than
    `round_limit` of the scaled value (V1's 0.9 guard; 0: never, V2's rule)."""
    filters *= width
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if rounded < round_limit * filters:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats, depth):
    return int(math.ceil(depth * repeats))


class ScaledStage(NamedTuple):
    """One stage after scaling (the first six fields in the order of the former tuples)."""

    kernel: int
    repeats: int
    filters_in: int
    filters: int
    expand: int
    stride: int
    block: str
    se_ratio: float


class Scaled(NamedTuple):
    """A block table after scaling: stem width, stages, head width, activation, input scaling."""

    stem: int
    stages: list
    head: int
    activation: str
    rescale: object


def scale(architecture, width, depth):
    """The one scaling rule: `architecture`'s table at `width` and `depth` (a `Scaled`)."""
    def filters(f):
        return round_filters(f, width, round_limit=architecture.round_limit)

    fixed = not architecture.stem_head_scaled
    stem = architecture.stem if fixed else filters(architecture.stem)
    stages, f_in = [], stem
    for s in architecture.stages:
        f_out = filters(s.filters)
        stages.append(ScaledStage(s.kernel, round_repeats(s.repeats, depth) if s.depth_scaled else s.repeats,
                                  f_in, f_out, s.expand, s.stride, s.block, s.se_ratio))
        f_in = f_out
    head = architecture.head if fixed else filters(architecture.head)
    return Scaled(stem, stages, head, architecture.activation, architecture.rescale)


def stage_plan(width, depth, lite=False, *, architecture=None):
    """The scaled stages (`ScaledStage`s) of `architecture` (default: B, or Lite with `lite`)."""
    return scale(architecture or (LITE if lite else B), width, depth).stages


def block_names(width, depth, lite=False, *, architecture=None):
    """`block1a`, `block2a`, `block2b`, ... in order: index i is `_blocks.i` of a PyTorch port."""
    return [f"block{i + 1}{chr(97 + j)}"
            for i, stage in enumerate(stage_plan(width, depth, lite, architecture=architecture))
            for j in range(stage.repeats)]


def block_output(stage, j):
    """The layer name suffix of block j's output in a stage: its residual add when it has one
    (stride 1, same width), else its projection's BN (or, fused without expansion, its activation)."""
    filters_in, stride = (stage.filters, 1) if j else (stage.filters_in, stage.stride)
    if stride == 1 and filters_in == stage.filters:
        return "add"
    return "project_activation" if stage.block == FUSED and stage.expand == 1 else "project_bn"


ZEROS, ONES = base.InitUnlessLoaded("zeros"), base.InitUnlessLoaded("ones")


def _bn(name):
    return keras.layers.BatchNormalization(
        axis=base.channel_axis(), momentum=0.99, epsilon=1e-3, beta_initializer=ZEROS, gamma_initializer=ONES,
        moving_mean_initializer=ZEROS, moving_variance_initializer=ONES, name=name)


def _conv(filters, kernel, name, stride=1):
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                               kernel_initializer=CONV_INIT, name=name)


def _squeeze_excite(x, filters_in, se_ratio, activation, name):
    # Squeezed width comes from the block's input width, not the expanded one.
    filters_se = max(1, int(filters_in * se_ratio))
    se = keras.layers.GlobalAveragePooling2D(keepdims=True, name=name + "se_squeeze")(x)
    se = keras.layers.Conv2D(filters_se, 1, padding="same", activation=activation, kernel_initializer=CONV_INIT,
                             bias_initializer=ZEROS, name=name + "se_reduce")(se)
    se = keras.layers.Conv2D(x.shape[base.channel_axis()], 1, padding="same", activation="sigmoid",
                             kernel_initializer=CONV_INIT, bias_initializer=ZEROS, name=name + "se_expand")(se)
    return keras.layers.Multiply(name=name + "se_excite")([x, se])


def _residual(x, inputs, stride, filters_in, filters_out, drop_rate, name):
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # Stochastic depth: drop the whole residual branch per example.
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=name + "drop")(x)
        x = keras.layers.Add(name=name + "add")([x, inputs])
    return x


def mbconv(x, filters_in, filters_out, kernel, stride, expand, se_ratio, activation, drop_rate, name):
    """Mobile inverted bottleneck: expand, depthwise, squeeze-excite, project, (drop) add."""
    inputs = x
    if expand != 1:
        x = _conv(filters_in * expand, 1, name + "expand_conv")(x)
        x = _bn(name + "expand_bn")(x)
        x = keras.layers.Activation(activation, name=name + "expand_activation")(x)
    # Keras' DepthwiseConv2D on every backend but JAX, where XLA:CPU's grouped conv is slow.
    x = ShiftAddDepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                depthwise_initializer=CONV_INIT, name=name + "dwconv")(x)
    x = _bn(name + "bn")(x)
    x = keras.layers.Activation(activation, name=name + "activation")(x)
    if se_ratio:
        x = _squeeze_excite(x, filters_in, se_ratio, activation, name)
    x = _conv(filters_out, 1, name + "project_conv")(x)
    x = _bn(name + "project_bn")(x)
    return _residual(x, inputs, stride, filters_in, filters_out, drop_rate, name)


def fused_mbconv(x, filters_in, filters_out, kernel, stride, expand, se_ratio, activation, drop_rate, name):
    """Fused-MBConv (EfficientNetV2): a kxk expansion conv in place of 1x1 + depthwise, then a
    1x1 projection; without expansion the kxk conv is the projection, followed by the activation
    (keras.applications `FusedMBConvBlock`, timm `EdgeResidual` / `ConvBnAct`)."""
    inputs = x
    if expand != 1:
        x = _conv(filters_in * expand, kernel, name + "expand_conv", stride)(x)
        x = _bn(name + "expand_bn")(x)
        x = keras.layers.Activation(activation, name=name + "expand_activation")(x)
    if se_ratio:
        x = _squeeze_excite(x, filters_in, se_ratio, activation, name)
    x = _conv(filters_out, 1, name + "project_conv")(x) if expand != 1 else \
        _conv(filters_out, kernel, name + "project_conv", stride)(x)
    x = _bn(name + "project_bn")(x)
    if expand == 1:
        x = keras.layers.Activation(activation, name=name + "project_activation")(x)
    return _residual(x, inputs, stride, filters_in, filters_out, drop_rate, name)


BLOCKS = {"mbconv": mbconv, "fused": fused_mbconv}


def _input_scaling(images, rescale, in_chans):
    if rescale is not None:  # Lite, V2-S..XL: [-1, 1]
        return keras.layers.Rescaling(rescale[0], offset=rescale[1], name="to_minus_one_one")(images)
    return keras.layers.Normalization(
        axis=base.channel_axis(), mean=base.adapt_channels(IMAGENET_MEAN, in_chans),
        variance=[s * s for s in base.adapt_channels(IMAGENET_STD, in_chans)], name="normalization")(images)


def EfficientNet(
    width,
    depth,
    *,
    architecture=B,
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
    """Build an EfficientNet from a block table (`config.Architecture`: B, Lite, V2) scaled by
    `width` and `depth`.

    Input: float32 RGB in [0, 1]; the normalization the weights expect (ImageNet
    mean/std for B and V2-B, [-1, 1] for Lite and V2-S..XL) is a layer inside. Stochastic depth of
    block i (from 0) is `drop_connect_rate * i / blocks`, as timm's `drop_path_rate`. `in_chans`
    other than 3 adapts the normalization's mean/std (`base.adapt_channels`); `global_pool` ("avg",
    "max") is the head's pooling; `num_classes=0` gives the pooled features (timm's headless model).
    """
    input_shape, num_classes = base.validate_common_args(
        include_top=include_top, num_classes=num_classes, input_shape=input_shape,
        pooling=pooling, name=name, in_chans=in_chans,
    )
    plan = scale(architecture, width, depth)
    activation = plan.activation

    inputs = base.image_inputs(input_shape)
    x = _input_scaling(base.input_contract(inputs), plan.rescale, in_chans)
    x = _conv(plan.stem, 3, "stem_conv", 2)(x)
    x = _bn("stem_bn")(x)
    x = keras.layers.Activation(activation, name="stem_activation")(x)

    total = float(sum(stage.repeats for stage in plan.stages))
    index = 0
    for i, stage in enumerate(plan.stages):
        for j in range(stage.repeats):
            x = BLOCKS[stage.block](
                x, stage.filters_in if j == 0 else stage.filters, stage.filters, stage.kernel,
                stage.stride if j == 0 else 1, stage.expand, stage.se_ratio, activation,
                drop_connect_rate * index / total, name=f"block{i + 1}{chr(97 + j)}_",
            )
            index += 1

    x = _conv(plan.head, 1, "top_conv")(x)
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
        config.width, config.depth, architecture=config.architecture,
        dropout_rate=config.dropout if dropout_rate is None else dropout_rate,
        drop_connect_rate=drop_connect_rate, include_top=include_top, num_classes=num_classes,
        input_shape=input_shape, pooling=pooling, classifier_activation=classifier_activation,
        name=name, in_chans=in_chans, global_pool=global_pool,
    )


def owns(model):
    """Whether a built model is an EfficientNet (stem and top named as keras.applications')."""
    names = {layer.name for layer in model.layers}
    return "stem_conv" in names and "top_conv" in names


__all__ = ["EfficientNet", "block_names", "block_output", "build", "fused_mbconv", "mbconv", "round_filters",
           "round_repeats", "scale", "stage_plan"]
