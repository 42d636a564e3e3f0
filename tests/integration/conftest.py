"""The Fashion-MNIST fine-tune of the integration tests (examples/fashion_mnist_transfer.py, run as a user does)."""

import json
import os
import subprocess
import sys

import pytest

from tests.toys import ROOT

EXAMPLE = os.path.join(ROOT, "examples", "fashion_mnist_transfer.py")
# The budget: 100 steps at batch 32 (3,200 images seen, 3.2 passes), base_lr 0.1 at batch 512
# (0.00625 at batch 32), crop 128 (the HyperRule for 28x28 images), 500 held-out test images, seed 0.
FASHION_BUDGET = dict(model="EfficientNetLite0", steps=100, base_lr=0.1, batch_size=32, per_class=100,
                      test_images=500, seed=0)


def run_fashion_example(*flags, home):
    """The JSON line examples/fashion_mnist_transfer.py prints, as a dict: the example run as a
    user runs it, offline, with its weight cache under `home` (as tests/conftest.py's isolated_hub)."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BIGTRANSFER_MIRROR"}
    env.update(PYTHONPATH=ROOT, KERAS_BIGTRANSFER_HOME=str(home), KERAS_BIGTRANSFER_OFFLINE="1")
    out = subprocess.run([sys.executable, EXAMPLE, *(f"--{k}={v}" for k, v in FASHION_BUDGET.items()), *flags],
                         capture_output=True, text=True, timeout=1100, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def fashion_lite0_for_int8(tmp_path_factory):
    """(the example's report, the saved .keras file) of the pretrained Lite0 fine-tuned on 100
    Fashion-MNIST images per class (FASHION_BUDGET) with its pretrained BatchNorm statistics kept
    (`--freeze_batch_norm`, as docs/deployment.md advises for int8): about a minute on 2 cores."""
    directory = tmp_path_factory.mktemp("fashion_lite0")
    path = directory / "fashion_lite0.keras"
    report = run_fashion_example("--freeze_batch_norm", f"--save_model={path}", home=directory / "hub_cache")
    assert os.path.isfile(path) and not [n for n in os.listdir(directory) if n.startswith(".")]
    return report, str(path)
