"""The full-dataset Fashion-MNIST scripts end to end on a slice (their real runs take hours):
examples/fashion_mnist_full.py (fit_bit, killed and resumed), bench/fashion_mnist_timm.py (the
same run through timm) and bench/few_shot.py --quick, each run as a user runs it, offline, with
the real Lite0 ImageNet weights, 200 training and 200 test images at 32 px for a few steps."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.toys import ROOT

# Tiny: 200 images of each split, 32-pixel crops, batch 16, 6 steps (6 "epochs" of one step).
SLICE = ("--limit=200", "--resolution=32", "--batch_size=16", "--total_steps=6", "--val_images=50")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_script(path, *flags, home):
    """(return code, stdout, stderr) of a script of the repository run offline, its weight cache under `home`."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BIGTRANSFER_MIRROR"}
    env.update(PYTHONPATH=ROOT, KERAS_BIGTRANSFER_HOME=str(home), KERAS_BIGTRANSFER_OFFLINE="1")
    out = subprocess.run([sys.executable, os.path.join(ROOT, path), *flags], capture_output=True, text=True,
                         timeout=900, env=env)
    return out.returncode, out.stdout, out.stderr


def read_json(path):
    with open(path) as f:
        return json.load(f)


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    """The example killed after step 2's backup, then the same command again: (first stdout,
    second stdout, the results JSON, the directory)."""
    directory = tmp_path_factory.mktemp("fashion_full")
    flags = (*SLICE, f"--checkpoint_dir={directory / 'ckpt'}", f"--out={directory / 'result.json'}",
             f"--plot={directory / 'curve.png'}", "--verbose=2")
    code, first, err = run_script("examples/fashion_mnist_full.py", *flags, "--kill_at_step=2",
                                  home=directory / "hub")
    assert code == -signal.SIGKILL, err[-3000:]
    assert not os.path.exists(directory / "result.json")
    code, second, err = run_script("examples/fashion_mnist_full.py", *flags, home=directory / "hub")
    assert code == 0, err[-3000:]
    return first, second, read_json(directory / "result.json"), directory


@pytest.mark.slow
def test_full_example_resumes_after_a_kill_and_reports(keras_run):
    first, second, result, directory = keras_run
    assert "Epoch 2/6" in first and "Epoch 3/6" not in first
    # The second run continued at step 3 instead of starting over.
    assert "resuming at step 2" in second and "Epoch 1/6" not in second and "Epoch 3/6" in second
    assert result["steps"] == 6 and result["resolution"] == 32 and result["batch_size"] == 16
    assert result["train_images"] == 200 and result["test_images"] == 200
    assert 0.0 <= result["test_accuracy"] <= 1.0
    # The curve and the clock span both sessions: steps 1-2 from the killed one.
    assert [step for step, _ in result["curve"]] == [1, 2, 3, 4, 5, 6]
    assert result["wall_seconds"] > result["seconds_this_session"] > 0
    assert result["command"].endswith("--verbose=2") and "cores" in result["machine"]
    assert json.loads(second.strip().splitlines()[-1]) == result
    assert is_png(directory / "curve.png")


@pytest.fixture(scope="module")
def timm_run(tmp_path_factory):
    """The timm twin uninterrupted: (stdout, the results JSON, the directory)."""
    directory = tmp_path_factory.mktemp("fashion_timm")
    code, out, err = run_script("bench/fashion_mnist_timm.py", *SLICE, f"--out={directory / 'timm.json'}",
                                f"--plot={directory / 'timm.png'}", home=directory / "hub")
    assert code == 0, err[-3000:]
    return out, read_json(directory / "timm.json"), directory


@pytest.mark.slow
def test_timm_reference_runs_the_same_settings(keras_run, timm_run):
    _, _, ours, _ = keras_run
    _, theirs, tmp_path = timm_run
    assert set(theirs) == set(ours)
    same = ("steps", "resolution", "batch_size", "base_lr", "peak_lr", "mixup_alpha", "seed", "train_images",
            "test_images", "model")
    assert {k: theirs[k] for k in same} == {k: ours[k] for k in same}
    assert [step for step, _ in theirs["curve"]] == [1, 2, 3, 4, 5, 6]
    assert theirs["framework"].startswith("timm") and 0.0 <= theirs["test_accuracy"] <= 1.0
    assert is_png(tmp_path / "timm.png")


