"""Benchmark keras_bigtransfer against keras.applications and timm on this machine.

    python bench/run.py                      # the full table (make bench)
    python bench/run.py --repeats=1 --quick  # smoke run: tiny inputs
    python bench/run.py --backend=tensorflow,jax,torch --skip=memory,fit_bit,load,options
                                             # throughput on each Keras backend, one process each

Everything runs in one process and in alternation (repeat r measures every
subject before repeat r + 1 starts), so machine noise hits all alike; ratios
ours / peer are taken within a repeat and reported as min / median / max.
Peak memory is the one thing measured per subject in a fresh subprocess
(`ru_maxrss` cannot be reset within a process). torch is limited to the same
threads as TensorFlow. Results go to stdout as a table and to --out as JSON.

With --backend naming several Keras backends (or one other than this process's), run.py
starts itself once per backend with KERAS_BACKEND set (a backend is fixed when Keras is
imported) and puts the runs side by side. On JAX and PyTorch the subjects are the plain
models (the XLA, bf16 and SavedModel rows are TensorFlow's), run by Keras' own
`predict_on_batch` / `train_on_batch` (jitted on JAX); keras.applications runs on the same
backend, timm in the same process, so every ratio is taken within one process and repeat.
"""

import argparse
import json
import subprocess
import tempfile

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

from measure import (  # noqa: E402
    _load_checkpoint,
    _memory_child,
    _write_checkpoint,
    measure_checkpoint_load,
    measure_fit_bit,
    measure_memory,
    measure_throughput,
)
from report import _engine, _machine, _write, ratios, render, render_backends  # noqa: E402
from subjects import OPTIONS, subjects_for, threads as _threads  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=1, help="at least this many timed calls")
    parser.add_argument("--min_seconds", type=float, default=3.0, help="and at least this long")
    parser.add_argument("--only", default="", help="comma-separated substrings of subject names")
    parser.add_argument("--skip", default="",
                        help="comma-separated parts to skip: memory,fit_bit,load,options (the XLA/bf16/SavedModel rows)")
    parser.add_argument("--out", help="results JSON (and .md beside it); default bench/results.json, "
                                      "bench/results_backends.json for several backends")
    parser.add_argument("--backend", default=os.environ["KERAS_BACKEND"],
                        help="comma-separated Keras backends (tensorflow,jax,torch); one process each")
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

    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if not backends or unknown:
        parser.error(f"--backend: expected some of {', '.join(BACKENDS)}, got {args.backend!r}")
    if backends != [os.environ["KERAS_BACKEND"]]:
        args.out = args.out or os.path.join(HERE, "results_backends.json")
        return _per_backend(backends, args)
    args.out = args.out or os.path.join(HERE, "results.json")

    skip = set(filter(None, args.skip.split(",")))
    names = [n for n in subjects_for(backends[0], options="options" not in skip)
             if not args.only or any(s in n for s in args.only.split(","))]
    report = {"machine": _machine(), "engine": _engine(), "size": args.size, "batch": args.batch,
              "repeats": args.repeats, "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
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


def _per_backend(backends, args):
    """run.py once per backend (KERAS_BACKEND set before Keras is imported), then one report."""
    passed = [f"--{k}={getattr(args, k)}" for k in ("size", "batch", "repeats", "iterations", "min_seconds",
                                                    "only", "skip")]
    report = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv), "size": args.size,
              "batch": args.batch, "repeats": args.repeats, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
        for backend in backends:
            out = os.path.join(tmp, f"{backend}.json")
            print(f"=== KERAS_BACKEND={backend}", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, os.path.abspath(__file__), f"--backend={backend}", f"--out={out}",
                            *passed], env=dict(os.environ, KERAS_BACKEND=backend), check=True)
            with open(out) as f:
                report["backends"][backend] = json.load(f)
    report["machine"] = report["backends"][backends[0]]["machine"]
    text = render_backends(report)
    print(text)
    _write(report, args.out, text)


if __name__ == "__main__":
    main()
