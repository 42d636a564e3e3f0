"""The main job, end to end on this machine (no downloads).

1. Build BiT-M-R50x1 as a native Keras model.
2. Write a checkpoint in the published BiT .npz layout, then load it back through
   the same path a downloaded `BiT-M-R50x1.npz` takes (strict key check included).
3. Classify scikit-image's sample photos and print the top-5 with timings.
4. Export a TF Hub reusable SavedModel (weight standardization folded in), reload it
   with plain TensorFlow, and compare outputs and speed.

The weights here are random (this machine cannot reach storage.googleapis.com), so
the classes are meaningless: the demo shows the pipeline and its speed. With a
real `BiT-M-R50x1.npz` in hand, pass its path as the only argument.
"""

import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_bigtransfer as kb  # noqa: E402
from keras_bigtransfer.hub.convert import bit as bit_convert  # noqa: E402

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")
SIZE = 224


def photos():
    images = [getattr(skimage.data, name)() for name in PHOTOS]
    batch = [tf.image.resize(tf.convert_to_tensor(im), (SIZE, SIZE), antialias=True) for im in images]
    return np.stack([b.numpy() for b in batch]) / 255.0


def best_of(repeats, fn):
    """(fastest wall time, result) over `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv):
    with tempfile.TemporaryDirectory() as tmp:
        if len(argv) > 1:
            checkpoint = argv[1]
        else:
            checkpoint = os.path.join(tmp, "BiT-M-R50x1.npz")
            source = kb.BiT_M_R50x1(weights=None)
            head = source.get_layer("head")  # BiT heads start at zero; give this one a voice
            head.kernel.assign(np.random.default_rng(0).normal(0, 0.05, head.kernel.shape))
            bit_convert.save_npz(source, checkpoint)
            print(f"wrote a random-weight checkpoint in the published layout: {checkpoint} "
                  f"({os.path.getsize(checkpoint) / 1e6:.0f} MB)")

        start = time.perf_counter()
        model = kb.BiT_M_R50x1(weights=checkpoint)
        print(f"built {model.name} and loaded {os.path.basename(checkpoint)} "
              f"({model.count_params() / 1e6:.2f}M parameters) in {time.perf_counter() - start:.1f} s")

    images = photos().astype("float32")
    model.predict(images, verbose=0)  # trace once for this shape
    elapsed, logits = best_of(3, lambda: model.predict(images, verbose=0))
    print(f"classified {len(images)} photos at {SIZE}x{SIZE} in {elapsed * 1000:.0f} ms (best of 3) "
          f"({len(images) / elapsed:.1f} images/s on {os.cpu_count()} CPU cores)")

    probs = tf.nn.softmax(logits).numpy()
    for name, p in zip(PHOTOS, probs):
        top = np.argsort(p)[::-1][:5]
        ranked = ", ".join(f"class {i} ({p[i]:.4f})" for i in top)
        print(f"  {name:10s} top-5 of {p.size}: {ranked}")

    with tempfile.TemporaryDirectory() as tmp:
        exported = kb.hub.export(model, os.path.join(tmp, "bit_m_r50x1"), signature="classification")
        served = tf.saved_model.load(exported)
        served(images)  # trace once
        served_elapsed, served_logits = best_of(3, lambda: served(images).numpy())
    print(f"exported a TF Hub SavedModel; reloaded with tf.saved_model.load: max |logit difference| "
          f"{np.abs(served_logits - logits).max():.1e}, {len(images) / served_elapsed:.1f} images/s "
          "(weight standardization folded into the kernels)")


if __name__ == "__main__":
    main(sys.argv)