@pytest.mark.slow
def test_timm_reference_resumes_after_a_kill_as_if_never_stopped(timm_run, tmp_path):
    _, whole, _ = timm_run
    flags = (*SLICE, f"--checkpoint_dir={tmp_path / 'ckpt'}", f"--out={tmp_path / 'timm.json'}")
    code, first, err = run_script("bench/fashion_mnist_timm.py", *flags, "--kill_at_step=2", home=tmp_path / "hub")
    assert code == -signal.SIGKILL, err[-3000:]
    assert not os.path.exists(tmp_path / "timm.json")
    code, second, err = run_script("bench/fashion_mnist_timm.py", *flags, home=tmp_path / "hub")
    assert code == 0, err[-3000:]
    assert "resuming at step 2" in second
    resumed = read_json(tmp_path / "timm.json")
    # Model, optimizer, random state and the data's position all came back: the same curve and result.
    assert resumed["curve"] == whole["curve"] and resumed["test_accuracy"] == whole["test_accuracy"]
    assert resumed["wall_seconds"] > resumed["seconds_this_session"] > 0
    code, _, err = run_script("bench/fashion_mnist_timm.py", *flags, "--total_steps=7", home=tmp_path / "hub")
    assert code == 1 and "holds a run with other settings (total_steps" in err.splitlines()[-1]


# Both scripts' training pipelines, each built after another TensorFlow global seed was left
# behind (fit_bit's pipeline pairs each op seed with it): the first batch each framework trains on.
FIRST_BATCHES = """
import sys
sys.path[:0] = [{bench!r}, {examples!r}]
import fashion_mnist_timm as timm_run  # torch before TensorFlow
import fashion_mnist_common as common
import fashion_mnist_full as keras_run
import numpy as np
import tensorflow as tf
from keras_bigtransfer.training import data

first = []
build = data.train_pipeline
def recorded(*args, **kwargs):
    ds = build(*args, **kwargs)
    first.append(next(ds.as_numpy_iterator()))
    return ds
data.train_pipeline = recorded
args = common.add_arguments(common.parser("")).parse_args(
    ["--limit=200", "--resolution=32", "--batch_size=16", "--total_steps=1"])
train, _ = common.load(args.limit)
for run, left_behind in ((timm_run, 12345), (keras_run, 678)):
    tf.random.set_seed(left_behind)
    run.fine_tune(train, None, args, verbose=0)
(x_timm, y_timm), (x_keras, y_keras) = first
print("differences", float(np.abs(x_timm - x_keras).max()), float(np.abs(y_timm - y_keras).max()))
"""


@pytest.mark.slow
def test_timm_reference_trains_on_fit_bits_batches(tmp_path):
    """The docs' "the same batches": the timm twin's first batch is the one fit_bit trains on,
    bit for bit, whatever global seed was set before (each script seeds as the other does)."""
    script = tmp_path / "first_batches.py"
    script.write_text(FIRST_BATCHES.format(bench=os.path.join(ROOT, "bench"), examples=os.path.join(ROOT, "examples")))
    code, out, err = run_script(str(script), home=tmp_path / "hub")
    assert code == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == "differences 0.0 0.0"


@pytest.mark.slow
def test_few_shot_quick_writes_both_rows(tmp_path):
    code, out, err = run_script("bench/few_shot.py", "--quick", f"--out={tmp_path / 'few.json'}",
                                f"--markdown={tmp_path / 'few.md'}", home=tmp_path / "hub")
    assert code == 0, err[-3000:]
    lines = (tmp_path / "few.md").read_text().splitlines()
    assert lines[0] == "| images per class | 1 |" and [line.split("|")[1].strip() for line in lines[2:]] == [
        "fit_bit", "timm", "fit_bit − timm, same draw"]
    result = read_json(tmp_path / "few.json")
    assert [(r["framework"], r["shots"], r["seed"]) for r in result["runs"]] == [("fit_bit", 1, 0), ("timm", 1, 0)]
    for run, line in zip(result["runs"], lines[2:]):
        assert 0.0 <= run["test_accuracy"] <= 1.0 and f"{run['test_accuracy']:.3f}" in line
    difference = f"{result['runs'][0]['test_accuracy'] - result['runs'][1]['test_accuracy']:+.3f}"
    assert lines[4].split("|")[2].strip() == difference.replace("-0.000", "+0.000")
    assert result["table"] == "\n".join(lines) + "\n"
    # Run again with the same --out: every run is kept from it, none trains again.
    code, again, err = run_script("bench/few_shot.py", "--quick", f"--out={tmp_path / 'few.json'}",
                                  f"--markdown={tmp_path / 'few.md'}", home=tmp_path / "hub")
    assert code == 0, err[-3000:]
    assert again.count("kept from --out") == 2 and read_json(tmp_path / "few.json")["runs"] == result["runs"]


