"""The benchmark's report: ratios within a repeat, the machine and its load, the Markdown
tables, and the docs' tables regenerated from the results JSON.

    python bench/report.py bench/results_cpu.json   # print the tables of one results file
    python bench/report.py --docs                   # rewrite docs/benchmarks.md's generated sections
    python bench/report.py --check                  # exit 1 if docs/benchmarks.md is out of date

docs/benchmarks.md holds each generated section between `<!-- bench-report FILE -->` and
`<!-- /bench-report -->`, FILE a JSON under bench/; a FILE not there yet renders as a
"pending" line naming the command that makes it. No number in those sections is typed by hand.
Imports nothing heavy at module level (the docs check runs in the unit tests).
"""

import argparse
import importlib.metadata
import json
import platform
import re
import statistics

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(os.path.dirname(HERE), "docs", "benchmarks.md")
SECTION = re.compile(r"(<!-- bench-report (\S+) -->\n)(.*?)(<!-- /bench-report -->)", re.S)
BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
# What makes each results file (named in its "pending" line until it exists).
MAKERS = {
    "results_cpu.json": "`python bench/run.py` on a quiet machine (about 50 min on 2 cores)",
    "results_gpu.json": "`python bench/gpu.py --budget_s=420` on a GPU machine (about 8 min: batch 64 "
                        "first; the whole table takes 25-35 min, an estimate)",
}


# --- measuring helpers (called by run.py / gpu.py in the measuring processes) ---------------


def threads():
    return len(os.sched_getaffinity(0))


def loadavg():
    """1, 5 and 15 minute load averages (os.getloadavg), rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine():
    """The CPU, cores, threads, memory and versions, read without importing any framework."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or cpu
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    packages = ("keras", "tensorflow", "jax", "jaxlib", "torch", "timm", "numpy")
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads(), "memory_gib": memory_gib,
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": {p: _version(p) for p in packages}}


def engine():
    """"Keras 3.x on jax 0.y": the backend of this process and its version."""
    import keras

    backend = keras.backend.backend()
    return f"Keras {keras.__version__} on {backend} {importlib.import_module(backend).__version__}"


def _spread(values):
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else None


def target_for(target, backend):
    """A comparison's target on `backend`: a number, {backend: number}, or None."""
    return target.get(backend) if isinstance(target, dict) else target


def ratios(results, backend=None):
    """Ours / peer per repeat (speed: images/s over images/s, and the peer's latency over ours,
    so > 1 is ours faster everywhere), as min / median / max over the repeats."""
    from subjects import COMPARISONS

    rows = []
    for ours, peer, target in COMPARISONS:
        if ours not in results or peer not in results:
            continue
        row = {"ours": ours, "peer": peer, "target": target_for(target, backend)}
        for kind in ("inference", "training"):
            a, b = results[ours][kind], results[peer][kind]
            if a and b:
                row[kind] = _spread([x / y for x, y in zip(a, b)])
        a, b = results[ours].get("latency_ms"), results[peer].get("latency_ms")
        if a and b:
            row["latency"] = _spread([y / x for x, y in zip(a, b)])
        rows.append(row)
    return rows


def write(report, out, text=None):
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    if text is not None:
        with open(os.path.splitext(out)[0] + ".md", "w") as f:
            f.write(text + "\n")


# --- rendering (format 2: run.py and gpu.py) -------------------------------------------------


def _median(values):
    return statistics.median(values) if values else None


def _num(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def _ratio_cell(spread, target=None):
    if not spread:
        return "-"
    cell = f"**{spread['median']:.2f}** ({spread['min']:.2f}-{spread['max']:.2f})"
    if target is not None:
        cell += " met" if spread["median"] >= target else " MISSED"
    return cell


def _machine_line(m):
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads used, {m['memory_gib']} GiB; "
            f"{versions}; Python {m['python']}.")


