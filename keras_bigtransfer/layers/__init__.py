"""Layers shared by the model families."""

from keras_bigtransfer.layers.activations import GELU
from keras_bigtransfer.layers.group_norm import ChannelsLastGroupNormalization
from keras_bigtransfer.layers.image_input import ImageInput
from keras_bigtransfer.layers.patch_embedding import PatchEmbedding
from keras_bigtransfer.layers.position_embedding import PositionEmbedding, resize_grid
from keras_bigtransfer.layers.stochastic_depth import StochasticDepth
from keras_bigtransfer.layers.tokens import LearnedTokens, TokenPooling
from keras_bigtransfer.layers.ws_conv import WSConv2D

__all__ = [
    "ChannelsLastGroupNormalization",
    "GELU",
    "ImageInput",
    "LearnedTokens",
    "PatchEmbedding",
    "PositionEmbedding",
    "StochasticDepth",
    "TokenPooling",
    "WSConv2D",
    "resize_grid",
]
