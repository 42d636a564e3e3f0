"""Where a model's CPU time goes: TF profiler trace of inference, summed per op type.

    python bench/op_profile.py BiT_M_R50x1 [--size=224] [--batch=16] [--calls=2] [--training]

Prints each op type's share of the compute threads' busy time (what the docs'
benchmark page quotes when a target is missed).
"""

import argparse
import collections
import glob
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def op_times(trace_dir):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "*.xplane.pb")))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue  # the inter-op threads that run kernels
            for event in line.events:
                name = names.get(event.metadata_id, "").split(":")[-1]
                if name != "Process":  # the executor's envelope around the kernels, not a kernel
                    totals[name] += event.duration_ps / 1e9  # ms
    return totals


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("constructor")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--training", action="store_true", help="profile a training step instead")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    import keras

    import keras_bigtransfer as kb

    model = getattr(kb, args.constructor)(weights=None, num_classes=1000, input_shape=(args.size, args.size, 3))
    x = tf.constant(np.random.default_rng(0).random((args.batch, args.size, args.size, 3), dtype=np.float32))
    y = tf.constant(np.zeros(args.batch, "int64"))
    if args.training:
        model.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        run = lambda: model.train_on_batch(x, y)  # noqa: E731
    else:
        infer = tf.function(lambda images: model(images, training=False))
        run = lambda: infer(x).numpy()  # noqa: E731
    run()
    trace = tempfile.mkdtemp(prefix="profile_")
    tf.profiler.experimental.start(trace)
    for _ in range(args.calls):
        run()
    tf.profiler.experimental.stop()
    totals = op_times(trace)
    busy = sum(totals.values())
    print(f"{args.constructor} {'training' if args.training else 'inference'}, batch {args.batch} at "
          f"{args.size}: {busy:.0f} ms of kernel time over {args.calls} calls")
    for name, ms in totals.most_common(args.top):
        print(f"  {100 * ms / busy:5.1f}%  {ms:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
