"""The accelerator table (issue 27 item 6): run.py's subjects on one GPU, every backend.

    python bench/gpu.py                          # everything below (tens of minutes: compiling)
    python bench/gpu.py --budget_s=420           # about 8 minutes, most important settings first
    python bench/report.py --docs                # then: docs/benchmarks.md's GPU tables
    python bench/gpu.py --allow-cpu --quick      # smoke test of the script on a machine without one

At 224 px: batch 64 and 256, float32 and bfloat16 mixed precision (Keras: the
`mixed_bfloat16` policy set before the model is built; timm: `torch.autocast(dtype=bfloat16)`),
inference images/s (`predict_on_batch`) and one training step (`train_on_batch`, SGD), plus
batch-1 latency at the smallest batch's settings, for BiT-M-R50x1 vs keras.applications
ResNet50V2 vs timm resnetv2_50x1_bit, EfficientNet-B0 vs keras.applications EfficientNetB0 vs
timm tf_efficientnet_b0, ViT-B/16 vs timm vit_base_patch16_224, on TensorFlow, JAX and PyTorch;
then fit_bit's training throughput (EfficientNet-B0, 224 px, batch 64, float32) per backend.

Each (setting, backend) runs in its own child process (KERAS_BACKEND set; TensorFlow with
memory growth and JAX without preallocation, so that timm's PyTorch shares the card), the
subjects alternating within it, ratios ours / peer within a repeat as in run.py. Keras compiles
as `compile()` does by default (`jit_compile="auto"`: XLA on TensorFlow and JAX with a GPU,
eager on PyTorch); `torch.backends.cudnn.benchmark` is on for both PyTorch users (Keras on
torch and timm), as timm's own benchmark script sets it. Inputs are already on the device.

Order and budget: the settings run batch 64 float32, batch 64 bfloat16, batch 256 float32,
batch 256 bfloat16, then fit_bit, each over TensorFlow, JAX, PyTorch; the JSON and Markdown
are rewritten after every child, so a run cut short keeps what it measured. `--budget_s=N`
starts no child after N seconds and stops a running one at N + 60 (recorded as skipped or
failed in the output).

How to fit ~8 minutes on one H100 (an estimate, not measured yet: about 20 s to start each
child, and XLA compiling each Keras model's predict and train steps, some 10-30 s a model per
setting on TensorFlow and JAX): `python bench/gpu.py --budget_s=420 --repeats=3
--min_seconds=1` (the defaults) gives batch 64 in both precisions on all three backends at
least; for the whole table in one go, give it 25-35 minutes, or split it by `--batches` /
`--precisions` / `--backend` into runs under 10 minutes each, then merge the JSON files with
`--merge A.json B.json ...`. Subjects can be narrowed with `--only` (e.g. `--only=efficientnet`).

Without a GPU it says so in one line and exits 1 (`--allow-cpu` runs it on the CPU, for a
smoke test). Writes bench/results_gpu.json and .md (`--out`; a smoke run writes to the
temporary directory).
"""

