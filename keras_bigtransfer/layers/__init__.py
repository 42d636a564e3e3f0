"""Layers shared by the model families."""

from keras_bigtransfer.layers.ws_conv import WSConv2D

__all__ = ["WSConv2D"]
