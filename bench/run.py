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
from report import _machine, _write, ratios, render  # noqa: E402
from subjects import OPTIONS, SUBJECTS, threads as _threads  # noqa: E402


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


def _guarded(fn, *args):
    """A failed measurement is reported, not allowed to discard the others."""
    try:
        return fn(*args)
    except Exception as error:  # noqa: BLE001 - any failure becomes a row in the report
        print(f"{fn.__name__} failed: {error}", file=sys.stderr)
        return {"error": f"{type(error).__name__}: {error}"}


if __name__ == "__main__":
    main()
