"""The benchmark's report: ratios within a repeat, the Markdown table, the machine line,
and the JSON / Markdown files."""

import json
import platform
import statistics

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

from subjects import COMPARISONS, threads as _threads  # noqa: E402


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
    """The CPU, threads and versions; the Keras backend's own version (no TensorFlow import on JAX)."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {_threads()} threads, {_engine()}, "
            f"torch {torch.__version__}, timm {timm.__version__}, Python {platform.python_version()}")


def _engine():
    """"Keras 3.x on jax 0.y": the backend of this process and its version."""
    import importlib

    import keras

    backend = keras.backend.backend()
    return f"Keras {keras.__version__} on {backend} {importlib.import_module(backend).__version__}"


def render_backends(report):
    """One run per Keras backend (`run.py --backend=tensorflow,jax,torch`): medians side by side."""
    backends = list(report["backends"])
    runs = report["backends"]
    fmt = lambda s: f"{s['median']:.2f}" if s else "-"  # noqa: E731
    lines = [f"machine: {report['machine']}", f"command: `{report['command']}`", "",
             "Ratios ours / peer, median over repeats (inference / training), each backend in its own process:", "",
             "| ours | peer | " + " | ".join(backends) + " |", "|---|---|" + "---|" * len(backends)]
    pairs = [(r["ours"], r["peer"]) for r in runs[backends[0]]["ratios"]]
    for b in backends[1:]:
        pairs += [(r["ours"], r["peer"]) for r in runs[b]["ratios"] if (r["ours"], r["peer"]) not in pairs]
    for ours, peer in pairs:
        cells = []
        for b in backends:
            row = next((r for r in runs[b]["ratios"] if (r["ours"], r["peer"]) == (ours, peer)), None)
            cells.append(f"{fmt(row.get('inference'))} / {fmt(row.get('training'))}" if row else "-")
        lines.append(f"| {ours} | {peer} | " + " | ".join(cells) + " |")
    lines += ["", "Images/s, median (inference / training):", "",
              "| subject | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]
    names = list(dict.fromkeys(n for b in backends for n in runs[b]["throughput"]))
    for name in names:
        cells = []
        for b in backends:
            r = runs[b]["throughput"].get(name)
            train = f"{statistics.median(r['training']):.1f}" if r and r["training"] else "-"
            cells.append(f"{statistics.median(r['inference']):.1f} / {train}" if r else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Engines: " + "; ".join(runs[b]["engine"] for b in backends)]
    return "\n".join(lines)


def _write(report, out, text=None):
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    if text is not None:
        with open(os.path.splitext(out)[0] + ".md", "w") as f:
            f.write(text + "\n")
