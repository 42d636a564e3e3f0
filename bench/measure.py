"""How the benchmark measures: throughput, training steps and batch-1 latency in alternation,
peak memory in a fresh process, fit_bit against a bare model.fit (TensorFlow), and the peak
memory of loading a large checkpoint."""

import json
import resource
import statistics
import subprocess
import tempfile
import time

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# torch (and timm) first: the CUDA build's triton crashes when loaded after TensorFlow.
import torch  # noqa: E402,F401
import timm  # noqa: E402,F401
import numpy as np  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
RUN = os.path.join(HERE, "run.py")  # the child processes run the command line's hidden modes

from subjects import ALL_SUBJECTS, threads as _threads  # noqa: E402,F401


def _rate(fn, batch, iterations, min_seconds):
    """Images per second over at least `iterations` calls and `min_seconds` (short timings are noise)."""
    calls, start = 0, time.perf_counter()
    while calls < iterations or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return batch * calls / (time.perf_counter() - start)


def _latency_ms(fn, iterations, min_seconds):
    """Median milliseconds of one call over at least `iterations` calls and `min_seconds`."""
    times, start = [], time.perf_counter()
    while len(times) < max(iterations, 3) or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def measure_table(names, size, batch, repeats, iterations=1, min_seconds=3.0, precision="float32", device="cpu",
                  latency=True):
    """Every subject built once and warmed, then `repeats` rounds in alternation (round r
    measures every subject before round r + 1 starts, so machine noise hits all alike).

    Returns {name: {"inference": [img/s per round], "training": [img/s], "latency_ms": [ms]}}
    (no latency with `latency=False`: on an accelerator each batch size is another compilation).
    """
    built = {}
    for name in names:
        print(f"building {name} ({precision}, {device})", file=sys.stderr, flush=True)
        built[name] = ALL_SUBJECTS[name](size, batch, precision=precision, device=device)
        if not latency:
            built[name]["latency"] = None
        for fn in built[name].values():
            if fn is not None:
                fn()  # warm once: tracing, XLA compilation, allocator
    results = {name: {"inference": [], "training": [], "latency_ms": []} for name in names}
    for r in range(repeats):
        for name in names:
            fns, out = built[name], results[name]
            out["inference"].append(_rate(fns["inference"], batch, iterations, min_seconds))
            if fns["training"] is not None:
                out["training"].append(_rate(fns["training"], batch, iterations, min_seconds))
            if fns["latency"] is not None:
                out["latency_ms"].append(_latency_ms(fns["latency"], iterations, min_seconds))
            print(f"repeat {r + 1}/{repeats} {name}: " + ", ".join(
                f"{k} {v[-1]:.3g}" for k, v in out.items() if v), file=sys.stderr, flush=True)
    return results


def _peak_rss_bytes():
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its forking parent's RSS, which
    # is the whole benchmark process here (a run measured every child as 0 above baseline).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure_memory(name, size, batch):
    """Peak RSS of one subject built and run (inference and a training step) in a fresh process."""
    command = [sys.executable, RUN, f"--memory_of={name}", f"--size={size}", f"--batch={batch}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _memory_child(name, size, batch):
    import tensorflow  # noqa: F401  (both frameworks loaded, as in the main run)

    baseline = _peak_rss_bytes()
    fns = ALL_SUBJECTS[name](size, batch)
    fns["inference"]()
    if fns["training"] is not None:
        fns["training"]()
    print(json.dumps({"baseline_bytes": baseline, "peak_bytes": _peak_rss_bytes()}))


# --- fit_bit against a bare model.fit ------------------------------------------------


def measure_fit_bit(size, batch, steps, repeats):
    """fit_bit and a bare model.fit of the same model on the same images, in alternation:
    `repeats` rounds, a ratio per round (one round of 24 steps swung from 0.63 to 1.3)."""
    import keras
    import tensorflow as tf

    import keras_bigtransfer as kb

    rng = np.random.default_rng(0)
    images = (rng.random((batch * 8, size, size, 3)) * 255).astype("uint8")
    labels = rng.integers(0, 10, len(images))

    class StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_end(self, batch_index, logs=None):
            self.times.append(time.perf_counter())

    def rate(clock):
        gaps = np.diff(clock.times[2:])  # the first steps trace and compile
        return batch / float(np.median(gaps))

    def model():
        keras.utils.set_random_seed(0)
        return kb.EfficientNetB0(weights=None, num_classes=10, input_shape=(size, size, 3))

    def fit_bit_rate():
        clock = StepClock()
        kb.fit_bit(model(), (images, labels), batch_size=batch, total_steps=steps, resolution=size,
                   verbose=0, callbacks=[clock])
        return rate(clock)

    def model_fit_rate():
        bare = model()
        bare.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        data = tf.data.Dataset.from_tensor_slices((images.astype("float32") / 255.0, labels))
        data = data.repeat().batch(batch).prefetch(tf.data.AUTOTUNE)
        clock = StepClock()
        bare.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[clock])
        return rate(clock)

    ours, peer = [], []
    for _ in range(repeats):
        ours.append(fit_bit_rate())
        peer.append(model_fit_rate())
    ratios = [a / b for a, b in zip(ours, peer)]
    return {"fit_bit_images_per_s": float(np.median(ours)), "model_fit_images_per_s": float(np.median(peer)),
            "ratio": float(np.median(ratios)), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "target": 0.9, "model": "EfficientNet-B0", "size": size, "batch": batch, "steps": steps,
            "repeats": repeats}


# --- loading a large checkpoint --------------------------------------------------------


def measure_checkpoint_load(constructor="BiT_M_R101x3"):
    """Write the checkpoint in the published .npz layout (one process), load it in another."""
    path = os.path.join(tempfile.mkdtemp(prefix="bench_ckpt_"), f"{constructor}.npz")
    subprocess.run([sys.executable, RUN, f"--write_checkpoint={path}", f"--constructor={constructor}"],
                   check=True)
    out = subprocess.run([sys.executable, RUN, f"--load_checkpoint={path}", f"--constructor={constructor}"],
                         capture_output=True, text=True, check=True).stdout
    os.remove(path)
    result = json.loads(out.strip().splitlines()[-1])
    result["ratio"] = (result["peak_bytes"] - result["baseline_bytes"]) / result["parameter_bytes"]
    result["target"] = 1.5
    return result


def _write_checkpoint(path, constructor):
    import keras_bigtransfer as kb
    from keras_bigtransfer.models.bit import convert as bit

    bit.save_npz(getattr(kb, constructor)(weights=None), path)


def _load_checkpoint(path, constructor):
    import tensorflow  # noqa: F401
    import keras_bigtransfer as kb

    baseline = _peak_rss_bytes()
    start = time.perf_counter()
    model = getattr(kb, constructor)(weights=path)
    seconds = time.perf_counter() - start
    print(json.dumps({"model": constructor, "baseline_bytes": baseline, "peak_bytes": _peak_rss_bytes(),
                      "parameter_bytes": model.count_params() * 4, "seconds": seconds}))