def _load_text(run):
    before, after = run.get("load_before"), run.get("load_after")
    if not before or not after:
        return "-"
    return f"{before[0]:.2f} → {after[0]:.2f}"


def _runs(report):
    """[(title, {backend: {"throughput", "ratios"}})]: one for run.py, one per setting for gpu.py."""
    if report.get("kind") != "gpu":
        backends = {b: r for b, r in report["backends"].items() if r.get("throughput")}
        title = f"{report['size']} px, batch {report['batch']} ({report['precision']}), batch-1 latency"
        return [(title, backends)] if backends else []
    settings = list(dict.fromkeys((run["batch"], run["precision"]) for r in report["backends"].values()
                                  for run in r.get("runs", [])))
    out = []
    for batch, precision in settings:
        per = {b: run for b, r in report["backends"].items() for run in r.get("runs", [])
               if (run["batch"], run["precision"]) == (batch, precision)}
        latency = any(v.get("latency_ms") for run in per.values() for v in run["throughput"].values())
        out.append((f"{report['size']} px, batch {batch}, {precision}" + (", batch-1 latency" if latency else ""),
                    per))
    return out


def _table(title, runs, repeats):
    backends = list(runs)
    head = " | ".join(BACKEND_NAMES.get(b, b) for b in backends)
    lines = [f"**{title}**: ratios ours / peer as speed (> 1: ours faster; latency: the peer's "
             f"time over ours), median (min-max) over {repeats} repeats:", "",
             f"| ours | peer | measure | {head} | target |", "|---|---|---|" + "---|" * len(backends) + "---|"]
    pairs = list(dict.fromkeys((r["ours"], r["peer"]) for b in backends for r in runs[b]["ratios"]))
    from_any = {}
    for b in backends:
        for r in runs[b]["ratios"]:
            from_any.setdefault((r["ours"], r["peer"]), {})[b] = r
    for ours, peer in pairs:
        rows = from_any[(ours, peer)]
        targets = {b: r["target"] for b, r in rows.items() if r.get("target") is not None}
        if not targets:
            target = "-"
        elif len(set(targets.values())) == 1 and len(targets) == len(rows):
            target = f"≥ {next(iter(targets.values()))}"
        else:
            target = "; ".join(f"≥ {t} on {BACKEND_NAMES.get(b, b)}" for b, t in targets.items())
        for kind, label in (("inference", "inference"), ("training", "training step"), ("latency", "batch-1 latency")):
            if not any(rows.get(b, {}).get(kind) for b in backends):
                continue
            cells = [_ratio_cell(rows[b].get(kind), rows[b].get("target") if kind == "inference" else None)
                     if b in rows else "-" for b in backends]
            lines.append(f"| {ours} | {peer} | {label} | " + " | ".join(cells) + f" | "
                         f"{target if kind == 'inference' else '-'} |")
    lines += ["", "Medians (inference images/s / training-step images/s / batch-1 latency ms):", "",
              f"| subject | {head} |", "|---|" + "---|" * len(backends)]
    names = list(dict.fromkeys(n for b in backends for n in runs[b]["throughput"]))
    for name in names:
        cells = []
        for b in backends:
            r = runs[b]["throughput"].get(name)
            cells.append("-" if r is None else f"{_num(_median(r['inference']), 1)} / "
                         f"{_num(_median(r['training']), 1)} / {_num(_median(r.get('latency_ms')), 1)}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _first_steps(fs):
    backends = list(fs["runs"])
    lines = [f"**First steps** ({fs['model']} from a {fs['weights']}; each backend in {fs['repeats']} fresh "
             f"process(es), alternating): seconds, median over the processes; the last two columns "
             f"are issue 27 item 3's target, within 2x of TensorFlow:", "",
             "| backend | Python start | import | build | first `predict` | to first prediction | "
             f"`fit_bit` {fs['steps']} steps (batch {fs['batch']}, {fs['size']} px) | "
             "first prediction / TensorFlow's | fit_bit / TensorFlow's |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = ("python_start_s", "import_s", "build_s", "first_prediction_s", "to_first_prediction_s", "fit_bit_s")
    medians = {}
    for b in backends:
        ok = [r for r in fs["runs"][b] if "error" not in r]
        medians[b] = {k: _median([r[k] for r in ok]) for k in keys} if ok else None
    tf = medians.get("tensorflow")
    for b in backends:
        m = medians[b]
        if m is None:
            errors = "; ".join(r["error"] for r in fs["runs"][b])
            lines.append(f"| {BACKEND_NAMES.get(b, b)} | failed: {errors} |" + " |" * 7)
            continue
        rel = [_num(m[k] / tf[k]) + "x" if tf else "-" for k in ("to_first_prediction_s", "fit_bit_s")]
        lines.append(f"| {BACKEND_NAMES.get(b, b)} | " + " | ".join(_num(m[k], 1) for k in keys) + " | "
                     + " | ".join(rel) + " |")
    caches = {r.get("jax_compilation_cache_dir") for b in backends for r in fs["runs"][b] if "error" not in r}
    lines += ["", f"Load average (1 min) before → after: {_load_text(fs)}; "
                  f"`JAX_COMPILATION_CACHE_DIR`: {', '.join(sorted(str(c) for c in caches)) or '-'}."]
    return lines


def render_v2(report):
    lines = [_machine_line(report["machine"]),
             f"Command: `{report['command']}`, {report['started']} to {report.get('finished', '(unfinished)')}."]
    backends = report["backends"]
    if backends:
        lines.append("Load average (1 min) before → after, per backend process: " + "; ".join(
            f"{BACKEND_NAMES.get(b, b)} {_load_text(r)}" for b, r in backends.items()) + ". Engines: "
            + "; ".join(r.get("engine", f"{b}: no run finished") for b, r in backends.items()) + ".")
    if report.get("device_name"):
        lines.append(f"Device: {report['device_name']}.")
    for title, runs in _runs(report):
        lines += [""] + _table(title, runs, report["repeats"])
    for b, r in backends.items():
        if any(k in r for k in ("memory", "fit_bit", "checkpoint_load")):
            lines += [""] + _extras(r)
    if report.get("fit_bit"):
        lines += [""] + _fit_bit_gpu(report["fit_bit"])
    if report.get("first_steps"):
        lines += [""] + _first_steps(report["first_steps"])
    if report.get("skipped"):
        lines += ["", "Not measured: " + "; ".join(report["skipped"]) + "."]
    return "\n".join(lines)


def _fit_bit_gpu(runs):
    lines = ["**fit_bit** (EfficientNet-B0, images/s over the steps after the first two, median):", "",
             "| backend | batch | precision | size | images/s |", "|---|---|---|---|---|"]
    for r in runs:
        value = r["error"] if "error" in r else _num(r["images_per_s"], 1)
        lines.append(f"| {BACKEND_NAMES.get(r['backend'], r['backend'])} | {r.get('batch', '-')} | "
                     f"{r.get('precision', '-')} | {r.get('size', '-')} | {value} |")
    return lines


def _extras(r):
    """The opt-in parts (TensorFlow): peak memory, fit_bit vs model.fit, checkpoint load."""
    lines = []
    if r.get("memory"):
        lines += ["| subject | peak RSS above baseline |", "|---|---|"]
        for name, mem in r["memory"].items():
            lines.append(f"| {name} | " + (mem["error"] if "error" in mem else
                                           f"{(mem['peak_bytes'] - mem['baseline_bytes']) / 2**30:.2f} GiB") + " |")
    return lines + _extra_lines(r)


def _extra_lines(r):
    lines = []
    if r.get("fit_bit") and "error" not in r["fit_bit"]:
        f = r["fit_bit"]
        lines += ["", f"fit_bit vs bare model.fit ({f['model']}, {f['size']} px, batch {f['batch']}): "
                      f"{f['fit_bit_images_per_s']:.1f} vs {f['model_fit_images_per_s']:.1f} img/s (medians), "
                      f"ratio {f.get('ratio_min', f['ratio']):.2f} / **{f['ratio']:.2f}** / "
                      f"{f.get('ratio_max', f['ratio']):.2f} (target ≥ {f['target']})"]
    if r.get("checkpoint_load") and "error" not in r["checkpoint_load"]:
        c = r["checkpoint_load"]
        lines += [f"checkpoint load ({c['model']}, published .npz): peak RSS above baseline "
                  f"{(c['peak_bytes'] - c['baseline_bytes']) / 2**30:.2f} GiB for "
                  f"{c['parameter_bytes'] / 2**30:.2f} GiB of parameters = {c['ratio']:.2f}x "
                  f"(target ≤ {c['target']}x), {c['seconds']:.1f} s"]
    return lines


# --- rendering (format 1: the files run.py wrote before issue 27) ----------------------------


def render(report):
    """A format-1 TensorFlow run (bench/results.json): ratios, images/s, memory, fit_bit, load."""
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
    return "\n".join(lines + _extra_lines(report))


def render_backends(report):
    """A format-1 run per Keras backend (bench/results_backends.json): medians side by side."""
    backends = list(report["backends"])
    runs = report["backends"]
    fmt = lambda s: f"{s['median']:.2f}" if s else "-"  # noqa: E731
    lines = [f"machine: {report['machine']}", f"command: `{report['command']}`", "",
             "Ratios ours / peer, median over repeats (inference / training), each backend in its own process:", "",
             "| ours | peer | " + " | ".join(BACKEND_NAMES.get(b, b) for b in backends) + " |",
             "|---|---|" + "---|" * len(backends)]
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
              "| subject | " + " | ".join(BACKEND_NAMES.get(b, b) for b in backends) + " |",
              "|---|" + "---|" * len(backends)]
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


def render_markdown(report):
    """The Markdown of any results file run.py or gpu.py writes (either format)."""
    if report.get("format") == 2:
        return render_v2(report)
    return render_backends(report) if "backends" in report else render(report)


# --- docs/benchmarks.md -----------------------------------------------------------------------


def section(name, folder=HERE):
    """The generated text of one docs section: the tables of bench/<name>, or a pending line."""
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        maker = MAKERS.get(name, f"the command that writes bench/{name}")
        return (f"*Pending: `bench/{name}` has not been measured yet. Make it with {maker}, "
                f"then `python bench/report.py --docs` writes its tables here.*")
    with open(path) as f:
        report = json.load(f)
    text = render_markdown(report)
    if report.get("format") != 2:  # the format-1 machine line is prose in the docs
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith(("machine: ", "command: "))).strip()
    return text


def regenerate(docs_text, folder=HERE):
    """docs_text with every `<!-- bench-report FILE -->` section rewritten from its FILE."""
    return SECTION.sub(lambda m: f"{m.group(1)}{section(m.group(2), folder)}\n{m.group(4)}", docs_text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", help="a results JSON to print as Markdown")
    parser.add_argument("--docs", action="store_true", help=f"rewrite the generated sections of {DOCS}")
    parser.add_argument("--check", action="store_true", help="exit 1 if those sections are out of date")
    args = parser.parse_args(argv)
    if not (args.results or args.docs or args.check):
        parser.error("expected a results JSON, --docs or --check")
    if args.results:
        with open(args.results) as f:
            print(render_markdown(json.load(f)))
    if args.docs or args.check:
        with open(DOCS) as f:
            text = f.read()
        if not SECTION.search(text):
            print(f"{DOCS} has no <!-- bench-report FILE --> sections", file=sys.stderr)
            return 1
        new = regenerate(text)
        if args.check:
            if new != text:
                print(f"{DOCS} is out of date: run python bench/report.py --docs", file=sys.stderr)
                return 1
        elif new != text:
            with open(DOCS, "w") as f:
                f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