import argparse
import datetime
import json
import re
import subprocess
import tempfile
import time

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("float32", "bfloat16")
# Let TensorFlow's and JAX's allocators share the card with PyTorch's (in the same process).
SHARE_DEVICE = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def _ints(text):
    return [int(x) for x in text.split(",") if x.strip()]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default=",".join(BACKENDS), help="comma-separated: tensorflow,jax,torch")
    p.add_argument("--batches", default="64,256", help="comma-separated batch sizes")
    p.add_argument("--precisions", default="float32,bfloat16", help="comma-separated: float32,bfloat16")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iterations", type=int, default=3, help="at least this many timed calls")
    p.add_argument("--min_seconds", type=float, default=1.0, help="and at least this long")
    p.add_argument("--only", default="", help="comma-separated substrings of subject names (any case)")
    p.add_argument("--fit_bit_steps", type=int, default=30, help="0: no fit_bit measurement")
    p.add_argument("--budget_s", type=float, default=0, help="start no child after this many seconds (0: none)")
    p.add_argument("--allow-cpu", dest="allow_cpu", action="store_true", help="run without a GPU (smoke test)")
    p.add_argument("--quick", action="store_true", help="one tiny pair, 32 px, batch 2, one repeat, 3 fit_bit steps")
    p.add_argument("--merge", nargs="+", help="merge these results_gpu JSON files into --out and stop")
    p.add_argument("--out", help="default bench/results_gpu.json; with --quick or --allow-cpu "
                                 "bench_gpu_smoke.json in the temporary directory")
    p.add_argument("--child", help=argparse.SUPPRESS)  # "table:BATCH:PRECISION:LATENCY" or "fit_bit"
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if not args.backends or any(b not in BACKENDS for b in args.backends):
        p.error(f"--backend: expected some of {', '.join(BACKENDS)}, got {args.backend!r}")
    try:
        args.batch_list = _ints(args.batches)
    except ValueError:
        args.batch_list = []
    if not args.batch_list or min(args.batch_list) < 1:
        p.error(f"--batches: expected positive integers separated by commas, got {args.batches!r}")
    args.precision_list = [x.strip() for x in args.precisions.split(",") if x.strip()]
    if not args.precision_list or any(x not in PRECISIONS for x in args.precision_list):
        p.error(f"--precisions: expected some of {', '.join(PRECISIONS)}, got {args.precisions!r}")
    # A smoke run never lands in the results file the docs are generated from.
    args.out = args.out or (os.path.join(tempfile.gettempdir(), "bench_gpu_smoke.json")
                            if args.quick or args.allow_cpu else os.path.join(HERE, "results_gpu.json"))
    if args.quick:
        args.size, args.batch_list, args.repeats, args.iterations, args.min_seconds = 32, [2], 1, 1, 0.0
        args.fit_bit_steps = min(args.fit_bit_steps, 3)
    return args


