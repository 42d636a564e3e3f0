"""Noisy Student and Meta Pseudo Labels against supervised-only on real data: Fashion-MNIST,
10 labels per class, 4,000 unlabeled images, EfficientNet-Lite0 (ImageNet weights) at 64 px,
150 steps per phase, 2,000 held-out test images (examples/semi_supervised_fashion_mnist.py, run as a script)."""

import json
import os
import subprocess
import sys

import pytest

from tests.toys import ROOT

XDIST_FIRST = True  # the longest tests of the tier: started first (tests/conftest.py)


def run_example(seed):
    """examples/semi_supervised_fashion_mnist.py run as a user does (tests import no example)."""
    script = os.path.join(ROOT, "examples", "semi_supervised_fashion_mnist.py")
    out = subprocess.run([sys.executable, script, f"--seeds={seed}"], capture_output=True, text=True,
                         timeout=2900, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# Three full fine-tunes: 990 s on an Intel Xeon development machine (490 s on an AMD EPYC one),
# past the 1200 s default on a slower CI machine once. The default still guards the other tests.
@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_semi_supervised_methods_against_supervised_only():
    result = run_example(seed=0)
    # A run is deterministic for a seed on one machine, but float round-off differs between CPUs
    # and 150 steps from 100 labels amplify it. Seed 0 measured (python
    # examples/semi_supervised_fashion_mnist.py --seeds=0,1,2, docs/meta_pseudo_labels.md):
    #   Intel Xeon: supervised 0.597,  Noisy Student 0.5205, MPL 0.7015
    #   AMD EPYC:   supervised 0.5145, Noisy Student 0.556,  MPL 0.7005
    # MPL beats supervised-only by +0.073 to +0.186 over the six runs (two machines, three
    # seeds); the test asserts 0.06.
    assert result["meta_pseudo_labels"] - result["supervised"] >= 0.06
    # Noisy Student does not beat supervised-only at this scale: -0.097 to +0.056 over the six
    # runs (docs/noisy_student.md). The test asserts what that supports: no collapse (training
    # BatchNorm on a 60-step schedule once dropped a student by 0.23).
    assert result["noisy_student"] - result["supervised"] >= -0.15
    # supervised-only learns (chance is 0.1): 0.51 to 0.64 over the six runs
    assert result["supervised"] >= 0.4
