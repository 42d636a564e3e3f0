"""Layers shared by the model families, and the learning-rate schedule saved models name
(all registered Keras serializables, loaded with the package on every backend)."""

from keras_bigtransfer.layers.activations import GELU
from keras_bigtransfer.layers.depthwise_conv import ShiftAddDepthwiseConv2D
from keras_bigtransfer.layers.group_norm import ChannelsLastGroupNormalization, ImageGroupNormalization
from keras_bigtransfer.layers.image_input import ImageInput
from keras_bigtransfer.layers.patch_embedding import PatchEmbedding
from keras_bigtransfer.layers.position_embedding import PositionEmbedding, resize_grid
from keras_bigtransfer.layers.schedules import HyperRuleSchedule
from keras_bigtransfer.layers.stochastic_depth import StochasticDepth
from keras_bigtransfer.layers.tokens import LearnedTokens, TokenPooling
from keras_bigtransfer.layers.ws_conv import WSConv2D

__all__ = [
    "GELU",
    "HyperRuleSchedule",
    "ImageGroupNormalization",
    "ImageInput",
    "LearnedTokens",
    "PatchEmbedding",
    "PositionEmbedding",
    "ShiftAddDepthwiseConv2D",
    "StochasticDepth",
    "TokenPooling",
    "WSConv2D",
    "resize_grid",
]
