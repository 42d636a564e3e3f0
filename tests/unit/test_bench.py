"""bench/run.py --backend: the subjects per backend, the side-by-side report, a bad backend refused.
(The measurement itself is `python bench/run.py --backend=...`, minutes long, not a test.)"""

import os
import subprocess
import sys

import pytest

from tests.toys import ROOT

BENCH = os.path.join(ROOT, "bench")


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, BENCH)
    try:
        import report
        import subjects

        yield subjects, report
    finally:  # bench/'s modules have generic names: leave nothing behind
        sys.path.remove(BENCH)
        for name in ("report", "subjects"):
            sys.modules.pop(name, None)


def test_option_rows_run_on_tensorflow_only(bench_modules):
    subjects, _ = bench_modules
    plain = [n for n in subjects.SUBJECTS if not any(o in n for o in subjects.OPTIONS)]
    assert subjects.subjects_for("jax") == subjects.subjects_for("torch") == plain
    assert subjects.subjects_for("tensorflow", options=False) == plain
    assert set(subjects.subjects_for("tensorflow")) == set(subjects.SUBJECTS)
    assert "ours EfficientNet-B0 XLA" not in plain and "timm tf_efficientnet_b0" in plain


def test_backends_side_by_side(bench_modules):
    _, report = bench_modules
    run = lambda ours, peer, engine: {  # noqa: E731
        "machine": "CPU", "engine": engine,
        "throughput": {"ours EfficientNet-B0": {"inference": ours, "training": [1.0, 1.0]},
                       "timm tf_efficientnet_b0": {"inference": peer, "training": [2.0, 2.0]}}}
    runs = {"tensorflow": run([4.0, 6.0], [2.0, 2.0], "Keras on tensorflow"),
            "jax": run([1.0, 3.0], [4.0, 4.0], "Keras on jax")}
    for r in runs.values():
        r["ratios"] = report.ratios(r["throughput"])
    text = report.render_backends({"machine": "CPU", "command": "run.py --backend=tensorflow,jax",
                                   "backends": runs})
    assert "| ours EfficientNet-B0 | timm tf_efficientnet_b0 | 2.50 / 0.50 | 0.50 / 0.50 |" in text
    assert "| ours EfficientNet-B0 | 5.0 / 1.0 | 2.0 / 1.0 |" in text
    assert "Keras on tensorflow; Keras on jax" in text


def test_unknown_backend_is_refused():
    done = subprocess.run([sys.executable, os.path.join(BENCH, "run.py"), "--backend=tensorflow,mxnet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "expected some of tensorflow, jax, torch, got 'tensorflow,mxnet'" in done.stderr
