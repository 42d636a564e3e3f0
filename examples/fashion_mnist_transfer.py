"""Fine-tune on 100 Fashion-MNIST images per class with fit_bit: pretrained vs scratch.

    python examples/fashion_mnist_transfer.py --model=EfficientNetLite0 --steps=200 --base_lr=0.1
    python examples/fashion_mnist_transfer.py --steps=100 --save_model=/tmp/fashion_lite0.keras

--save_model writes the fine-tuned model as a `.keras` file (written atomically: a reader never
sees half a file), e.g. to export it to LiteRT int8 afterwards (docs/deployment.md).
"""

import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "EfficientNetLite0", "keras_bigtransfer constructor.")
flags.DEFINE_integer("steps", 200, "total_steps for fit_bit.")
flags.DEFINE_float("base_lr", 0.1, "learning rate at batch 512 (scaled by batch/512).")
flags.DEFINE_integer("batch_size", 32, "batch size.")
flags.DEFINE_integer("per_class", 100, "training images per class.")
flags.DEFINE_integer("test_images", 2000, "held-out test images.")
flags.DEFINE_integer("seed", 0, "data draw and pipeline seed.")
flags.DEFINE_boolean("scratch", False, "random initialization instead of the pretrained weights.")
flags.DEFINE_string("export", None, "write a TF Hub SavedModel of the fine-tuned model here.")
flags.DEFINE_string("save_model", None, "write the fine-tuned model here (a .keras file).")
flags.DEFINE_boolean("freeze_batch_norm", False, "keep the pretrained BatchNorm statistics (fit_bit's "
                     "freeze_batch_norm): the model int8 quantization keeps best (docs/deployment.md).")
FLAGS = flags.FLAGS


def run(model_name, steps, base_lr, batch_size, per_class, test_images, seed, scratch, export=None,
        verbose=0, save_model=None, freeze_batch_norm=False):
    """Returns (held-out accuracy, seconds spent in fit_bit)."""
    import keras
    import numpy as np

    import keras_bigtransfer as kb
    from keras_bigtransfer.datasets import fashion_mnist, per_class_subset
    from keras_bigtransfer.weights.atomic import atomic_file

    if save_model and not save_model.endswith(".keras"):  # before the training, not after
        raise app.UsageError(f"--save_model must name a .keras file; got {save_model!r}.")

    (x_train, y_train), (x_test, y_test) = fashion_mnist()
    x_small, y_small = per_class_subset(x_train, y_train, per_class, seed=seed)
    rng = np.random.default_rng(1234)  # the same held-out images for every run
    test_index = rng.choice(len(x_test), test_images, replace=False)
    keras.utils.set_random_seed(seed)
    model = getattr(kb, model_name)(weights=None if scratch else getattr(kb, model_name).__kwdefaults__["weights"],
                                    num_classes=10)
    start = time.perf_counter()
    history = kb.fit_bit(model, (x_small, y_small), (x_test[test_index], y_test[test_index]),
                         batch_size=batch_size, base_lr=base_lr, total_steps=steps, seed=seed,
                         verbose=verbose, freeze_batch_norm=freeze_batch_norm)
    elapsed = time.perf_counter() - start
    if export:
        kb.hub.export(model, export, signature="classification")
    if save_model:
        with atomic_file(save_model, suffix=".keras") as tmp:
            model.save(tmp)
    return history.history["val_accuracy"][-1], elapsed


def main(argv):
    del argv
    accuracy, elapsed = run(FLAGS.model, FLAGS.steps, FLAGS.base_lr, FLAGS.batch_size, FLAGS.per_class,
                            FLAGS.test_images, FLAGS.seed, FLAGS.scratch, FLAGS.export, verbose=2,
                            save_model=FLAGS.save_model, freeze_batch_norm=FLAGS.freeze_batch_norm)
    print(json.dumps({"model": FLAGS.model, "init": "scratch" if FLAGS.scratch else "pretrained",
                      "steps": FLAGS.steps, "base_lr": FLAGS.base_lr, "batch_size": FLAGS.batch_size,
                      "seed": FLAGS.seed, "heldout_accuracy": round(float(accuracy), 4),
                      "fit_seconds": round(elapsed, 1)}))


if __name__ == "__main__":
    app.run(main)
