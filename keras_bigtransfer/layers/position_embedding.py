"""Learned absolute position embeddings stored at their native grid and resized,
in the graph, to the grid of whatever image arrives.

Two resampling rules, each reproducing a published loader:

- "bilinear": the official vision_transformer loader, `scipy.ndimage.zoom(order=1)`
  over the (h, w) grid. `zoom` maps corners to corners (output i reads input
  i * (n_in - 1) / (n_out - 1)), which is *not* the half-pixel bilinear of
  `keras.ops.image.resize` or torch.
- "bicubic": timm's `resample_abs_pos_embed`, i.e. torch's
  `F.interpolate(mode="bicubic", antialias=True)`: half-pixel centres, the Keys
  cubic with a = -0.5, its support widened by the scale when shrinking, weights
  renormalized at the borders.

Both are written as (n_out x n_in) weight matrices built with `keras.ops` from
`arange`, so they work with sizes only known at run time and inside a
SavedModel, and are applied separably: out = Wh @ grid @ Ww^T.
"""

import numbers

import keras
from keras import ops

INTERPOLATIONS = ("bilinear", "bicubic")


def _cubic(x, a=-0.5):
    x = ops.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return ops.where(x <= 1.0, near, ops.where(x < 2.0, far, ops.zeros_like(x)))


def resize_matrix(n_in, n_out, interpolation):
    """(n_out, n_in) float32 weights; `n_out` may be a tensor known only at run time."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}; got {interpolation!r}.")
    out_f = ops.cast(n_out, "float32")
    o = ops.expand_dims(ops.cast(ops.arange(n_out), "float32"), 1)
    i = ops.expand_dims(ops.cast(ops.arange(n_in), "float32"), 0)
    if interpolation == "bilinear":
        step = float(n_in - 1) / ops.maximum(out_f - 1.0, 1.0)
        return ops.relu(1.0 - ops.abs(i - o * step))
    scale = float(n_in) / out_f
    support = ops.maximum(scale, 1.0)
    weights = _cubic((i + 0.5 - (o + 0.5) * scale) / support)
    return weights / ops.sum(weights, axis=1, keepdims=True)


def resize_grid(grid, size, interpolation="bilinear"):
    """Resize a (h, w, channels) grid to `size` = (new_h, new_w), in float32."""
    grid = ops.cast(grid, "float32")
    rows = resize_matrix(grid.shape[0], size[0], interpolation)
    cols = resize_matrix(grid.shape[1], size[1], interpolation)
    grid = ops.einsum("oh,hwc->owc", rows, grid)
    return ops.einsum("pw,owc->opc", cols, grid)


def resample_table(table, old_grid, new_grid, num_prefix_tokens, interpolation="bilinear"):
    """A (1, prefix + h*w, D) embedding table at `old_grid` resampled to `new_grid`.

    The prefix rows (class token) are kept as they are: they have no place in the image.
    """
    table = ops.convert_to_tensor(table, "float32")
    prefix = table[:, :num_prefix_tokens]
    grid = ops.reshape(table[0, num_prefix_tokens:], (old_grid[0], old_grid[1], table.shape[-1]))
    grid = resize_grid(grid, new_grid, interpolation)
    grid = ops.reshape(grid, (1, new_grid[0] * new_grid[1], table.shape[-1]))
    return ops.concatenate([prefix, grid], axis=1)


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class PositionEmbedding(keras.layers.Layer):
    """Adds learned position embeddings to a token grid and its prefix tokens.

    The table `pos_embedding` has shape (1, num_prefix_tokens + h * w, hidden)
    for the native `grid_size` (h, w), the layout of the published ViT
    checkpoints. When the incoming grid differs, the patch rows are resized to
    it (see the module docstring); the prefix rows never are.

    Call: `layer(patches)` with patches `(batch, h, w, hidden)` returns the
    patch tokens `(batch, h * w, hidden)`; `layer(patches, prefix=tokens)` with
    prefix `(batch, num_prefix_tokens, hidden)` returns `(prefix, patches)`,
    both with their embeddings added.

    Args:
        grid_size: (h, w) of the stored table.
        num_prefix_tokens: rows before the grid (1 for a class token, else 0).
        interpolation: "bilinear" (the official loader) or "bicubic" (timm's).
    """

    def __init__(self, grid_size, num_prefix_tokens=1, interpolation="bilinear",
                 initializer=None, **kwargs):
        super().__init__(**kwargs)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"pos_embed_interpolation must be one of {INTERPOLATIONS}; got {interpolation!r}."
            )
        self.grid_size = tuple(int(s) for s in grid_size)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.interpolation = interpolation
        self.initializer = keras.initializers.get(
            initializer or keras.initializers.RandomNormal(stddev=0.02)
        )

    def build(self, input_shape):
        rows = self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]
        self.pos_embedding = self.add_weight(
            name="pos_embedding", shape=(1, rows, input_shape[-1]), initializer=self.initializer
        )

    def patch_table(self, height, width):
        """The (1, height * width, hidden) embeddings of a height x width grid, float32.

        height and width are ints, or scalar tensors when the size is only known at run time.
        """
        table = ops.cast(self.pos_embedding, "float32")
        grid = table[0, self.num_prefix_tokens:]
        static = isinstance(height, int) and isinstance(width, int)
        if not (static and (height, width) == self.grid_size):
            grid = ops.reshape(grid, self.grid_size + (table.shape[-1],))
            grid = resize_grid(grid, (height, width), self.interpolation)
        return ops.reshape(grid, (1, height * width, table.shape[-1]))

    def call(self, patches, prefix=None):
        shape = ops.shape(patches)
        # Static sides where known (no resize when they match), run-time ones otherwise.
        height, width = (
            s if isinstance(s, int) else shape[i] for i, s in ((1, patches.shape[1]), (2, patches.shape[2]))
        )
        tokens = ops.reshape(patches, (shape[0], height * width, patches.shape[-1]))
        tokens = tokens + ops.cast(self.patch_table(height, width), tokens.dtype)
        if prefix is None:
            return tokens
        table = ops.cast(self.pos_embedding[:, : self.num_prefix_tokens], prefix.dtype)
        return prefix + table, tokens

    def compute_output_shape(self, patches_shape, prefix_shape=None):
        h, w = patches_shape[1], patches_shape[2]
        tokens = (patches_shape[0], None if h is None or w is None else h * w, patches_shape[-1])
        return tokens if prefix_shape is None else (tuple(prefix_shape), tokens)

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_size=self.grid_size,
            num_prefix_tokens=self.num_prefix_tokens,
            interpolation=self.interpolation,
            initializer=keras.initializers.serialize(self.initializer),
        )
        return config


def check_position_grid(position_grid):
    """`position_grid` as a (rows, cols) tuple of positive ints (NumPy integers too), or None.

    Raises:
        TypeError, ValueError: it is not two positive integers (a bad argument, not a bad file).
    """
    if position_grid is None:
        return None
    try:
        grid = tuple(position_grid)
    except TypeError:
        raise TypeError(f"position_grid must be (rows, cols) of positive integers; got {position_grid!r}.") from None
    if len(grid) != 2 or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in grid):
        raise TypeError(f"position_grid must be (rows, cols) of positive integers; got {position_grid!r}.")
    if min(grid) < 1:
        raise ValueError(f"position_grid must be (rows, cols) of positive integers; got {position_grid!r}.")
    return tuple(int(s) for s in grid)
