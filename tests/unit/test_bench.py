"""bench/: the command line and its defaults, the subjects per backend, the renderer on small
fake results, docs/benchmarks.md's generated tables against the committed results JSON, and
`run.py --quick` end to end on this process's backend (one tiny pair, seconds).
(The measurement itself is `python bench/run.py`, most of an hour long, not a test.)"""

import json
import os
import sys

import keras
import pytest

from tests.toys import ROOT

BENCH = os.path.join(ROOT, "bench")
MODULES = ("run", "report", "subjects", "measure", "gpu")


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, BENCH)
    try:
        import report
        import run
        import subjects

        yield run, report, subjects
    finally:  # bench/'s modules have generic names: leave nothing behind
        while BENCH in sys.path:
            sys.path.remove(BENCH)
        for name in MODULES:
            sys.modules.pop(name, None)


def test_default_is_the_issue_27_table(bench):
    run, _, _ = bench
    args = run.parse([])
    assert (args.size, args.batch, args.repeats) == (224, 16, 5)
    assert args.backends == ["tensorflow", "jax", "torch"]
    assert args.part_list == ["table", "first_steps"]
    assert args.out == os.path.join(BENCH, "results_cpu.json")
    quick = run.parse(["--quick"])
    assert (quick.size, quick.batch, quick.repeats, quick.min_seconds) == (32, 2, 1, 0.0)
    assert not quick.out.startswith(BENCH)  # a smoke run leaves the committed results alone


