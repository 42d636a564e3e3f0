"""Learned tokens added to a ViT's sequence, and reading the sequence back out."""

import keras
from keras import ops

POOLING_MODES = ("token", "avg", "max", None)


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class LearnedTokens(keras.layers.Layer):
    """`num_tokens` learned vectors, broadcast over the batch of its input.

    The class token (`num_tokens=1`, zeros, as the official ViT) and register
    tokens (Darcet et al., 2024: `normal(1e-6)` as DINOv2) are both this layer.
    The input only supplies the batch size and the width.
    """

    def __init__(self, num_tokens=1, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = int(num_tokens)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.tokens = self.add_weight(
            name="tokens", shape=(1, self.num_tokens, input_shape[-1]), initializer=self.initializer
        )

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        tokens = ops.cast(self.tokens, inputs.dtype)
        return ops.broadcast_to(tokens, (batch, self.num_tokens, tokens.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tokens=self.num_tokens, initializer=keras.initializers.serialize(self.initializer)
        )
        return config


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class TokenPooling(keras.layers.Layer):
    """Read a ViT's output sequence `(batch, skip + h * w, hidden)`.

    `skip` leading tokens (class token, registers) come before the patches.
    Modes: "token" the first token; "avg" / "max" over the patch tokens only
    (registers are discarded, as in the registers paper); None the patch tokens
    as a feature map `(batch, h, w, hidden)`, for which the second input, the
    patch grid, gives h and w; with `data_format="channels_first"` the grid is
    `(batch, hidden, h, w)` and so is the map.
    """

    def __init__(self, mode="token", num_skipped_tokens=1, data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}; got {mode!r}.")
        if mode == "token" and num_skipped_tokens < 1:
            raise ValueError('pooling="token" needs a class token (classifier="token").')
        self.mode = mode
        self.num_skipped_tokens = int(num_skipped_tokens)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f'data_format must be "channels_last" or "channels_first"; got {data_format!r}.')
        self.data_format = data_format

    def call(self, tokens, grid=None):
        if self.mode == "token":
            return tokens[:, 0]
        patches = tokens[:, self.num_skipped_tokens:]
        if self.mode == "avg":
            return ops.mean(patches, axis=1)
        if self.mode == "max":
            return ops.max(patches, axis=1)
        shape = ops.shape(grid)
        if self.data_format == "channels_first":
            patches = ops.transpose(patches, (0, 2, 1))  # (batch, hidden, h * w)
            return ops.reshape(patches, (shape[0], tokens.shape[-1], shape[2], shape[3]))
        return ops.reshape(patches, (shape[0], shape[1], shape[2], tokens.shape[-1]))

    def compute_output_shape(self, tokens_shape, grid_shape=None):
        if self.mode is None:
            if self.data_format == "channels_first":
                return (grid_shape[0], tokens_shape[-1]) + tuple(grid_shape[2:4])
            return tuple(grid_shape[:3]) + (tokens_shape[-1],)
        return (tokens_shape[0], tokens_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, num_skipped_tokens=self.num_skipped_tokens, data_format=self.data_format)
        return config
