"""Vision Transformer (ViT) at any resolution, and the R50 hybrid.

Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021 (arXiv:2010.11929),
as the official google-research/vision_transformer code builds it: pre-LayerNorm
blocks (epsilon 1e-6), tanh-approximate GELU (flax `nn.gelu`), a class token
with its own position embedding, a final LayerNorm, an optional tanh
`pre_logits` layer and a zero-initialized head. Registers (Darcet et al., ICLR
2024) are optional extra learned tokens without position embedding, dropped at
the output.

Layers are named after their keys in the published .npz checkpoints with "/"
replaced by "_" (`Transformer/encoderblock_3/MlpBlock_3/Dense_0/kernel` lives
in layer `Transformer_encoderblock_3_MlpBlock_3_Dense_0`).

Resolution: the position embedding is stored for one grid and resized to the
grid of the input (see `layers.position_embedding`). A model with a fixed
`input_shape` stores it at that grid, so weights trained at another resolution
are resampled once, when they load; a model with `input_shape=(None, None, 3)`
stores the pretrained grid and resamples at run time to whatever arrives.
"""

import math

import keras

from keras_bigtransfer.layers import (
    ImageGroupNormalization,
    GELU,
    LearnedTokens,
    PatchEmbedding,
    PositionEmbedding,
    StochasticDepth,
    TokenPooling,
    WSConv2D,
)
from keras_bigtransfer.models import base

LN_EPSILON = 1e-6

# The hybrid's ResNet (vit_jax models_resnet): post-activation bottlenecks with
# GroupNorm (flax default epsilon) and StdConv (epsilon on the std).
HYBRID_GN_EPSILON = 1e-6
HYBRID_WS_EPSILON = 1e-5


def _std_conv(x, filters, kernel_size, name, strides=1):
    return WSConv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        epsilon=HYBRID_WS_EPSILON, epsilon_mode="std", name=name,
    )(x)


def _group_norm(x, name):
    return ImageGroupNormalization(32, axis=base.channel_axis(), epsilon=HYBRID_GN_EPSILON, name=name)(x)


def hybrid_residual_unit(x, filters, stride, name):
    """vit_jax `ResidualUnit`: conv-GN-ReLU x2, conv-GN, add, ReLU (not BiT's pre-activation)."""
    shortcut = x
    if stride > 1 or x.shape[base.channel_axis()] != 4 * filters:
        shortcut = _std_conv(x, 4 * filters, 1, name + "_conv_proj", strides=stride)
        shortcut = _group_norm(shortcut, name + "_gn_proj")
    y = _std_conv(x, filters, 1, name + "_conv1")
    y = keras.layers.ReLU(name=name + "_relu1")(_group_norm(y, name + "_gn1"))
    y = _std_conv(y, filters, 3, name + "_conv2", strides=stride)
    y = keras.layers.ReLU(name=name + "_relu2")(_group_norm(y, name + "_gn2"))
    y = _std_conv(y, 4 * filters, 1, name + "_conv3")
    y = _group_norm(y, name + "_gn3")
    y = keras.layers.Add(name=name + "_add")([shortcut, y])
    return keras.layers.ReLU(name=name + "_relu")(y)


def hybrid_resnet(x, layers, width=1):
    """The hybrid's ResNet stem and stages: stride 4 from the root, then 2 per later stage."""
    width = 64 * width
    x = _std_conv(x, width, 7, "conv_root", strides=2)
    x = keras.layers.ReLU(name="relu_root")(_group_norm(x, "gn_root"))
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool_root")(x)
    for block, units in enumerate(layers, start=1):
        for unit in range(1, units + 1):
            stride = 2 if (unit == 1 and block > 1) else 1
            x = hybrid_residual_unit(x, width * 2 ** (block - 1), stride, f"block{block}_unit{unit}")
    return x


def encoder_block(x, *, num_heads, mlp_size, dropout_rate, attention_dropout_rate,
                  stochastic_depth_rate, gelu_approximate, name):
    hidden = x.shape[-1]
    y = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=name + "_LayerNorm_0")(x)
    y = keras.layers.MultiHeadAttention(
        num_heads, hidden // num_heads, dropout=attention_dropout_rate,
        name=name + "_MultiHeadDotProductAttention_1",
    )(y, y)
    y = keras.layers.Dropout(dropout_rate, name=name + "_attention_dropout")(y)
    x = StochasticDepth(stochastic_depth_rate, name=name + "_attention_residual")([x, y])
    y = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=name + "_LayerNorm_2")(x)
    y = keras.layers.Dense(mlp_size, name=name + "_MlpBlock_3_Dense_0")(y)
    y = GELU(gelu_approximate, name=name + "_MlpBlock_3_gelu")(y)
    y = keras.layers.Dropout(dropout_rate, name=name + "_MlpBlock_3_dropout_0")(y)
    y = keras.layers.Dense(hidden, name=name + "_MlpBlock_3_Dense_1")(y)
    y = keras.layers.Dropout(dropout_rate, name=name + "_MlpBlock_3_dropout_1")(y)
    return StochasticDepth(stochastic_depth_rate, name=name + "_mlp_residual")([x, y])


