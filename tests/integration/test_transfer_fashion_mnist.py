"""Transfer on real data: the real ImageNet-pretrained EfficientNet-Lite0 against random
initialization, fine-tuned with fit_bit on 100 Fashion-MNIST images per class.

Runs examples/fashion_mnist_transfer.py as a user does (the tests import no example)."""

import json
import os
import subprocess
import sys

import pytest

from tests.toys import ROOT

# The budget: 100 steps at batch 32 (3,200 images seen, 3.2 passes), base_lr 0.1 at batch 512
# (0.00625 at batch 32), crop 128 (the HyperRule for 28x28 images), 500 held-out test images, seed 0.
BUDGET = dict(steps=100, base_lr=0.1, batch_size=32, per_class=100, test_images=500, seed=0)


def run_example(*flags):
    """The JSON line examples/fashion_mnist_transfer.py prints, as a dict."""
    script = os.path.join(ROOT, "examples", "fashion_mnist_transfer.py")
    out = subprocess.run([sys.executable, script, "--model=EfficientNetLite0", *flags,
                          *(f"--{k}={v}" for k, v in BUDGET.items())],
                         capture_output=True, text=True, timeout=1100, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_pretrained_lite0_beats_random_init_on_fashion_mnist():
    pretrained = run_example()["heldout_accuracy"]
    scratch = run_example("--scratch")["heldout_accuracy"]
    # Measured on 2 CPU cores (python examples/fashion_mnist_transfer.py --steps=100 --base_lr=0.1
    # --test_images=500 --seed=S [--scratch]), seed 0 unless named: pretrained 0.618 (Intel Xeon VM),
    # 0.548 (the CI machine), 0.614 and 0.618 (AMD EPYC; seeds 1 and 2 there: 0.598, 0.558); scratch
    # 0.102 and 0.106 (chance is 0.1). The same seed moves by up to 0.07 between CPUs (kernels sum in
    # different orders and 100 BatchNorm steps amplify it), so the bounds sit below the lowest seen.
    assert pretrained >= 0.45
    assert scratch <= 0.20
    assert pretrained - scratch >= 0.30
