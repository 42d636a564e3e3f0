"""GroupNorm and weight standardization in BiT-R50x1: paired timings on any backend.

    KERAS_BACKEND=torch python bench/group_norm.py [--what=layer|model|ablate]
        [--batch=16] [--size=224] [--repeats=5] [--policy=float32]

Every variant runs in one process, alternating repeat by repeat; it prints each
variant's median seconds and its ratio to "previous" (read ratios: the machine
may be shared).

- layer: `ImageGroupNormalization` alone, on the (batch, size/4, size/4,
  256) activation of BiT's first stage, against "previous" (the TensorFlow
  formulation, GEMVs with a ones vector, which every backend ran before the
  per-backend kernels) and `keras.layers.GroupNormalization`.
- model: a whole BiT-R50x1 forward, "current" against "previous".
- ablate: where the time goes: BiT-R50x1 as it is, with GroupNorm replaced by
  a cast ("no_group_norm"), and with the kernels standardized once ahead of
  time ("no_ws": plain convolutions of the same, pre-standardized kernels).
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

from keras_bigtransfer.layers import ImageGroupNormalization, WSConv2D  # noqa: E402
from keras_bigtransfer.models.bit import model as bit  # noqa: E402


class PreviousGroupNormalization(ImageGroupNormalization):
    """The layer before the per-backend kernels: the GEMV formulation everywhere."""

    def call(self, inputs):
        return ops.cast(self._normalize_matmul(inputs), self.compute_dtype)


class KerasGroupNormalization(keras.layers.GroupNormalization):
    def __init__(self, groups=32, axis=-1, **kwargs):
        super().__init__(groups=groups, axis=axis, **kwargs)


class CastOnly(ImageGroupNormalization):
    """GroupNorm removed (the ablation): only the cast to the compute dtype."""

    def call(self, inputs):
        return ops.cast(inputs, self.compute_dtype)


class PlainConv(WSConv2D):
    """Weight standardization removed from the call (the ablation)."""

    def convolution_op(self, inputs, kernel):
        return keras.layers.Conv2D.convolution_op(self, inputs, kernel)


def build(group_norm=ImageGroupNormalization, conv=WSConv2D):
    saved = bit.ImageGroupNormalization, bit.WSConv2D
    bit.ImageGroupNormalization, bit.WSConv2D = group_norm, conv
    try:
        keras.utils.set_random_seed(0)
        return bit.ResNetV2(50, 1, num_classes=1000)
    finally:
        bit.ImageGroupNormalization, bit.WSConv2D = saved


def runner(model):
    if keras.backend.backend() == "torch":
        import torch

        def run(x):
            with torch.no_grad():
                return keras.ops.convert_to_numpy(model(x, training=False))

        return run
    return model.predict_on_batch


def subjects(what, args):
    if what == "layer":
        shape = (args.batch, args.size // 4, args.size // 4, 256)
        x = ops.convert_to_tensor(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
        out = {}
        for name, cls in [("current", ImageGroupNormalization),
                          ("previous", PreviousGroupNormalization), ("keras", KerasGroupNormalization)]:
            inp = keras.Input(shape[1:])
            out[name] = runner(keras.Model(inp, cls(32, epsilon=1e-5)(inp))), x
        return out
    images = np.random.default_rng(0).random((args.batch, args.size, args.size, 3), dtype=np.float32)
    if what == "model":
        variants = {"current": build(), "previous": build(PreviousGroupNormalization)}
    else:
        variants = {"current": build(), "no_group_norm": build(CastOnly), "no_ws": build(conv=PlainConv)}
        for layer in variants["no_ws"].layers:
            if isinstance(layer, WSConv2D):
                layer.kernel.assign(layer.standardized_kernel())
    return {name: (runner(model), images) for name, model in variants.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--what", choices=["layer", "model", "ablate"], default="model")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--policy", default="float32")
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.policy)
    runs = subjects(args.what, args)
    for run, x in runs.values():
        run(x)  # trace and warm up
    base_name = "previous" if "previous" in runs else "current"
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (run, x) in runs.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times[base_name])
    print(f"{keras.backend.backend()} {args.what} batch {args.batch} size {args.size} {args.policy}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:14s} {median:.4f} s  {median / base:.3f}x {base_name}")


if __name__ == "__main__":
    main()
