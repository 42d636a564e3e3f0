"""Stochastic depth (Huang et al., 2016): drop a residual branch per example."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class StochasticDepth(keras.layers.Layer):
    """`shortcut + branch`, the branch dropped per example with probability `rate`
    in training and the kept ones scaled by 1 / (1 - rate), so inference is a plain add.

    Call on `[shortcut, branch]`.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"stochastic depth rate must be in [0, 1); got {rate!r}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        shortcut, branch = inputs
        if training and self.rate > 0.0:
            keep = 1.0 - self.rate
            shape = (ops.shape(branch)[0],) + (1,) * (len(branch.shape) - 1)
            mask = keras.random.uniform(shape, seed=self.seed_generator) < keep
            branch = ops.where(mask, branch / keep, ops.zeros_like(branch))
        return shortcut + branch

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