def device_name():
    """The card's name (and the driver's view of its memory), or None without a CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30
    return f"{name}, {memory:.0f} GiB, CUDA {torch.version.cuda}, {torch.cuda.device_count()} visible"


def main(argv=None):
    args = parse(argv)
    if args.child:
        return _child(args)
    from report import loadavg, machine, render_markdown, write

    if args.merge:
        report = merge(args.merge)
        write(report, args.out, render_markdown(report))
        return 0
    name = device_name()
    if name is None and not args.allow_cpu:
        print("bench/gpu.py: no CUDA GPU here (torch.cuda.is_available() is False); "
              "--allow-cpu runs it on the CPU as a smoke test", file=sys.stderr)
        return 1
    device = "cuda" if name else "cpu"
    report = {"format": 2, "kind": "gpu", "command": " ".join(["python", "bench/gpu.py", *(
        sys.argv[1:] if argv is None else argv)]), "started": _now(), "size": args.size,
        "repeats": args.repeats, "device": device, "device_name": name or "none (--allow-cpu: CPU)",
        "machine": machine(), "load_before": loadavg(), "backends": {}, "fit_bit": [], "skipped": []}
    jobs = [(f"table:{batch}:{precision}:{int(batch == min(args.batch_list))}", backend)
            for batch in args.batch_list for precision in args.precision_list for backend in args.backends]
    if args.fit_bit_steps:
        jobs += [("fit_bit", backend) for backend in args.backends]
    start = time.perf_counter()
    for job, backend in jobs:
        elapsed = time.perf_counter() - start
        if args.budget_s and elapsed > args.budget_s:
            report["skipped"].append(f"{job} on {backend} (budget of {args.budget_s:.0f} s spent)")
            continue
        timeout = args.budget_s - elapsed + 60 if args.budget_s else None
        print(f"=== {job} on {backend} ({elapsed:.0f} s in)", file=sys.stderr, flush=True)
        result = _run_child(args, job, backend, device, timeout)
        _add(report, job, backend, result)
        report["finished"] = _now()
        report["load_after"] = loadavg()
        write(report, args.out, render_markdown(report))
    print(render_markdown(report))
    return 0


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _run_child(args, job, backend, device, timeout):
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        out = os.path.join(tmp, "child.json")
        passed = [f"--{k}={getattr(args, k)}" for k in ("size", "repeats", "iterations", "min_seconds", "only",
                                                        "fit_bit_steps")]
        command = [sys.executable, os.path.abspath(__file__), f"--child={job}", f"--backend={backend}",
                   f"--out={out}", *passed, *(["--allow-cpu"] if device == "cpu" else []),
                   *(["--quick"] if args.quick else [])]
        try:
            done = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND=backend, **SHARE_DEVICE),
                                  timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except subprocess.TimeoutExpired:
            return {"error": f"stopped after {timeout:.0f} s (--budget_s)"}
        sys.stderr.write(done.stderr[-4000:])
        if done.returncode:
            said = [line for line in done.stderr.strip().splitlines()
                    if not re.match(r"[IWEF]\d{4} |WARNING: All", line)]  # not TensorFlow's log lines
            return {"error": f"exit {done.returncode}: {(said or ['no output'])[-1]}"}
        with open(out) as f:
            return json.load(f)


def _add(report, job, backend, result):
    if job == "fit_bit":
        report["fit_bit"].append({"backend": backend, **result})
        return
    _, batch, precision, _ = job.split(":")
    entry = report["backends"].setdefault(backend, {"runs": []})
    if "error" in result:
        report["skipped"].append(f"{job} on {backend}: {result['error']}")
        return
    entry["engine"] = result["engine"]
    entry.setdefault("load_before", result["load_before"])
    entry["load_after"] = result["load_after"]
    entry["runs"].append({"batch": int(batch), "precision": precision, **result["run"]})


def merge(paths):
    """Several gpu.py JSON files (runs split to fit a time limit) as one report."""
    reports = []
    for path in paths:
        with open(path) as f:
            reports.append(json.load(f))
    first = reports[0]
    merged = dict(first, backends={}, fit_bit=[], skipped=[],
                  command=" + ".join(r["command"] for r in reports), finished=reports[-1].get("finished"))
    for r in reports:
        for b, entry in r["backends"].items():
            into = merged["backends"].setdefault(b, {"runs": []})
            for key in ("engine", "load_before"):
                into.setdefault(key, entry.get(key))
            into["load_after"] = entry.get("load_after")
            into["runs"] += entry["runs"]
        merged["fit_bit"] += r.get("fit_bit", [])
        merged["skipped"] += r.get("skipped", [])
    return merged


def _child(args):
    import timm  # noqa: F401  (torch and timm before TensorFlow: the CUDA build's triton crashes after it)
    import torch

    from report import engine, loadavg, ratios, write

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        raise SystemExit("bench/gpu.py child: no CUDA GPU")
    torch.backends.cudnn.benchmark = True
    backend = os.environ["KERAS_BACKEND"]
    result = {"engine": engine(), "load_before": loadavg()}
    if args.child == "fit_bit":
        result.update(measure_fit_bit_throughput(args.size, 64 if not args.quick else 2, args.fit_bit_steps))
    else:
        from measure import measure_table
        from subjects import subjects_for

        _, batch, precision, latency = args.child.split(":")
        names = subjects_for(backend, quick=args.quick, only=args.only)
        throughput = measure_table(names, args.size, int(batch), args.repeats, args.iterations, args.min_seconds,
                                   precision=precision, device="cuda" if cuda else "cpu", latency=latency == "1")
        result["run"] = {"throughput": throughput, "ratios": ratios(throughput, backend)}
    result["load_after"] = loadavg()
    write(result, args.out)
    return 0


def measure_fit_bit_throughput(size, batch, steps):
    """fit_bit on EfficientNet-B0 (random weights, 10 classes, uint8 images at `size`): images/s
    over the steps after the first two (those trace and compile), median of the step gaps."""
    import keras
    import numpy as np

    import keras_bigtransfer as kb

    times = []

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch_index, logs=None):
            times.append(time.perf_counter())

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * 4, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, len(images))
    model = kb.EfficientNetB0(weights=None, num_classes=10)
    start = time.perf_counter()
    kb.fit_bit(model, (images, labels), batch_size=batch, total_steps=steps, resolution=size, verbose=0,
               callbacks=[StepClock()])
    gaps = np.diff(times[2:])
    return {"model": "EfficientNet-B0", "size": size, "batch": batch, "precision": "float32", "steps": steps,
            "images_per_s": float(batch / np.median(gaps)) if len(gaps) else None,
            "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    sys.exit(main())