def _grid(side, stride, hybrid):
    if side is None:
        return None
    return math.ceil(side / stride) if hybrid else side // stride


def VisionTransformer(
    *,
    patch_size,
    hidden_size,
    mlp_size,
    num_heads,
    num_layers,
    resnet_layers=None,
    include_top=True,
    num_classes=1000,
    input_shape=None,
    pooling=None,
    classifier="token",
    representation_size=None,
    num_register_tokens=0,
    pos_embed_interpolation="bilinear",
    pretrained_resolution=224,
    dropout_rate=0.0,
    attention_dropout_rate=0.0,
    stochastic_depth_rate=0.0,
    gelu_approximate=True,
    classifier_activation=None,
    name="vit",
    in_chans=3,
    global_pool=None,
    head_dropout_rate=0.0,
):
    """Build a ViT (or, with `resnet_layers`, a ResNet+ViT hybrid).

    Args beyond the common ones:
        classifier: "token" (class token, the published models) or "gap"
            (no class token; the head reads the mean of the patch tokens).
        representation_size: width of the tanh `pre_logits` layer before the
            head, or None (none; the published i21k checkpoints carry one,
            which is dropped on load unless you ask for it here).
        num_register_tokens: learned register tokens, without position
            embedding, discarded at the output.
        pos_embed_interpolation: "bilinear" (the official loader,
            scipy.ndimage.zoom order 1) or "bicubic" (timm's).
        pretrained_resolution: the image side the stored position embedding
            covers when `input_shape` leaves the size open.
        stochastic_depth_rate: the last block's drop rate; earlier blocks
            scale it linearly from 0.
        gelu_approximate: tanh GELU as the official JAX model (True) or the
            exact erf form timm uses (False).
        pooling: with include_top=False: None, the patch tokens as a feature
            map (batch, h, w, hidden); "token", the class token; "avg" / "max"
            over the patch tokens.
        global_pool: the head's pooling (timm's): "token", "avg", "max"; None: "token"
            with a class token, else "avg". "" (no pooling) with num_classes=0 only.
        head_dropout_rate: dropout before the head (timm's `drop_rate`).
        in_chans: input channels (the patch embedding's kernel takes them).
    """
    if classifier not in ("token", "gap"):
        raise ValueError(f'{name}: classifier must be "token" or "gap"; got {classifier!r}.')
    if not include_top and pooling not in ("token", "avg", "max", None):
        raise ValueError(f'{name}: pooling must be "token", "avg", "max" or None; got {pooling!r}.')
    if pooling == "token" and classifier != "token":
        raise ValueError(f'{name}: pooling="token" needs classifier="token" (a class token).')
    num_register_tokens = base.integer_arg(num_register_tokens, "num_register_tokens", name, minimum=0)
    input_shape, num_classes = base.validate_common_args(
        include_top=include_top, num_classes=num_classes, input_shape=input_shape,
        pooling=None if pooling == "token" else pooling, name=name, in_chans=in_chans,
    )
    hybrid = resnet_layers is not None
    stride = patch_size * (2 ** (len(resnet_layers) + 1) if hybrid else 1)
    native = _grid(pretrained_resolution, stride, hybrid)
    grid = tuple(
        _grid(side, stride, hybrid) if side is not None else native for side in base.spatial(input_shape)
    )

    inputs = base.image_inputs(input_shape)
    images = base.input_contract(inputs)
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus_one_one")(images)
    if hybrid:
        x = hybrid_resnet(x, resnet_layers)
    patches = PatchEmbedding(hidden_size, patch_size, name="embedding")(x)
    data_format = base.standardize_data_format()
    # The token layers read the (batch, h, w, hidden) grid; channels_first moves hidden last once.
    token_grid = (keras.layers.Permute((2, 3, 1), name="embedding_grid")(patches)
                  if data_format == "channels_first" else patches)

    has_class_token = classifier == "token"
    position = PositionEmbedding(
        grid, num_prefix_tokens=int(has_class_token), interpolation=pos_embed_interpolation,
        name="Transformer_posembed_input",
    )
    if has_class_token:
        cls = LearnedTokens(1, name="cls")(token_grid)
        cls, tokens = position(token_grid, prefix=cls)
        parts = [cls]
    else:
        tokens = position(token_grid)
        parts = []
    if num_register_tokens:
        parts.append(
            LearnedTokens(
                num_register_tokens, keras.initializers.RandomNormal(stddev=1e-6), name="registers"
            )(token_grid)
        )
    x = keras.layers.Concatenate(axis=1, name="tokens")(parts + [tokens]) if parts else tokens
    x = keras.layers.Dropout(dropout_rate, name="Transformer_dropout")(x)

    for i in range(num_layers):
        x = encoder_block(
            x, num_heads=num_heads, mlp_size=mlp_size, dropout_rate=dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            stochastic_depth_rate=stochastic_depth_rate * i / max(num_layers - 1, 1),
            gelu_approximate=gelu_approximate, name=f"Transformer_encoderblock_{i}",
        )
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="Transformer_encoder_norm")(x)

    skipped = int(has_class_token) + num_register_tokens
    spec = dict(features="Transformer_encoder_norm", first_conv="conv_root" if hybrid else "embedding")
    if include_top:
        pre_logits = (keras.layers.Dense(representation_size, activation="tanh", name="pre_logits")
                      if representation_size else None)
        x, spec = base.classifier_head(
            x, num_classes=num_classes,
            global_pool=global_pool if global_pool is not None else ("token" if has_class_token else "avg"),
            drop_rate=head_dropout_rate, classifier_activation=classifier_activation,
            kernel_initializer="zeros", num_prefix_tokens=skipped, pre_logits=pre_logits, spec=spec,
            name=name)
    else:
        x = TokenPooling(pooling, skipped, data_format=data_format, name="pool")(x, patches)
        spec = base.describe_head(
            spec, global_pool=pooling or "", drop_rate=head_dropout_rate, num_prefix_tokens=skipped,
            classifier_activation=classifier_activation, kernel_initializer="zeros", pre_logits=None,
            head_layers=["pool"] if pooling else [])
    return base.ImageModel(inputs, x, name=name, head_spec=spec)