@pytest.mark.parametrize("argv, message", [
    (["--backend=tensorflow,mxnet"], "--backend: expected some of tensorflow, jax, torch, got 'tensorflow,mxnet'"),
    (["--parts=table,speed"], "--parts: expected some of table, first_steps, options, memory, fit_bit, load, got"),
    (["--repeats=0"], "--repeats: expected a positive integer, got 0"),
])
def test_bad_command_line_is_refused(bench, capsys, argv, message):
    run, _, _ = bench
    with pytest.raises(SystemExit) as exit_:
        run.parse(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_subjects_per_backend(bench):
    _, _, subjects = bench
    table = list(subjects.SUBJECTS)
    assert all(subjects.subjects_for(b) == table for b in ("tensorflow", "jax"))
    # PyTorch adds the channels_first rows, each beside its channels_last one (issue 27 item 2).
    assert subjects.subjects_for("torch") == [
        "ours BiT-M-R50x1", "ours BiT-M-R50x1 channels_first", *table[1:4],
        "ours EfficientNet-B0 channels_first", *table[4:]]
    assert subjects.subjects_for("jax", options=True) == table
    assert subjects.subjects_for("tensorflow", options=True) == table + list(subjects.OPTION_SUBJECTS)
    assert subjects.subjects_for("torch", only="EfficientNet") == [
        "ours EfficientNet-B0", "ours EfficientNet-B0 channels_first", "keras.applications EfficientNetB0",
        "timm tf_efficientnet_b0"]
    assert subjects.subjects_for("jax", quick=True) == list(subjects.QUICK_SUBJECTS) == [
        "ours ViT-Ti/16 2 blocks", "timm vit_tiny_patch16_224 2 blocks"]
    # Every comparison of the table has both its subjects in it.
    assert {(o, p) for o, p, _ in subjects.COMPARISONS if o in table} == {
        ("ours BiT-M-R50x1", "keras.applications ResNet50V2"), ("ours BiT-M-R50x1", "timm resnetv2_50x1_bit"),
        ("ours EfficientNet-B0", "keras.applications EfficientNetB0"),
        ("ours EfficientNet-B0", "timm tf_efficientnet_b0"), ("ours ViT-B/16", "timm vit_base_patch16_224")}
    torch_table = subjects.subjects_for("torch")
    assert {(o, p) for o, p, _ in subjects.COMPARISONS if o in subjects.TORCH_SUBJECTS} == {
        (o, p) for o, p, _ in subjects.COMPARISONS if o in subjects.TORCH_SUBJECTS and p in torch_table} == {
        ("ours BiT-M-R50x1 channels_first", "ours BiT-M-R50x1"),
        ("ours BiT-M-R50x1 channels_first", "timm resnetv2_50x1_bit"),
        ("ours EfficientNet-B0 channels_first", "ours EfficientNet-B0"),
        ("ours EfficientNet-B0 channels_first", "timm tf_efficientnet_b0")}


def _fake_report(report):
    """Two backends, two repeats, EfficientNet-B0 against timm (a PyTorch-only target of 0.8)."""
    def backend(name, ours, peer, ours_ms, peer_ms):
        throughput = {"ours EfficientNet-B0": {"inference": ours, "training": [1.0, 1.0], "latency_ms": ours_ms},
                      "timm tf_efficientnet_b0": {"inference": peer, "training": [2.0, 2.0], "latency_ms": peer_ms}}
        return {"engine": f"Keras on {name}", "load_before": [0.5, 0.4, 0.3], "load_after": [1.25, 0.5, 0.3],
                "throughput": throughput, "ratios": report.ratios(throughput, name)}

    first = {"python_start_s": 0.1, "import_s": 5.0, "build_s": 2.0, "first_prediction_s": 1.0,
             "to_first_prediction_s": 8.0, "fit_bit_s": 20.0, "jax_compilation_cache_dir": None}
    return {
        "format": 2, "kind": "cpu", "command": "python bench/run.py", "started": "2026-12-06 10:00:00 UTC",
        "finished": "2026-12-06 10:45:00 UTC", "size": 224, "batch": 16, "repeats": 2, "precision": "float32",
        "machine": {"cpu": "Test CPU", "cores": 2, "threads": 2, "memory_gib": 24.0, "python": "3.11.7",
                    "versions": {"keras": "3.15.1", "jax": None}},
        "backends": {"tensorflow": backend("tensorflow", [4.0, 6.0], [2.0, 2.0], [10.0, 10.0], [20.0, 40.0]),
                     "torch": backend("torch", [1.0, 3.0], [4.0, 4.0], [10.0, 10.0], [5.0, 5.0])},
        "first_steps": {"model": "EfficientNet-Lite0", "weights": "local file", "size": 64, "batch": 16,
                        "steps": 12, "repeats": 2, "load_before": [1.0, 1, 1], "load_after": [2.0, 1, 1],
                        "runs": {"tensorflow": [first, dict(first, to_first_prediction_s=10.0)],
                                 "torch": [dict(first, to_first_prediction_s=27.0, fit_bit_s=50.0),
                                           {"error": "exit 1: MemoryError"}]}},
    }


def test_renderer_on_a_small_fake_json(bench):
    _, report, _ = bench
    text = report.render_markdown(_fake_report(report))
    assert "Machine: Test CPU, 2 cores, 2 threads used, 24.0 GiB; keras 3.15.1; Python 3.11.7." in text
    assert "TensorFlow 0.50 → 1.25; PyTorch 0.50 → 1.25" in text
    # ratios within each repeat: TF 4/2, 6/2; torch 1/4, 3/4 (target 0.8 on PyTorch only)
    assert ("| ours EfficientNet-B0 | timm tf_efficientnet_b0 | inference | **2.50** (2.00-3.00) | "
            "**0.50** (0.25-0.75) MISSED | ≥ 0.8 on PyTorch |") in text
    # latency as speed: the peer's milliseconds over ours
    assert "| batch-1 latency | **3.00** (2.00-4.00) | **0.50** (0.50-0.50) | - |" in text
    assert "| ours EfficientNet-B0 | 5.0 / 1.0 / 10.0 | 2.0 / 1.0 / 10.0 |" in text
    # first steps: medians over the processes that finished, relative to TensorFlow's
    assert "| TensorFlow | 0.1 | 5.0 | 2.0 | 1.0 | 9.0 | 20.0 | 1.00x | 1.00x |" in text
    assert "| PyTorch | 0.1 | 5.0 | 2.0 | 1.0 | 27.0 | 50.0 | 3.00x | 2.50x |" in text


def test_legacy_backends_file_renders(bench):
    _, report, _ = bench
    with open(os.path.join(BENCH, "results_backends.json")) as f:
        text = report.render_markdown(json.load(f))
    assert "| ours | peer | TensorFlow | JAX | PyTorch |" in text
    assert "| ours ViT-B/16 | timm vit_base_patch16_224 | 1.33 / 0.96 | 1.34 / 0.86 | 0.71 / 0.81 |" in text


def test_docs_tables_are_the_committed_results(bench):
    """docs/benchmarks.md's generated sections are exactly what report.py makes from the
    committed JSON (`python bench/report.py --docs` rewrites them after a run)."""
    _, report, _ = bench
    with open(report.DOCS) as f:
        docs = f.read()
    named = [m.group(2) for m in report.SECTION.finditer(docs)]
    assert {"results_cpu.json", "results_gpu.json", "results.json", "results_backends.json"} <= set(named)
    assert report.regenerate(docs) == docs, "docs/benchmarks.md is stale: run python bench/report.py --docs"


def test_a_missing_results_file_is_pending(bench, tmp_path):
    _, report, _ = bench
    docs = "a\n<!-- bench-report results_cpu.json -->\nold numbers\n<!-- /bench-report -->\nb\n"
    new = report.regenerate(docs, folder=str(tmp_path))
    assert "old numbers" not in new and "*Pending: `bench/results_cpu.json` has not been measured yet." in new
    assert "`python bench/run.py` on a quiet machine" in new and new.endswith("<!-- /bench-report -->\nb\n")
    (tmp_path / "results_cpu.json").write_text(json.dumps(_fake_report(report)))
    assert "| ours EfficientNet-B0 | 5.0 / 1.0 / 10.0 |" in report.regenerate(docs, folder=str(tmp_path))


def test_quick_run_end_to_end(bench, tmp_path, monkeypatch):
    """One tiny pair (2-block ViT-Ti/16 vs timm's, 32 px, batch 2, one repeat) on this backend."""
    import torch

    run, _, _ = bench
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # run.py's setting is for its own process
    backend = keras.backend.backend()
    monkeypatch.setenv("KERAS_BACKEND", backend)
    out = tmp_path / "quick.json"
    assert run.main(["--quick", f"--backend={backend}", "--parts=table", f"--out={out}"]) == 0
    result = json.loads(out.read_text())
    assert result["format"] == 2 and result["size"] == 32 and result["machine"]["threads"] >= 1
    assert len(result["backends"][backend]["load_before"]) == len(result["backends"][backend]["load_after"]) == 3
    measured = result["backends"][backend]["throughput"]
    assert list(measured) == ["ours ViT-Ti/16 2 blocks", "timm vit_tiny_patch16_224 2 blocks"]
    for values in measured.values():
        assert [len(values[k]) for k in ("inference", "training", "latency_ms")] == [1, 1, 1]
        assert all(v > 0 for k in values for v in values[k])
    (row,) = result["backends"][backend]["ratios"]
    assert row["inference"]["median"] == pytest.approx(
        measured["ours ViT-Ti/16 2 blocks"]["inference"][0]
        / measured["timm vit_tiny_patch16_224 2 blocks"]["inference"][0])
    assert "| ours ViT-Ti/16 2 blocks | timm vit_tiny_patch16_224 2 blocks | inference |" in (
        tmp_path / "quick.md").read_text()


@pytest.fixture(scope="module")
def gpu(bench):
    import gpu

    return gpu


def test_gpu_script_defaults_and_refusals(gpu, capsys):
    args = gpu.parse([])
    assert (args.size, args.batch_list, args.precision_list) == (224, [64, 256], ["float32", "bfloat16"])
    assert args.backends == ["tensorflow", "jax", "torch"]
    assert args.out == os.path.join(BENCH, "results_gpu.json")
    assert not gpu.parse(["--allow-cpu"]).out.startswith(BENCH)
    for argv, message in [
        (["--precisions=float16"], "--precisions: expected some of float32, bfloat16, got 'float16'"),
        (["--batches=64,x"], "--batches: expected positive integers separated by commas, got '64,x'"),
    ]:
        with pytest.raises(SystemExit):
            gpu.parse(argv)
        assert message in capsys.readouterr().err


def test_gpu_script_without_a_gpu_says_so(gpu, capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu.main([f"--out={tmp_path / 'gpu.json'}"]) == 1
    assert capsys.readouterr().err.strip() == (
        "bench/gpu.py: no CUDA GPU here (torch.cuda.is_available() is False); "
        "--allow-cpu runs it on the CPU as a smoke test")
    assert not (tmp_path / "gpu.json").exists()


def test_gpu_report_merges_and_renders(gpu, bench, tmp_path):
    _, report, _ = bench
    fake = _fake_report(report)

    def part(batch, precision, fit_bit):
        runs = {b: {"engine": r["engine"], "load_before": r["load_before"], "load_after": r["load_after"],
                    "runs": [{"batch": batch, "precision": precision, "throughput": r["throughput"],
                              "ratios": r["ratios"]}]} for b, r in fake["backends"].items()}
        return dict(fake, kind="gpu", device_name="Test GPU, 80 GiB", backends=runs, first_steps=None,
                    fit_bit=fit_bit, skipped=[], command=f"python bench/gpu.py --batches={batch}")

    paths = []
    for i, (batch, fit_bit) in enumerate([(64, []), (256, [{"backend": "jax", "error": "exit 1: OOM"}])]):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(part(batch, "bfloat16", fit_bit)))
    merged = gpu.merge([str(p) for p in paths])
    assert [r["batch"] for r in merged["backends"]["torch"]["runs"]] == [64, 256]
    text = report.render_markdown(merged)
    assert "Device: Test GPU, 80 GiB." in text
    assert "**224 px, batch 64, bfloat16, batch-1 latency**" in text and "**224 px, batch 256, bfloat16" in text
    assert text.count("| ours EfficientNet-B0 | timm tf_efficientnet_b0 | inference | **2.50** (2.00-3.00) |") == 2
    assert "| JAX | - | - | - | exit 1: OOM |" in text


def test_jax_depthwise_quick_agrees_to_float32_rounding():
    """bench/jax_depthwise.py --quick: both depthwise forms time and give the same sums."""
    import subprocess

    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "jax_depthwise.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["kernel"] for r in rows] == [3, 5]
    for row in rows:
        assert row["max_difference"] < 1e-5 and row["xla_ms"] > 0 and row["shifted_ms"] > 0
