"""Few-shot Fashion-MNIST: 1, 5, 10 and 25 training images per class, three seeds each, fit_bit
beside the timm/PyTorch reference of bench/fashion_mnist_timm.py at the same settings.

    python bench/few_shot.py --out=runs/few_shot.json --markdown=runs/few_shot.md
    python bench/few_shot.py --quick --markdown=/tmp/few_shot.md     # a smoke run: seconds of training

Each seed draws its k images per class from the 60,000 training images (fit_bit's
`examples_per_class` draw, which the timm run reuses), and seeds the augmentation and MixUp;
both frameworks see the same batches. Accuracy is on the 10,000 test images. The markdown table
(mean ± standard deviation over the seeds, one row per framework, then fit_bit's accuracy minus
timm's on the same draw, mean ± standard deviation over the seeds) is what docs/fine_tuning.md
shows. --out is rewritten after every run; the same command run again skips the runs it already
holds (when its settings match), so a stopped table continues where it stopped.

Defaults: 96-pixel crops, batch 32, 300 steps, base_lr 0.1 at batch 512 (the HyperRule with
total_steps=300: warmup 30, /10 at 90, 180 and 240; no MixUp under 20,000 images). Time on 2 CPU
cores (the per-step times in examples/fashion_mnist_full.py's docstring): about 3 min of training,
1 min of evaluation and half a minute of start-up per run, so the 12 fit_bit runs take about an
hour and the 12 timm runs about as long.
"""

import json
import os
import statistics

import fashion_mnist_timm as timm_run  # first: it imports torch before TensorFlow

import fashion_mnist_common as common  # noqa: E402  (examples/, on the path fashion_mnist_timm set)
import fashion_mnist_full as keras_run  # noqa: E402

QUICK = dict(shots=[1], seeds=[0], total_steps=4, resolution=32, batch_size=8, limit=200)
FRAMEWORKS = {"fit_bit": keras_run, "timm": timm_run}


def run(framework, shots, seed, args, data):
    """Test accuracy and wall seconds of one fine-tune on `shots` images per class."""
    import keras

    (x_train, y_train), (x_test, y_test) = data
    keras.backend.clear_session()
    args.seed = seed
    model, rule, curve = FRAMEWORKS[framework].fine_tune((x_train, y_train), None, args, examples_per_class=shots,
                                                         verbose=0)
    accuracy = FRAMEWORKS[framework].evaluate(model, rule, x_test, y_test)
    return {"framework": framework, "shots": shots, "seed": seed, "test_accuracy": round(accuracy, 4),
            "wall_seconds": round(curve.elapsed(), 1)}


PAIRED = "fit_bit − timm, same draw"


def _cell(values, signed=False):
    """"mean ± std" of `values` to 3 places ("mean" alone for one value, "–" for none: a table
    still being filled); `signed`: the mean with its sign, zero as +0.000."""
    if not values:
        return "–"
    mean = f"{statistics.mean(values):+.3f}".replace("-0.000", "+0.000") if signed else \
        f"{statistics.mean(values):.3f}"
    return mean + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def table(runs, shots):
    """Markdown: one row per framework, mean ± std (over seeds) of the test accuracy per shot count;
    then the mean ± std of fit_bit's accuracy minus timm's over the seeds both ran."""
    lines = ["| images per class | " + " | ".join(str(k) for k in shots) + " |",
             "|---|" + "---|" * len(shots)]
    accuracy = {(r["framework"], r["shots"], r["seed"]): r["test_accuracy"] for r in runs}
    for framework in FRAMEWORKS:
        cells = [_cell([a for (f, n, _), a in accuracy.items() if f == framework and n == k]) for k in shots]
        lines.append(f"| {framework} | " + " | ".join(cells) + " |")
    # per seed, both frameworks trained on the same draw and batches: their difference
    cells = [_cell([a - accuracy[("timm", n, s)] for (f, n, s), a in accuracy.items()
                    if f == "fit_bit" and n == k and ("timm", n, s) in accuracy], signed=True) for k in shots]
    lines.append(f"| {PAIRED} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


KEPT_SETTINGS = ("steps", "resolution", "batch_size", "base_lr", "model")


def finished_runs(path, settings, test_images):
    """The runs already in the --out file `path` that this table may reuse: none when the file is
    absent; a one-line error when it holds a table of other settings."""
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        old = json.load(f)
    differ = [k for k in KEPT_SETTINGS if old.get(k) != settings[k]]
    if old.get("test_images") != test_images:
        differ.append("test_images")
    if differ:
        raise SystemExit(f"--out {path} holds a table of other settings ({', '.join(differ)}); give another "
                         "--out, or delete it to start afresh.")
    return old.get("runs", [])


def write(result, args):
    """--out and --markdown as they stand (atomically: a kill leaves the previous version)."""
    from keras_bigtransfer.weights.atomic import atomic_file

    if args.markdown:
        with atomic_file(args.markdown) as tmp, open(tmp, "w") as f:
            f.write(result["table"])
    if args.out:
        with atomic_file(args.out) as tmp, open(tmp, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")


def main():
    parser = common.add_arguments(common.parser(__doc__), total_steps=300)
    parser.add_argument("--shots", default="1,5,10,25", help="images per class, comma-separated.")
    parser.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated (each draws its own images).")
    parser.add_argument("--markdown", default=None, help="write the table here (Markdown).")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + ".")
    args = parser.parse_args()
    try:
        shots, seeds = ([int(v) for v in getattr(args, name).split(",")] for name in ("shots", "seeds"))
    except ValueError:
        parser.error(f"--shots and --seeds take comma-separated integers; got {args.shots!r}, {args.seeds!r}.")
    if args.quick:
        shots, seeds = QUICK["shots"], QUICK["seeds"]
        for name in ("total_steps", "resolution", "batch_size", "limit"):
            setattr(args, name, QUICK[name])
    if min(shots) < 1 or min(seeds) < 0:
        parser.error(f"--shots must be at least 1 and --seeds at least 0; got {shots}, {seeds}.")
    common.check_arguments(parser, args)

    data = common.load(args.limit)
    settings = common.settings(args, common.rule(shots[0] * common.NUM_CLASSES, args))
    test_images = len(data[1][0])
    done = {(r["framework"], r["shots"], r["seed"]): r for r in finished_runs(args.out, settings, test_images)}
    runs = []

    def result(columns):
        return {**settings, "seed": seeds, "shots": shots, "test_images": test_images, "runs": runs,
                "table": table(runs, columns)}

    for k in shots:
        for seed in seeds:
            for framework in FRAMEWORKS:
                if (framework, k, seed) in done:
                    runs.append(done[(framework, k, seed)])
                    print(f"kept from --out: {json.dumps(runs[-1])}", flush=True)
                    continue
                runs.append(run(framework, k, seed, args, data))
                print(json.dumps(runs[-1]), flush=True)
                write(result(sorted({r["shots"] for r in runs})), args)  # the table so far
    final = result(shots)
    print(final["table"])
    write(final, args)
    print(json.dumps(final))

if __name__ == "__main__":
    main()
