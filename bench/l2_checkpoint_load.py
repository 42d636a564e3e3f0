"""Bench row: peak memory of loading EfficientNet-L2 from its checkpoint in the published layout.

    python bench/l2_checkpoint_load.py [--resolution=475] [--keep=DIR]

The released Noisy Student L2 files (tensorflow/tpu `noisy_student_efficientnet-l2*.tar.gz`)
are TF name-based checkpoints: `efficientnet-l2/{stem,blocks_<i>,head}/...` with
`/ExponentialMovingAverage` shadows beside the raw values. One process writes such a
checkpoint from a random `EfficientNetL2` (raw values and shadows, 2x the parameters on disk);
a fresh process records its peak RSS (VmHWM) before and after
`EfficientNetL2(weights=<checkpoint>)`. Target: (peak - baseline) <= 1.5x the parameter bytes
(the model itself is 1x). Prints one JSON line; exit status 1 when over the target.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TARGET = 1.5
SCOPE = "efficientnet-l2"
BN = ("gamma", "beta", "moving_mean", "moving_variance")


def _peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def published_names(model):
    """{our variable path: tensorflow/tpu checkpoint name} of an EfficientNet model."""
    from keras_bigtransfer.models.efficientnet.convert import model_block_names

    names = {"stem_conv/kernel": f"{SCOPE}/stem/conv2d/kernel", "top_conv/kernel": f"{SCOPE}/head/conv2d/kernel",
             "head/kernel": f"{SCOPE}/head/dense/kernel", "head/bias": f"{SCOPE}/head/dense/bias"}
    for w in BN:
        names[f"stem_bn/{w}"] = f"{SCOPE}/stem/tpu_batch_normalization/{w}"
        names[f"top_bn/{w}"] = f"{SCOPE}/head/tpu_batch_normalization/{w}"
    layers = {layer.name for layer in model.layers}
    for i, block in enumerate(model_block_names(model)):
        scope = f"{SCOPE}/blocks_{i}/"
        expanded = f"{block}_expand_conv" in layers
        convs = {"expand_conv": "conv2d", "project_conv": "conv2d_1"} if expanded else {"project_conv": "conv2d"}
        bns = ({"expand_bn": "", "bn": "_1", "project_bn": "_2"} if expanded else {"bn": "", "project_bn": "_1"})
        for ours, theirs in convs.items():
            names[f"{block}_{ours}/kernel"] = scope + theirs + "/kernel"
        names[f"{block}_dwconv/kernel"] = scope + "depthwise_conv2d/depthwise_kernel"
        for ours, suffix in bns.items():
            for w in BN:
                names[f"{block}_{ours}/{w}"] = f"{scope}tpu_batch_normalization{suffix}/{w}"
        for ours, theirs in (("se_reduce", "se/conv2d"), ("se_expand", "se/conv2d_1")):
            for w in ("kernel", "bias"):
                names[f"{block}_{ours}/{w}"] = f"{scope}{theirs}/{w}"
    return names


def write_checkpoint(prefix, resolution):
    import numpy as np
    import tensorflow as tf

    import keras_bigtransfer as kb

    model = kb.EfficientNetL2(weights=None, input_shape=(resolution, resolution, 3))
    names = published_names(model)
    variables = {v.path: v for v in model.weights}
    assert set(names) == set(variables), sorted(set(variables) ^ set(names))[:5]
    # Raw values and EMA shadows (the same arrays: the bench measures the reader, not the values).
    tensor_names, tensors = [], []
    for path, name in names.items():
        value = np.asarray(variables[path].numpy())
        for suffix in ("", "/ExponentialMovingAverage"):
            tensor_names.append(name + suffix)
            tensors.append(value)
    tensor_names.append("global_step")
    tensors.append(np.asarray(1000, np.int64))
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=tensor_names,
                      shape_and_slices=[""] * len(tensor_names), tensors=tensors)
    return model.count_params()


def load_checkpoint(prefix, resolution):
    import tensorflow  # noqa: F401 - imported before the baseline, as a user's process would have it

    import keras_bigtransfer as kb

    baseline = _peak_rss_bytes()
    start = time.perf_counter()
    model = kb.EfficientNetL2(weights=prefix, input_shape=(resolution, resolution, 3))
    seconds = time.perf_counter() - start
    print(json.dumps({"model": "EfficientNetL2", "baseline_bytes": baseline, "peak_bytes": _peak_rss_bytes(),
                      "parameter_bytes": model.count_params() * 4, "seconds": seconds}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=475)
    parser.add_argument("--keep", help="write the checkpoint here and keep it")
    parser.add_argument("--write", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        return print(write_checkpoint(args.write, args.resolution))
    if args.load:
        return load_checkpoint(args.load, args.resolution)
    folder = args.keep or tempfile.mkdtemp(prefix="bench_l2_")
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(folder, "model.ckpt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, __file__, f"--write={prefix}", f"--resolution={args.resolution}"],
                   check=True, env=env)
    out = subprocess.run([sys.executable, __file__, f"--load={prefix}", f"--resolution={args.resolution}"],
                         check=True, env=env, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["ratio"] = (result["peak_bytes"] - result["baseline_bytes"]) / result["parameter_bytes"]
    result["target"] = TARGET
    result["checkpoint_bytes"] = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    if not args.keep:
        for f in os.listdir(folder):
            os.remove(os.path.join(folder, f))
        os.rmdir(folder)
    print(json.dumps(result))
    return 0 if result["ratio"] <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
