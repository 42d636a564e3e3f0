"""XLA:CPU's depthwise convolution against the same convolution written as k x k shifted
multiply-adds, on EfficientNet-B0's depthwise shapes at batch 16 (JAX, jit, float32).

    python bench/jax_depthwise.py            # EfficientNet-B0's shapes, 5 repeats, medians in ms
    python bench/jax_depthwise.py --quick    # a smoke run: two tiny shapes, one repeat

Why: on JAX, the Keras EfficientNet-B0 (ours and keras.applications alike) runs at about 0.15x
timm on CPU (docs/benchmarks.md). `lax.conv_general_dilated(feature_group_count=C)` is the op
both Keras EfficientNets lower their depthwise layers to. The shifted form computes the same sum,
so the two outputs agree to float32 rounding; the script prints the largest difference. A
1x1 convolution on the same tensor is printed beside them for scale.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

# (height = width, channels, kernel) of EfficientNet-B0's stride-1 depthwise layers at 224 px.
SHAPES = [(112, 96, 3), (56, 144, 3), (28, 240, 5), (14, 480, 3), (14, 672, 5), (7, 1152, 5)]
QUICK = [(8, 4, 3), (4, 8, 5)]


def depthwise_xla(x, w):
    """x (N, H, W, C), w (k, k, 1, C): XLA's grouped convolution, SAME padding."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=x.shape[-1])


def depthwise_shifted(x, w):
    """The same convolution as k*k shifted multiply-adds of the padded input."""
    k, p = w.shape[0], w.shape[0] // 2
    padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    height, width = x.shape[1:3]
    return sum(padded[:, i:i + height, j:j + width, :] * w[i, j, 0] for i in range(k) for j in range(k))


def pointwise(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def milliseconds(fn, args, repeats):
    fn = jax.jit(fn)
    fn(*args).block_until_ready()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).block_until_ready()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="two tiny shapes, one repeat.")
    args = parser.parse_args()
    shapes, repeats, batch = (QUICK, 1, 2) if args.quick else (SHAPES, args.repeats, args.batch)
    rng = np.random.default_rng(0)
    for size, channels, kernel in shapes:
        x = jnp.asarray(rng.standard_normal((batch, size, size, channels)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((kernel, kernel, 1, channels)), jnp.float32)
        w1 = jnp.asarray(rng.standard_normal((1, 1, channels, channels)), jnp.float32)
        difference = float(jnp.max(jnp.abs(jax.jit(depthwise_xla)(x, w) - jax.jit(depthwise_shifted)(x, w))))
        row = {"shape": [batch, size, size, channels], "kernel": kernel,
               "xla_ms": round(milliseconds(depthwise_xla, (x, w), repeats), 2),
               "shifted_ms": round(milliseconds(depthwise_shifted, (x, w), repeats), 2),
               "pointwise_ms": round(milliseconds(pointwise, (x, w1), repeats), 2),
               "max_difference": difference}
        row["speedup"] = round(row["xla_ms"] / row["shifted_ms"], 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
