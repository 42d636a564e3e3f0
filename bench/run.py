"""Benchmark keras_bigtransfer against keras.applications and timm on this machine (CPU).

    python bench/run.py                 # issue 27's table on every backend + first steps (make bench)
    python bench/run.py --quick         # smoke run: one tiny pair, 32 px, batch 2, one repeat
    python bench/report.py --docs       # then: docs/benchmarks.md's tables from the JSON

The default is what users run at a realistic size: 224 px, batch 16 inference throughput and
one training step (`train_on_batch`, SGD), plus batch-1 latency, for BiT-M-R50x1 vs
keras.applications ResNet50V2 vs timm resnetv2_50x1_bit, EfficientNet-B0 vs keras.applications
EfficientNetB0 vs timm tf_efficientnet_b0, and ViT-B/16 vs timm vit_base_patch16_224, on
TensorFlow, JAX and PyTorch: one process per backend (a backend is fixed when Keras is
imported), keras.applications on that backend and timm in the same process. Within a process
the subjects alternate (repeat r measures every subject before repeat r + 1), so machine noise
hits all alike; ratios ours / peer are taken within a repeat and reported as min / median /
max of `--repeats` (5). torch runs on the same threads as the Keras backend.

Then the first steps (`--parts=first_steps`, bench/first_steps.py): per backend, in fresh
processes alternating between backends, the time from process start to the first prediction
of EfficientNet-Lite0 built from a local checkpoint file, and `fit_bit`'s time for 12 steps at
batch 16 and 64 px (issue 27 item 3).

The output names the machine and its load: CPU model, cores, threads, memory, load average
(`os.getloadavg()`) before and after each part, versions. Results go to --out as JSON
(default bench/results_cpu.json) and Markdown beside it; `bench/report.py --docs` copies the
tables into docs/benchmarks.md. Opt-in parts (TensorFlow process): `options` (XLA, bfloat16
and SavedModel rows), `memory` (peak RSS per subject, each in a fresh process), `fit_bit`
(fit_bit vs a bare model.fit), `load` (peak memory of loading BiT-M-R101x3).

Duration on 2 cores, alone on the machine: 40 minutes at the defaults, measured 2026-12-06
(the table 10.5 min on TensorFlow, 14 on JAX; PyTorch's table and the first steps 15 together).
"""

import argparse
import datetime
import json
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
PARTS = ("table", "first_steps", "options", "memory", "fit_bit", "load")
DEFAULT_PARTS = "table,first_steps"
FIRST_STEPS_MODEL = "tf_efficientnet_lite0"  # timm's name: its state dict is the local checkpoint


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default=",".join(BACKENDS),
                   help="comma-separated Keras backends (tensorflow,jax,torch); one process each")
    p.add_argument("--parts", default=DEFAULT_PARTS, help=f"comma-separated, of {','.join(PARTS)}")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--iterations", type=int, default=1, help="at least this many timed calls")
    p.add_argument("--min_seconds", type=float, default=3.0, help="and at least this long")
    p.add_argument("--only", default="", help="comma-separated substrings of subject names (any case)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch's threads (default: the CPUs this process may use, as the Keras backend)")
    p.add_argument("--first_steps_repeats", type=int, default=2, help="fresh processes per backend")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: a 2-block ViT-Ti/16 vs timm's, 32 px, batch 2, 1 repeat; first steps 2 steps")
    p.add_argument("--out", help="results JSON (and .md beside it); default bench/results_cpu.json "
                                 "(--quick: bench_quick.json in the temporary directory)")
    p.add_argument("--constructor", default="BiT_M_R101x3", help="the large checkpoint of the load part")
    # Hidden modes: the children this command starts.
    p.add_argument("--table_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--memory_of", help=argparse.SUPPRESS)
    p.add_argument("--write_checkpoint", help=argparse.SUPPRESS)
    p.add_argument("--load_checkpoint", help=argparse.SUPPRESS)
    return p


def parse(argv=None):
    """The command line, checked (one-line errors, exit 2) before anything is imported or run."""
    p = parser()
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    unknown = [b for b in args.backends if b not in BACKENDS]
    if not args.backends or unknown:
        p.error(f"--backend: expected some of {', '.join(BACKENDS)}, got {args.backend!r}")
    args.part_list = [s.strip() for s in args.parts.split(",") if s.strip()]
    if not args.part_list or any(s not in PARTS for s in args.part_list):
        p.error(f"--parts: expected some of {', '.join(PARTS)}, got {args.parts!r}")
    if args.threads < 0:
        p.error(f"--threads: expected 0 (all) or a positive integer, got {args.threads}")
    for name in ("size", "batch", "repeats", "iterations", "first_steps_repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name}: expected a positive integer, got {getattr(args, name)}")
    if args.quick:
        args.size, args.batch, args.repeats, args.min_seconds, args.first_steps_repeats = 32, 2, 1, 0.0, 1
    # A smoke run never lands in the results file the docs are generated from.
    args.out = args.out or (os.path.join(tempfile.gettempdir(), "bench_quick.json") if args.quick
                            else os.path.join(HERE, "results_cpu.json"))
    return args


