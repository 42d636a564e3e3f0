"""Non-overlapping patches projected to tokens: a conv with kernel = stride = patch size."""

import keras


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class PatchEmbedding(keras.layers.Conv2D):
    """Cut images into `patch_size` squares and project each to `hidden_size`.

    Output is the token grid `(batch, height / patch, width / patch, hidden)`
    (`(batch, hidden, height / patch, width / patch)` with `data_format="channels_first"`,
    Conv2D's argument, default `keras.config.image_data_format()`);
    the grid shape is what the position embedding resizes to. Image sides that
    are not a multiple of the patch size raise a `ValueError` (silently dropping
    the last pixels, as a VALID conv would, hides a preprocessing mistake); in a
    TensorFlow graph traced with unknown sizes (a `tf.function`, an exported
    SavedModel) the same rule is checked when the images arrive.
    """

    def __init__(self, hidden_size, patch_size, **kwargs):
        for key in ("filters", "kernel_size", "strides", "padding"):
            kwargs.pop(key, None)  # fixed by the arguments; present when loading a config
        super().__init__(
            filters=hidden_size, kernel_size=patch_size, strides=patch_size, padding="valid", **kwargs
        )
        self.hidden_size = hidden_size
        self.patch_size = patch_size

    def _sides(self, shape):
        return tuple(shape[2:4] if self.data_format == "channels_first" else shape[1:3])

    def _check_sides(self, shape):
        # Known sides only: None, or a symbolic one (jax2tf's shape polymorphism) has no int value.
        sides = [s for s in self._sides(shape) if isinstance(s, int)]
        bad = [int(s) for s in sides if int(s) % self.patch_size]
        if bad:
            p = self.patch_size
            nearest = " or ".join(str(m) for m in (bad[0] // p * p, (bad[0] // p + 1) * p) if m)
            raise ValueError(
                f"{self.name}: image height and width must be multiples of the patch size "
                f"{p}; got {self._sides(shape)}. Resize or crop the images to a multiple of "
                f"{p} (e.g. {nearest} instead of {bad[0]})."
            )

    def build(self, input_shape):
        self._check_sides(input_shape)
        super().build(input_shape)

    def call(self, inputs):
        self._check_sides(inputs.shape)
        if self.patch_size > 1 and None in self._sides(inputs.shape):
            inputs = self._check_sides_at_run_time(inputs)
        return super().call(inputs)

    def _check_sides_at_run_time(self, inputs):
        """The same rule where the sides were unknown when traced (tf.function, SavedModel).

        Only TensorFlow traces graphs with unknown sizes (JAX and torch trace concrete
        ones) and keras.ops has no assertion, so this is TensorFlow's, imported here
        only under that backend. It fails with `tf.errors.InvalidArgumentError`.
        """
        if keras.backend.backend() != "tensorflow":
            return inputs
        import tensorflow as tf

        sides = tf.shape(inputs)[2:4] if self.data_format == "channels_first" else tf.shape(inputs)[1:3]
        message = (
            f"{self.name}: image height and width must be multiples of the patch size "
            f"{self.patch_size}; resize or crop the images. Got (height, width):"
        )
        check = tf.debugging.Assert(tf.reduce_all(sides % self.patch_size == 0), [message, sides])
        with tf.control_dependencies([check]):
            return tf.identity(inputs)

    def compute_output_shape(self, input_shape):
        self._check_sides(input_shape)
        return super().compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, patch_size=self.patch_size)
        return config