def build(config, *, weights_entry=None, include_top=True, num_classes=None, input_shape=None,
          pooling=None, classifier_activation=None, name=None, num_register_tokens=0,
          pos_embed_interpolation="bilinear", representation_size=None, pretrained_resolution=None,
          dropout_rate=0.0, attention_dropout_rate=0.0, stochastic_depth_rate=0.0,
          gelu_approximate=True, in_chans=3, global_pool=None, head_dropout_rate=0.0):
    """The family's builder for the constructor factory: the ViT of a `ViTConfig`.

    `pretrained_resolution=None` takes the weights' resolution (224 without a catalogue entry).
    """
    if pretrained_resolution is None:
        pretrained_resolution = weights_entry.resolution if weights_entry is not None else 224
    return VisionTransformer(
        patch_size=config.patch_size, hidden_size=config.hidden_size, mlp_size=config.mlp_size,
        num_heads=config.num_heads, num_layers=config.num_layers, resnet_layers=config.resnet_layers,
        include_top=include_top, num_classes=num_classes, input_shape=input_shape, pooling=pooling,
        representation_size=representation_size, num_register_tokens=num_register_tokens,
        pos_embed_interpolation=pos_embed_interpolation, pretrained_resolution=pretrained_resolution,
        dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate,
        stochastic_depth_rate=stochastic_depth_rate, gelu_approximate=gelu_approximate,
        classifier_activation=classifier_activation, name=name, in_chans=in_chans,
        global_pool=global_pool, head_dropout_rate=head_dropout_rate,
    )


# Model-parallel layout (`registry.Family.layout_rules`, keras_bigtransfer.distribution),
# Megatron-style: the first MLP kernel and q/k/v by column / head, the second MLP kernel
# and the attention output by row.
LAYOUT_RULES = (
    (r".*MlpBlock_\d+_Dense_0/kernel", (None, "model")),
    (r".*MlpBlock_\d+_Dense_0/bias", ("model",)),
    (r".*MlpBlock_\d+_Dense_1/kernel", ("model", None)),
    (r".*MultiHeadDotProductAttention_\d+/(query|key|value)/kernel", (None, "model", None)),
    (r".*MultiHeadDotProductAttention_\d+/(query|key|value)/bias", ("model", None)),
    (r".*MultiHeadDotProductAttention_\d+/attention_output/kernel", ("model", None, None)),
)


def owns(model):
    """Whether a built model is a ViT (or hybrid): its position embedding is named after the checkpoints'."""
    return any(layer.name == "Transformer_posembed_input" for layer in model.layers)


__all__ = ["VisionTransformer", "build", "encoder_block", "hybrid_resnet", "hybrid_residual_unit"]