def main(argv=None):
    args = parse(argv)
    if args.memory_of or args.write_checkpoint or args.load_checkpoint:
        return _hidden_mode(args)
    if args.table_child:
        return _table_child(args)

    from report import machine, render_markdown, write

    report = {"format": 2, "kind": "cpu", "command": _command(argv), "started": _now(), "size": args.size,
              "batch": args.batch, "repeats": args.repeats, "precision": "float32", "device": "cpu",
              "parts": args.part_list, "machine": machine(), "backends": {}}
    table_parts = [p for p in args.part_list if p != "first_steps"]
    if table_parts:
        for backend in args.backends:
            report["backends"][backend] = _backend_run(backend, args, argv)
            write(report, args.out)  # each backend's run is kept before the next starts
    if "first_steps" in args.part_list:
        report["first_steps"] = measure_first_steps(args.backends, args.first_steps_repeats, quick=args.quick)
    report["finished"] = _now()
    text = render_markdown(report)
    print(text)
    write(report, args.out, text)
    return 0


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _command(argv):
    return " ".join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])


def _backend_run(backend, args, argv):
    """The table (and opt-in parts) on one backend: in this process if it is this process's
    backend and only one is asked for, else in a child process with KERAS_BACKEND set."""
    if args.backends == [os.environ["KERAS_BACKEND"]] == [backend]:
        return measure_backend(args)
    with tempfile.TemporaryDirectory(prefix="bench_backend_") as tmp:
        out = os.path.join(tmp, f"{backend}.json")
        print(f"=== KERAS_BACKEND={backend}", file=sys.stderr, flush=True)
        passed = [f"--{k}={getattr(args, k)}" for k in ("size", "batch", "repeats", "iterations", "min_seconds",
                                                        "only", "parts", "constructor", "threads")]
        subprocess.run([sys.executable, os.path.abspath(__file__), "--table_child", f"--backend={backend}",
                        f"--out={out}", *passed, *(["--quick"] if args.quick else [])],
                       env=dict(os.environ, KERAS_BACKEND=backend), check=True)
        with open(out) as f:
            return json.load(f)


def _table_child(args):
    from report import write

    write(measure_backend(args), args.out)
    return 0


def measure_backend(args):
    """This process's backend: the alternating table, its ratios, the opt-in parts, the load."""
    import torch

    from measure import measure_table
    from report import engine, loadavg, ratios
    from subjects import subjects_for, threads

    torch.set_num_threads(args.threads or threads())
    backend = os.environ["KERAS_BACKEND"]
    result = {"engine": engine(), "load_before": loadavg(), "started": _now()}
    names = subjects_for(backend, options="options" in args.part_list, quick=args.quick, only=args.only)
    if "table" in args.part_list or "options" in args.part_list:
        result["throughput"] = measure_table(names, args.size, args.batch, args.repeats, args.iterations,
                                             args.min_seconds)
        result["ratios"] = ratios(result["throughput"], backend)
    extras = [p for p in ("memory", "fit_bit", "load") if p in args.part_list]
    if extras and backend == "tensorflow":
        from measure import measure_checkpoint_load, measure_fit_bit, measure_memory

        if "memory" in extras:
            result["memory"] = {n: _guarded(measure_memory, n, args.size, args.batch) for n in names}
        if "fit_bit" in extras:
            result["fit_bit"] = _guarded(measure_fit_bit, min(args.size, 128), args.batch, 24, args.repeats)
        if "load" in extras:
            result["checkpoint_load"] = _guarded(measure_checkpoint_load, args.constructor)
    result["load_after"] = loadavg()
    result["finished"] = _now()
    return result


def _guarded(fn, *args):
    """A failed measurement is reported, not allowed to discard the others."""
    try:
        return fn(*args)
    except Exception as error:  # noqa: BLE001 - any failure becomes a row in the report
        print(f"{fn.__name__} failed: {error}", file=sys.stderr)
        return {"error": f"{type(error).__name__}: {error}"}


def measure_first_steps(backends, repeats, quick=False):
    """bench/first_steps.py in a fresh process per backend and repeat, backends alternating;
    the checkpoint is timm's Lite0 state dict (random weights: timing does not depend on them)
    in a local .safetensors file, read by our constructor as any timm checkpoint."""
    import safetensors.torch
    import timm

    from report import loadavg

    settings = {"size": 32, "batch": 2, "steps": 2, "predict_size": 32} if quick else \
        {"size": 64, "batch": 16, "steps": 12, "predict_size": 224}
    result = {"model": "EfficientNet-Lite0", "weights": "local .safetensors (timm layout)", **settings,
              "repeats": repeats, "load_before": loadavg(), "runs": {b: [] for b in backends}}
    with tempfile.TemporaryDirectory(prefix="bench_first_steps_") as tmp:
        weights = os.path.join(tmp, "lite0.safetensors")
        state = timm.create_model(FIRST_STEPS_MODEL, pretrained=False).state_dict()
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, weights)
        for r in range(repeats):
            for backend in backends:
                print(f"first steps {r + 1}/{repeats} on {backend}", file=sys.stderr, flush=True)
                command = [sys.executable, os.path.join(HERE, "first_steps.py"), weights,
                           f"--spawned={time.time()!r}", *(f"--{k}={v}" for k, v in settings.items())]
                done = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND=backend),
                                      capture_output=True, text=True)
                if done.returncode:
                    tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
                    result["runs"][backend].append({"error": f"exit {done.returncode}: {tail[0]}"})
                else:
                    result["runs"][backend].append(json.loads(done.stdout.strip().splitlines()[-1]))
    result["load_after"] = loadavg()
    return result


def _hidden_mode(args):
    import torch

    from measure import _load_checkpoint, _memory_child, _write_checkpoint
    from subjects import threads

    torch.set_num_threads(threads())
    if args.memory_of:
        return _memory_child(args.memory_of, args.size, args.batch)
    if args.write_checkpoint:
        return _write_checkpoint(args.write_checkpoint, args.constructor)
    return _load_checkpoint(args.load_checkpoint, args.constructor)


if __name__ == "__main__":
    sys.exit(main())