@pytest.mark.parametrize("script, flag, message", [
    ("examples/fashion_mnist_full.py", "--plot=curve.jpg", "--plot must name a .png file"),
    ("examples/fashion_mnist_full.py", "--total_steps=0", "--total_steps must be at least 1"),
    ("examples/fashion_mnist_full.py", "--limit=1", "--limit must be at least 2"),
    ("bench/fashion_mnist_timm.py", "--plot=curve.jpg", "--plot must name a .png file"),
])
def test_bad_flags_stop_before_any_work(script, flag, message, tmp_path):
    code, _, err = run_script(script, flag, home=tmp_path / "hub")
    assert code == 2 and message in err.splitlines()[-1]


SCRIPTS = ("examples/fashion_mnist_full.py", "bench/fashion_mnist_timm.py", "bench/few_shot.py")


def test_doc_commands_use_flags_the_scripts_take():
    """The shell lines of the docs that run these scripts (they train for hours, so they are not
    run) name only flags the scripts define: a renamed flag fails here."""
    import re

    from tests.integration import docs_blocks

    def defined(path):
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            return set(re.findall(r'add_argument\(\s*"--(\w+)"', f.read()))

    shared = defined("examples/fashion_mnist_common.py")
    seen = set()
    for page in docs_blocks.pages():
        for block in docs_blocks.blocks(page):
            if block.language not in ("bash", "sh", "shell"):
                continue
            for line in block.code.replace("\\\n", " ").splitlines():
                words = line.split("#", 1)[0].split()
                if words[:1] == ["python"] and len(words) > 1 and words[1] in SCRIPTS:
                    takes = shared | defined(words[1])
                    for word in words[2:]:
                        assert word.startswith("--") and word[2:].split("=", 1)[0] in takes, (
                            f"{block.id}: {words[1]} does not take {word}")
                    seen.add(words[1])
    assert seen == set(SCRIPTS)


def test_the_documented_results_are_the_measured_ones():
    """docs/fine_tuning.md's full-dataset rows and few-shot table are the committed results of the
    commands it names (bench/results_fashion_mnist/), the table's cells recomputed from the runs."""
    import statistics

    results = os.path.join(ROOT, "bench", "results_fashion_mnist")
    with open(os.path.join(ROOT, "docs", "fine_tuning.md"), encoding="utf-8") as f:
        docs = f.read()
    for name, row in (("fit_bit_full", "| `fit_bit`, EfficientNet-Lite0 (TensorFlow) | **{:.3f}** |"),
                      ("timm_full", "| timm `tf_efficientnet_lite0` (PyTorch): same weights, batches and schedule | "
                                    "**{:.3f}** |")):
        measured = read_json(os.path.join(results, f"{name}.json"))
        assert measured["steps"] == 15000 and measured["test_images"] == 10000
        assert row.format(measured["test_accuracy"]) in docs, name
    few = read_json(os.path.join(results, "few_shot.json"))
    with open(os.path.join(results, "few_shot.md"), encoding="utf-8") as f:
        table = f.read()
    assert few["table"] == table and table in docs
    accuracy = {(r["framework"], r["shots"], r["seed"]): r["test_accuracy"] for r in few["runs"]}
    assert sorted(accuracy) == sorted((f, k, s) for f in ("fit_bit", "timm") for k in (1, 5, 10, 25) for s in (0, 1, 2))
    lines = table.splitlines()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:]}
    for k, column in zip(few["shots"], range(4)):
        for framework in ("fit_bit", "timm"):
            values = [accuracy[(framework, k, s)] for s in (0, 1, 2)]
            assert rows[framework][column] == f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
        paired = [accuracy[("fit_bit", k, s)] - accuracy[("timm", k, s)] for s in (0, 1, 2)]
        mean = f"{statistics.mean(paired):+.3f}".replace("-0.000", "+0.000")
        assert rows["fit_bit − timm, same draw"][column] == f"{mean} ± {statistics.stdev(paired):.3f}"
