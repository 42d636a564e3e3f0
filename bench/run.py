"""Benchmark keras_bigtransfer against keras.applications and timm on this machine.

    python bench/run.py                      # the full table (make bench)
    python bench/run.py --repeats=1 --quick  # smoke run: tiny inputs

Everything runs in one process and in alternation (repeat r measures every
subject before repeat r + 1 starts), so machine noise hits all alike; ratios
ours / peer are taken within a repeat and reported as min / median / max.
Peak memory is the one thing measured per subject in a fresh subprocess
(`ru_maxrss` cannot be reset within a process). torch is limited to the same
threads as TensorFlow. Results go to stdout as a table and to --out as JSON.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# torch (and timm) first: the CUDA build's triton crashes when loaded after TensorFlow.
import torch  # noqa: E402
import timm  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _threads():
    return len(os.sched_getaffinity(0))


# --- subjects: a name, a builder, and how to run it ---------------------------------


def keras_subject(build, *, jit=False, bf16=False, train=True):
    def make(size, batch):
        import keras
        import tensorflow as tf

        keras.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
        try:
            model = build(size)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        infer = tf.function(lambda x: model(x, training=False), jit_compile=jit)
        model.compile(
            optimizer=keras.optimizers.SGD(0.001, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        rng = np.random.default_rng(0)
        x = tf.constant(rng.random((batch, size, size, 3), dtype=np.float32))
        y = tf.constant(rng.integers(0, 1000, batch))
        return (lambda: infer(x).numpy()), ((lambda: model.train_on_batch(x, y)) if train else None)

    return make


def saved_model_subject(build):
    def make(size, batch):
        import tensorflow as tf

        from keras_bigtransfer.tfhub import export as publishing

        path = publishing.export(build(size), tempfile.mkdtemp(prefix="bench_sm_"), signature="classification")
        loaded = tf.saved_model.load(path)
        x = tf.constant(np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32))
        return (lambda: loaded(x, training=False).numpy()), None

    return make


def torch_subject(name):
    def make(size, batch):
        model = timm.create_model(name, pretrained=False, num_classes=1000, img_size=size) \
            if "vit" in name else timm.create_model(name, pretrained=False, num_classes=1000)
        x = torch.rand(batch, 3, size, size)
        y = torch.randint(0, 1000, (batch,))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

        def infer():
            model.eval()
            with torch.inference_mode():
                model(x)

        def train():
            model.train()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

        return infer, train

    return make


def _ours(constructor, **kwargs):
    def build(size):
        import keras_bigtransfer as kb

        return getattr(kb, constructor)(weights=None, num_classes=1000, input_shape=(size, size, 3), **kwargs)

    return build


def _keras_app(name):
    def build(size):
        import keras

        return getattr(keras.applications, name)(
            weights=None, classes=1000, input_shape=(size, size, 3), classifier_activation=None
        )

    return build


SUBJECTS = {
    "ours BiT-M-R50x1": keras_subject(_ours("BiT_M_R50x1")),
    "ours BiT-M-R50x1 XLA": keras_subject(_ours("BiT_M_R50x1"), jit=True, train=False),
    "ours BiT-M-R50x1 bf16": keras_subject(_ours("BiT_M_R50x1"), bf16=True, train=False),
    "ours BiT-M-R50x1 SavedModel (WS folded)": saved_model_subject(_ours("BiT_M_R50x1")),
    "keras.applications ResNet50V2": keras_subject(_keras_app("ResNet50V2")),
    "timm resnetv2_50x1_bit": torch_subject("resnetv2_50x1_bit"),
    "ours EfficientNet-B0": keras_subject(_ours("EfficientNetB0")),
    "ours EfficientNet-B0 XLA": keras_subject(_ours("EfficientNetB0"), jit=True, train=False),
    "ours EfficientNet-B0 bf16": keras_subject(_ours("EfficientNetB0"), bf16=True, train=False),
    "ours EfficientNet-B0 SavedModel": saved_model_subject(_ours("EfficientNetB0")),
    "keras.applications EfficientNetB0": keras_subject(_keras_app("EfficientNetB0")),
    "timm tf_efficientnet_b0": torch_subject("tf_efficientnet_b0"),
    "ours ViT-B/16": keras_subject(_ours("ViT_B16")),
    "ours ViT-B/16 XLA": keras_subject(_ours("ViT_B16"), jit=True, train=False),
    "ours ViT-B/16 bf16": keras_subject(_ours("ViT_B16"), bf16=True, train=False),
    "ours ViT-B/16 SavedModel": saved_model_subject(_ours("ViT_B16")),
    "timm vit_base_patch16_224": torch_subject("vit_base_patch16_224"),
}

# Option rows (inference only; XLA training compiles for minutes on 2 cores).
OPTIONS = ("XLA", "bf16", "SavedModel")

# (ours, peer, target ratio or None): the rows of the ratio table.
COMPARISONS = [
    ("ours BiT-M-R50x1", "keras.applications ResNet50V2", 0.8),
    ("ours BiT-M-R50x1", "timm resnetv2_50x1_bit", 2.5),
    ("ours BiT-M-R50x1 XLA", "keras.applications ResNet50V2", None),
    ("ours BiT-M-R50x1 bf16", "keras.applications ResNet50V2", None),
    ("ours BiT-M-R50x1 SavedModel (WS folded)", "keras.applications ResNet50V2", None),
    ("ours EfficientNet-B0", "keras.applications EfficientNetB0", 1.0),
    ("ours EfficientNet-B0", "timm tf_efficientnet_b0", None),
    ("ours EfficientNet-B0 XLA", "keras.applications EfficientNetB0", None),
    ("ours EfficientNet-B0 bf16", "keras.applications EfficientNetB0", None),
    ("ours EfficientNet-B0 SavedModel", "keras.applications EfficientNetB0", None),
    ("ours ViT-B/16", "timm vit_base_patch16_224", 1.5),
    ("ours ViT-B/16 XLA", "timm vit_base_patch16_224", None),
    ("ours ViT-B/16 bf16", "timm vit_base_patch16_224", None),
    ("ours ViT-B/16 SavedModel", "timm vit_base_patch16_224", None),
]


def _rate(fn, batch, iterations, min_seconds):
    """Images per second over at least `iterations` calls and `min_seconds` (short timings are noise)."""
    calls, start = 0, time.perf_counter()
    while calls < iterations or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return batch * calls / (time.perf_counter() - start)


def measure_throughput(names, size, batch, repeats, iterations, min_seconds=3.0):
    built = {}
    for name in names:
        print(f"building {name}", file=sys.stderr, flush=True)
        built[name] = SUBJECTS[name](size, batch)
        for fn in built[name]:
            if fn is not None:
                fn()  # warm once: tracing, XLA compilation, allocator
    results = {name: {"inference": [], "training": []} for name in names}
    for r in range(repeats):
        for name in names:
            infer, train = built[name]
            results[name]["inference"].append(_rate(infer, batch, iterations, min_seconds))
            if train is not None:
                results[name]["training"].append(_rate(train, batch, iterations, min_seconds))
            print(f"repeat {r + 1}/{repeats} {name}: {results[name]}", file=sys.stderr, flush=True)
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
    command = [sys.executable, __file__, f"--memory_of={name}", f"--size={size}", f"--batch={batch}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _memory_child(name, size, batch):
    import tensorflow  # noqa: F401  (both frameworks loaded, as in the main run)

    baseline = _peak_rss_bytes()
    infer, train = SUBJECTS[name](size, batch)
    infer()
    if train is not None:
        train()
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
    subprocess.run([sys.executable, __file__, f"--write_checkpoint={path}", f"--constructor={constructor}"],
                   check=True)
    out = subprocess.run([sys.executable, __file__, f"--load_checkpoint={path}", f"--constructor={constructor}"],
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


# --- report ---------------------------------------------------------------------------


def _spread(values):
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else None


def ratios(results):
    rows = []
    for ours, peer, target in COMPARISONS:
        if ours not in results or peer not in results:
            continue
        row = {"ours": ours, "peer": peer, "target": target}
        for kind in ("inference", "training"):
            a, b = results[ours][kind], results[peer][kind]
            if a and b:
                row[kind] = _spread([x / y for x, y in zip(a, b)])
        rows.append(row)
    return rows


def render(report):
    lines = [f"machine: {report['machine']}", "",
             "| ours | peer | inference ratio (min / median / max) | training ratio | target (inference) |",
             "|---|---|---|---|---|"]
    fmt = lambda s: f"{s['min']:.2f} / **{s['median']:.2f}** / {s['max']:.2f}" if s else "-"  # noqa: E731
    for row in report["ratios"]:
        target = "-" if row["target"] is None else (
            f"≥ {row['target']} {'met' if row['inference']['median'] >= row['target'] else 'MISSED'}")
        lines.append(f"| {row['ours']} | {row['peer']} | {fmt(row.get('inference'))} | "
                     f"{fmt(row.get('training'))} | {target} |")
    lines += ["", "| subject | inference img/s (median) | training img/s (median) | peak RSS |", "|---|---|---|---|"]
    for name, r in report["throughput"].items():
        mem = report["memory"].get(name)
        mem = f"{(mem['peak_bytes'] - mem['baseline_bytes']) / 2**30:.2f} GiB" if mem and "error" not in mem else "-"
        train = f"{statistics.median(r['training']):.1f}" if r["training"] else "-"
        lines.append(f"| {name} | {statistics.median(r['inference']):.1f} | {train} | {mem} |")
    if report.get("fit_bit") and "error" not in report["fit_bit"]:
        f = report["fit_bit"]
        lines += ["", f"fit_bit vs bare model.fit ({f['model']}, {f['size']} px, batch {f['batch']}): "
                      f"{f['fit_bit_images_per_s']:.1f} vs {f['model_fit_images_per_s']:.1f} img/s (medians), "
                      f"ratio {f.get('ratio_min', f['ratio']):.2f} / **{f['ratio']:.2f}** / "
                      f"{f.get('ratio_max', f['ratio']):.2f} (target ≥ {f['target']})"]
    if report.get("checkpoint_load") and "error" not in report["checkpoint_load"]:
        c = report["checkpoint_load"]
        lines += [f"checkpoint load ({c['model']}, published .npz): peak RSS above baseline "
                  f"{(c['peak_bytes'] - c['baseline_bytes']) / 2**30:.2f} GiB for "
                  f"{c['parameter_bytes'] / 2**30:.2f} GiB of parameters = {c['ratio']:.2f}x "
                  f"(target ≤ {c['target']}x), {c['seconds']:.1f} s"]
    return "\n".join(lines)


def _machine():
    import tensorflow as tf

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {_threads()} threads, TensorFlow {tf.__version__}, torch {torch.__version__}, "
            f"timm {timm.__version__}, Python {platform.python_version()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=1, help="at least this many timed calls")
    parser.add_argument("--min_seconds", type=float, default=3.0, help="and at least this long")
    parser.add_argument("--only", default="", help="comma-separated substrings of subject names")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: memory,fit_bit,load")
    parser.add_argument("--out", default=os.path.join(HERE, "results.json"))
    parser.add_argument("--reuse_throughput", help="take the throughput part from this earlier results JSON")
    parser.add_argument("--memory_of", help=argparse.SUPPRESS)
    parser.add_argument("--write_checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--load_checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--constructor", default="BiT_M_R101x3", help="the large checkpoint to load")
    args = parser.parse_args()

    torch.set_num_threads(_threads())
    if args.memory_of:
        return _memory_child(args.memory_of, args.size, args.batch)
    if args.write_checkpoint:
        return _write_checkpoint(args.write_checkpoint, args.constructor)
    if args.load_checkpoint:
        return _load_checkpoint(args.load_checkpoint, args.constructor)

    names = [n for n in SUBJECTS if not args.only or any(s in n for s in args.only.split(","))]
    skip = set(filter(None, args.skip.split(",")))
    report = {"machine": _machine(), "size": args.size, "batch": args.batch, "repeats": args.repeats,
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    if args.reuse_throughput:
        with open(args.reuse_throughput) as f:
            earlier = json.load(f)
        report.update({k: earlier[k] for k in ("machine", "command", "repeats", "throughput")})
    else:
        report["throughput"] = measure_throughput(names, args.size, args.batch, args.repeats, args.iterations,
                                                  args.min_seconds)
    report["ratios"] = ratios(report["throughput"])
    report["memory"], report["fit_bit"], report["checkpoint_load"] = {}, None, None
    _write(report, args.out)  # the long part is safe before the rest runs
    if "memory" not in skip:
        for n in report["throughput"]:
            if not any(o in n for o in OPTIONS):
                report["memory"][n] = _guarded(measure_memory, n, args.size, args.batch)
    if "fit_bit" not in skip:
        report["fit_bit"] = _guarded(measure_fit_bit, min(args.size, 128), args.batch, 24, args.repeats)
    if "load" not in skip:
        report["checkpoint_load"] = _guarded(measure_checkpoint_load, args.constructor)
    text = render(report)
    print(text)
    _write(report, args.out, text)


def _guarded(fn, *args):
    """A failed measurement is reported, not allowed to discard the others."""
    try:
        return fn(*args)
    except Exception as error:  # noqa: BLE001 - any failure becomes a row in the report
        print(f"{fn.__name__} failed: {error}", file=sys.stderr)
        return {"error": f"{type(error).__name__}: {error}"}


def _write(report, out, text=None):
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    if text is not None:
        with open(os.path.splitext(out)[0] + ".md", "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
