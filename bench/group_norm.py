"""BiT-R50x1 inference with three GroupNorm implementations, alternating repeats.

    python bench/group_norm.py [--batch=8] [--size=224] [--repeats=5] [--policy=float32]

"previous" is the layer before the centred-variance fix (E[x^2] - E[x]^2, the
scale-and-shift in the compute dtype), kept here only to measure against;
"current" is `ChannelsLastGroupNormalization`; "keras" is
`keras.layers.GroupNormalization`. Prints the median seconds per batch.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_bigtransfer.layers import ChannelsLastGroupNormalization  # noqa: E402
from keras_bigtransfer.models import bit  # noqa: E402


class PreviousGroupNormalization(ChannelsLastGroupNormalization):
    """The layer as it was (one-pass variance), for timing only."""

    def call(self, inputs):
        channels = inputs.shape[-1]
        per_group = channels // self.groups
        x = ops.cast(inputs, "float32")
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1] * shape[2], channels))
        averager = ops.ones((1, 1, shape[1] * shape[2]), "float32") / ops.cast(shape[1] * shape[2], "float32")
        mean = ops.matmul(averager, x)[:, 0]
        mean_square = ops.matmul(averager, ops.square(x))[:, 0]
        mean = ops.mean(ops.reshape(mean, (-1, self.groups, per_group)), axis=-1, keepdims=True)
        mean_square = ops.mean(ops.reshape(mean_square, (-1, self.groups, per_group)), axis=-1, keepdims=True)
        inv = ops.rsqrt(ops.maximum(mean_square - ops.square(mean), 0.0) + self.epsilon)
        scale = ops.broadcast_to(inv, (ops.shape(inv)[0], self.groups, per_group))
        scale = scale * ops.reshape(ops.cast(self.gamma, "float32"), (self.groups, per_group))
        shift = -mean * scale + ops.reshape(ops.cast(self.beta, "float32"), (self.groups, per_group))
        scale = ops.reshape(scale, (-1, 1, 1, channels))
        shift = ops.reshape(shift, (-1, 1, 1, channels))
        dtype = self.compute_dtype
        return ops.cast(inputs, dtype) * ops.cast(scale, dtype) + ops.cast(shift, dtype)


class KerasGroupNormalization(keras.layers.GroupNormalization):
    def __init__(self, groups=32, axis=-1, **kwargs):
        super().__init__(groups=groups, axis=axis, **kwargs)


LAYERS = {
    "previous": PreviousGroupNormalization,
    "current": ChannelsLastGroupNormalization,
    "keras": KerasGroupNormalization,
}


def build(layer_class):
    bit.ChannelsLastGroupNormalization = layer_class
    try:
        keras.utils.set_random_seed(0)
        return bit.ResNetV2(50, 1, num_classes=1000)
    finally:
        bit.ChannelsLastGroupNormalization = ChannelsLastGroupNormalization


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--policy", default="float32")
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.policy)
    images = np.random.default_rng(0).random((args.batch, args.size, args.size, 3), dtype=np.float32)
    models = {name: build(cls) for name, cls in LAYERS.items()}
    for model in models.values():
        model.predict_on_batch(images)  # trace and warm up
    times = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.predict_on_batch(images)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["current"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:9s} {median:.3f} s/batch  {args.batch / median:6.1f} img/s  {median / base:.2f}x current")


if __name__ == "__main__":
    main()
